"""The eager step hands torch's own algorithms to torch's kernels, and nothing else.

Each dispatched run is checked three ways in float64: against the same gradkit optimizer with
the dispatch off (the chain), against ``torch.optim`` with the same options (its default
single-tensor loop on CPU), and by counting the calls of torch's functional (so a dispatch that
silently stopped fails). torch's fused kernels and the chain evaluate the same formulas in a
different order of float operations; on this smooth problem they stay within 1e-15 (relative)
over 60 steps, and the bound is 1e-12 as in ``test_torch_parity``. In float32 and bfloat16
the dispatched step *is* torch's fused kernel, so it equals ``torch.optim.X(fused=True)`` bit
for bit.
"""

from __future__ import annotations

import copy
import importlib
import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradkit.optim as gk
from gradkit.optim import _torch_kernels

STEPS = 60
RTOL = 1e-12
FUNCTIONALS = {
    name: importlib.import_module(f"torch.optim.{name}")
    for name in ("adam", "sgd", "adagrad", "rmsprop", "adadelta", "adamax", "nadam", "radam")
}
# The algorithms torch has a fused CPU kernel for; the others run its single-tensor loop.
FUSED_ON_CPU = ("adam", "sgd", "adagrad")

_generator = torch.Generator().manual_seed(7)
INPUTS = torch.randn(64, 5, generator=_generator, dtype=torch.float64)
TARGETS = torch.randn(64, 3, generator=_generator, dtype=torch.float64)


def make_model(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def make_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Two groups: the defaults, and half the rate with no weight decay (another pattern)."""
    return [
        {"params": list(model[0].parameters())},
        {"params": list(model[2].parameters()), "lr_scale": 0.5, "weight_decay": 0.0},
    ]


def build(library: Any, name: str, model: nn.Module, kwargs: dict[str, Any]) -> Any:
    groups = make_groups(model)
    for group in groups:
        if group.pop("lr_scale", None):
            group["lr"] = kwargs["lr"] * 0.5
    return getattr(library, name)(groups, **kwargs)


def loss_of(model: nn.Module, step: int, maximize: bool) -> Tensor:
    start = (step % 4) * 16
    inputs = INPUTS[start : start + 16].to(next(model.parameters()).dtype)
    loss = nn.functional.mse_loss(model(inputs), TARGETS[start : start + 16].to(inputs.dtype))
    return -loss if maximize else loss


def flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def relative(reference: Tensor, other: Tensor) -> float:
    return ((reference - other).abs().max() / reference.abs().max()).item()


class Calls:
    """The calls of torch's functional optimizers, by algorithm, with their path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, str]] = []
        for name, module in FUNCTIONALS.items():
            monkeypatch.setattr(module, name, self._recorder(name, getattr(module, name)))

    def _recorder(self, name: str, original: Callable[..., None]) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            path = "fused" if kwargs.get("fused") else "foreach" if kwargs.get("foreach") else ""
            self.log.append((name, path or "single"))
            original(*args, **kwargs)

        return record

    def clear(self) -> None:
        self.log.clear()

    def fused(self) -> int:
        """How many calls took torch's fused path (torch.optim's own CPU default does not)."""
        return sum(path == "fused" for _, path in self.log)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    yield Calls(monkeypatch)


def train(
    opt: torch.optim.Optimizer,
    model: nn.Module,
    steps: int,
    *,
    start: int = 0,
    check_grads: bool = False,
    before_step: Callable[[int], None] | None = None,
) -> list[Tensor]:
    """``steps`` steps; the parameters after each. ``check_grads``: p.grad is left alone."""
    maximize = opt.param_groups[0].get("maximize", False)
    trajectory = []
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_of(model, step, maximize).backward()
        if before_step is not None:
            before_step(step)
        grads = [p.grad.clone() for p in model.parameters()] if check_grads else []
        opt.step()
        if check_grads:
            for param, grad in zip(model.parameters(), grads, strict=True):
                assert torch.equal(param.grad, grad), "the step modified p.grad"
        trajectory.append(flat(model))
    return trajectory


def worst(first: list[Tensor], second: list[Tensor]) -> float:
    return max(relative(a, b) for a, b in zip(first, second, strict=True))


def assert_same_state(reference: torch.optim.Optimizer, other: torch.optim.Optimizer) -> None:
    """Same keys, dtypes and counters in every parameter's state; values to RTOL."""
    ref_params = [p for g in reference.param_groups for p in g["params"]]
    params = [p for g in other.param_groups for p in g["params"]]
    for ref_p, p in zip(ref_params, params, strict=True):
        ref_state, state = reference.state[ref_p], other.state[p]
        assert set(ref_state) == set(state)
        for key, ref_value in ref_state.items():
            value = state[key]
            assert value.dtype == ref_value.dtype and value.shape == ref_value.shape, key
            if key == "step":
                assert value.item() == ref_value.item()
            else:
                scale = ref_value.abs().max().item()
                assert (ref_value - value).abs().max().item() <= RTOL * max(scale, 1e-300), key


WD = {"weight_decay": 1e-2}
MAX = {"maximize": True}
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "adam-default": ("Adam", "adam", {"lr": 1e-2}),
    "adam-betas": ("Adam", "adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}),
    "adam-amsgrad": ("Adam", "adam", {"lr": 1e-2, "amsgrad": True}),
    "adam-l2": ("Adam", "adam", {"lr": 1e-2, **WD}),
    "adam-decoupled": ("Adam", "adam", {"lr": 1e-2, "decoupled_weight_decay": True, **WD}),
    "adam-maximize": ("Adam", "adam", {"lr": 1e-2, **MAX}),
    "adam-amsgrad-l2-maximize": ("Adam", "adam", {"lr": 1e-2, "amsgrad": True, **WD, **MAX}),
    "adamw-default": ("AdamW", "adam", {"lr": 1e-2}),
    "adamw-amsgrad-maximize": (
        "AdamW",
        "adam",
        {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True, **MAX},
    ),
    "sgd-plain": ("SGD", "sgd", {"lr": 0.05}),
    "sgd-wd-maximize": ("SGD", "sgd", {"lr": 0.05, **WD, **MAX}),
    "sgd-momentum": ("SGD", "sgd", {"lr": 0.05, "momentum": 0.9}),
    "sgd-dampening-wd-maximize": (
        "SGD",
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, **WD, **MAX},
    ),
    "sgd-nesterov": ("SGD", "sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd-nesterov-wd-maximize": (
        "SGD",
        "sgd",
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, **WD, **MAX},
    ),
    "adagrad-default": ("Adagrad", "adagrad", {"lr": 0.05}),
    "adagrad-lr-decay": ("Adagrad", "adagrad", {"lr": 0.05, "lr_decay": 0.05}),
    "adagrad-initial-eps": (
        "Adagrad",
        "adagrad",
        {"lr": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6},
    ),
    "adagrad-all": (
        "Adagrad",
        "adagrad",
        {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.5, **WD, **MAX},
    ),
    "rmsprop-default": ("RMSprop", "rmsprop", {"lr": 1e-2}),
    "rmsprop-momentum": ("RMSprop", "rmsprop", {"lr": 1e-2, "momentum": 0.5}),
    "rmsprop-centered-momentum-wd-maximize": (
        "RMSprop",
        "rmsprop",
        {"lr": 1e-2, "alpha": 0.9, "eps": 1e-6, "centered": True, "momentum": 0.9, **WD, **MAX},
    ),
    "adadelta-default": ("Adadelta", "adadelta", {"lr": 1.0}),
    "adadelta-all": ("Adadelta", "adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, **WD, **MAX}),
    "adamax-default": ("Adamax", "adamax", {"lr": 1e-2}),
    "adamax-all": (
        "Adamax",
        "adamax",
        {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, **WD, **MAX},
    ),
    "nadam-default": ("NAdam", "nadam", {"lr": 1e-2}),
    "nadam-l2-maximize": ("NAdam", "nadam", {"lr": 1e-2, "momentum_decay": 0.01, **WD, **MAX}),
    "nadam-decoupled": ("NAdam", "nadam", {"lr": 1e-2, "decoupled_weight_decay": True, **WD}),
    "radam-default": ("RAdam", "radam", {"lr": 1e-2}),
    "radam-l2-maximize": ("RAdam", "radam", {"lr": 1e-2, "betas": (0.8, 0.99), **WD, **MAX}),
    "radam-decoupled": ("RAdam", "radam", {"lr": 1e-2, "decoupled_weight_decay": True, **WD}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dispatched_step_equals_the_chain_and_torch(case: str, calls: Calls) -> None:
    name, algorithm, kwargs = CASES[case]
    model, chain_model, torch_model = make_model(), make_model(), make_model()
    start = flat(model)
    opt = build(gk, name, model, kwargs)
    dispatched = train(opt, model, STEPS, check_grads=True)
    path = "fused" if algorithm in FUSED_ON_CPU else "single"
    assert calls.log == [(algorithm, path)] * (2 * STEPS), "one call per group and step"

    calls.clear()
    chain_opt = build(gk, name, chain_model, kwargs)
    chain_opt.torch_kernels = False
    chained = train(chain_opt, chain_model, STEPS)
    assert calls.log == [], "torch_kernels=False must run the chain"
    reference = train(build(torch.optim, name, torch_model, kwargs), torch_model, STEPS)

    assert relative(start, dispatched[-1]) > 1e-3, "the run must move the parameters"
    assert worst(chained, dispatched) <= RTOL
    assert worst(reference, dispatched) <= RTOL
    assert_same_state(chain_opt, opt)


def test_a_users_own_chain_equal_to_adam_is_dispatched(calls: Calls) -> None:
    model, torch_model = make_model(), make_model()
    adam = gk.chain(gk.add_decayed_weights(), gk.scale_by_adam(), gk.scale_by_learning_rate())
    opt = gk.ChainedOptimizer(model.parameters(), adam, lr=1e-2, weight_decay=0.1)
    mine = train(opt, model, STEPS)
    assert calls.log == [("adam", "fused")] * STEPS
    ref_opt = torch.optim.Adam(torch_model.parameters(), lr=1e-2, weight_decay=0.1)
    assert worst(train(ref_opt, torch_model, STEPS), mine) <= RTOL


# Optimizers that are not torch's algorithm, and (where there is one) the group settings that
# would make them so: with those the same optimizer is dispatched, so the feature alone is
# what keeps it on the chain.
NOT_TORCH: dict[str, tuple[Callable[[list[Tensor]], Any], dict[str, Any] | None]] = {
    "sgd-agc": (
        lambda p: gk.SGD(p, lr=0.05, momentum=0.9, agc_clipping=0.01),
        {"agc_clipping": None},
    ),
    "adam-agc": (lambda p: gk.Adam(p, lr=1e-2, agc_clipping=0.01), {"agc_clipping": 0.0}),
    "adam-global-norm": (
        lambda p: gk.ChainedOptimizer(
            p,
            gk.chain(gk.clip_by_global_norm(1e-3), gk.scale_by_adam(), gk.scale_by_learning_rate()),
        ),
        {"max_grad_norm": None},
    ),
    "adam-both-decays": (
        lambda p: gk.ChainedOptimizer(
            p,
            gk.chain(
                gk.add_decayed_weights(),
                gk.scale_by_adam(),
                gk.add_decayed_weights(),
                gk.scale_by_learning_rate(),
            ),
            weight_decay=0.1,
        ),
        {"weight_decay": 0.0},
    ),
    "sgdw-momentum": (lambda p: gk.SGDW(p, lr=0.05, momentum=0.9), {"momentum": 0.0}),
    "lr-inside-momentum": (
        lambda p: gk.ChainedOptimizer(
            p, gk.chain(gk.scale_by_learning_rate(), gk.trace()), lr=0.05, momentum=0.9
        ),
        {"momentum": 0.0},
    ),
    "lamb-coupled-decay": (
        lambda p: gk.ChainedOptimizer(
            p,
            gk.chain(
                gk.add_decayed_weights(),
                gk.scale_by_adam(),
                gk.scale_by_trust_ratio("lamb"),
                gk.scale_by_learning_rate(),
            ),
            lr=1e-2,
            weight_decay=0.1,
        ),
        {"weight_decay": 0.0},
    ),
    "lars-rate-outside-momentum": (
        lambda p: gk.ChainedOptimizer(
            p,
            gk.chain(gk.scale_by_trust_ratio("lars"), gk.trace(), gk.scale_by_learning_rate()),
            lr=1.0,
            momentum=0.9,
        ),
        {"momentum": 0.0},
    ),
    "nadam-agc": (lambda p: gk.NAdam(p, lr=1e-3, agc_clipping=0.01), {"agc_clipping": None}),
    "adadelta-agc": (lambda p: gk.Adadelta(p, agc_clipping=0.01), {"agc_clipping": None}),
    "lion": (lambda p: gk.Lion(p, lr=1e-4), None),
}


@pytest.mark.parametrize("case", list(NOT_TORCH))
def test_chains_that_are_not_torchs_algorithm_run_the_chain(case: str, calls: Calls) -> None:
    make, torch_settings = NOT_TORCH[case]
    model, chain_model = make_model(), make_model()
    opt, chain_opt = make(list(model.parameters())), make(list(chain_model.parameters()))
    chain_opt.torch_kernels = False
    assert _torch_kernels.recognise(opt.transformation, opt.param_groups[0]) is None
    assert worst(train(chain_opt, chain_model, 10), train(opt, model, 10)) == 0.0
    assert calls.log == []
    if torch_settings is not None:
        opt.param_groups[0].update(torch_settings)
        train(opt, model, 3, start=10)
        # One call per step, or (LARS, whose scalars differ per tensor) one per tensor.
        per_step = len(calls.log) / 3
        assert per_step in (1, len(list(model.parameters()))), "the same optimizer, dispatched"


def test_only_the_groups_that_are_torchs_algorithm_are_dispatched(calls: Calls) -> None:
    model = make_model()
    opt = gk.SGD(
        [
            {"params": list(model[0].parameters()), "agc_clipping": 0.01},
            {"params": list(model[2].parameters())},
        ],
        lr=0.05,
        momentum=0.9,
    )
    train(opt, model, 5)
    assert calls.log == [("sgd", "fused")] * 5
    assert opt.state[model[0].weight]["step"].item() == 5
    assert opt.state[model[2].weight]["step"].item() == 5


def test_a_subclass_of_a_transformation_is_not_taken_for_torchs(calls: Calls) -> None:
    class MyAdam(gk.ScaleByAdam):
        pass

    model = make_model()
    mine = gk.chain(MyAdam(), gk.scale_by_learning_rate())
    opt = gk.ChainedOptimizer(model.parameters(), mine, lr=1e-2)
    train(opt, model, 3)
    assert calls.log == []
    adam = gk.chain(gk.scale_by_adam(), gk.scale_by_learning_rate())
    assert _torch_kernels.recognise(adam, opt.param_groups[0]) == ("adam", None)


@pytest.mark.parametrize("setting", [{"dampening": 0.3}, {"nesterov": True}])
def test_rmsprop_with_momentum_torch_lacks_runs_the_chain(
    setting: dict[str, Any], calls: Calls
) -> None:
    """torch's RMSprop has no dampening and no Nesterov form: such a group is the chain's."""
    model, chain_model = make_model(), make_model()
    opts = [
        gk.RMSprop([{"params": m.parameters(), **setting}], lr=1e-2, momentum=0.9)
        for m in (model, chain_model)
    ]
    opts[1].torch_kernels = False
    assert worst(train(opts[1], chain_model, 10), train(opts[0], model, 10)) == 0.0
    assert calls.log == []
    opts[0].param_groups[0].update(dampening=0.0, nesterov=False)
    train(opts[0], model, 3, start=10)
    assert calls.log == [("rmsprop", "single")] * 3


@pytest.mark.parametrize(
    "case",
    [
        "adam-amsgrad-l2-maximize",
        "sgd-dampening-wd-maximize",
        "rmsprop-centered-momentum-wd-maximize",
        "nadam-l2-maximize",
    ],
)
def test_state_dict_round_trip_mid_run_across_dispatch_on_and_off(case: str, calls: Calls) -> None:
    name, _, kwargs = CASES[case]
    model = make_model()
    opt = build(gk, name, model, kwargs)
    train(opt, model, 20)
    saved = copy.deepcopy(opt.state_dict())
    # The chain resumes from the dispatched state, and the reverse, in lock step with the run.
    chain_model = copy.deepcopy(model)
    chain_opt = build(gk, name, chain_model, {**kwargs, "lr": 1.0})
    chain_opt.torch_kernels = False
    chain_opt.load_state_dict(saved)
    calls.clear()
    first = train(opt, model, 20, start=20)
    assert len(calls.log) == 40
    second = train(chain_opt, chain_model, 20, start=20)
    assert len(calls.log) == 40
    assert worst(first, second) <= RTOL
    back_model = copy.deepcopy(chain_model)
    back_opt = build(gk, name, back_model, kwargs)
    back_opt.load_state_dict(copy.deepcopy(chain_opt.state_dict()))
    # Switching the attribute mid-run too: the dispatched and the chained halves agree.
    chain_opt.torch_kernels = True
    third = train(back_opt, back_model, 20, start=40)
    fourth = train(chain_opt, chain_model, 20, start=40)
    assert len(calls.log) == 120
    assert worst(third, fourth) <= RTOL
    assert_same_state(back_opt, chain_opt)


def test_a_parameter_that_starts_late_gets_its_momentum_buffer_like_torch(calls: Calls) -> None:
    """Some buffers exist and one starts now: torch's fused SGD needs two calls."""
    runs = []
    for library, dispatch in ((gk, True), (gk, False), (torch.optim, False)):
        model = make_model()
        opt = library.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.2)
        if library is gk:
            opt.torch_kernels = dispatch
        trajectory = []
        for step in range(30):
            opt.zero_grad()
            loss_of(model, step, False).backward()
            if step < 5:
                model[2].bias.grad = None
            opt.step()
            trajectory.append(flat(model))
        runs.append(trajectory)
    # Five steps without the bias, then one with two calls (old buffers, a new one), then one.
    assert calls.fused() == 5 + 2 + 24
    assert worst(runs[1], runs[0]) <= RTOL
    assert worst(runs[2], runs[0]) <= RTOL


SCHEDULED = {
    "adam-steplr": ("Adam", {"lr": 1e-2, **WD}),
    "sgd-momentum-steplr": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "adagrad-steplr": ("Adagrad", {"lr": 0.05, "lr_decay": 0.01}),
}


@pytest.mark.parametrize("case", list(SCHEDULED))
def test_lr_scheduler_changes_the_dispatched_step(case: str, calls: Calls) -> None:
    name, kwargs = SCHEDULED[case]
    runs = {}
    for label, library, scheduled in (
        ("gradkit", gk, True),
        ("torch", torch.optim, True),
        ("constant", gk, False),
    ):
        model = make_model()
        opt = build(library, name, model, kwargs)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
        trajectory = []
        for step in range(40):
            trajectory += train(opt, model, 1, start=step)
            if scheduled:
                sched.step()
        runs[label] = trajectory
    assert calls.fused() == 2 * 2 * 40, "the gradkit runs are dispatched"
    assert worst(runs["torch"], runs["gradkit"]) <= RTOL
    assert relative(runs["constant"][-1], runs["gradkit"][-1]) > 1e-3


def _momentum_and_betas(opt: torch.optim.Optimizer) -> Callable[[int], None]:
    def schedule(step: int) -> None:
        for index, group in enumerate(opt.param_groups):
            if "momentum" in group:
                group["momentum"] = 0.0 if 20 <= step < 30 else 0.85 + 0.1 * math.cos(step + index)
            if "betas" in group:
                group["betas"] = (0.9 - 0.1 * math.sin(step / 5 + index), 0.999 - 0.01 * index)
            group["weight_decay"] = 0.0 if step < 10 else 0.02

    return schedule


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_hyperparameters_changed_mid_run_are_read_at_every_step(name: str, calls: Calls) -> None:
    kwargs = {"lr": 0.05 if name == "SGD" else 1e-2}
    if name == "SGD":
        kwargs["momentum"] = 0.9
    runs = []
    for library in (gk, torch.optim):
        model = make_model()
        opt = build(library, name, model, kwargs)
        runs.append(train(opt, model, STEPS, before_step=_momentum_and_betas(opt)))
    assert calls.fused() == 2 * STEPS
    assert worst(runs[1], runs[0]) <= RTOL


def test_tensor_lr_is_dispatched_and_equals_float_lr(calls: Calls) -> None:
    runs = []
    for lr in (1e-2, torch.tensor(1e-2, dtype=torch.float64)):
        model = make_model()
        opt = gk.Adam(model.parameters(), lr=lr, weight_decay=0.1, decoupled_weight_decay=True)
        runs.append(train(opt, model, 30))
    assert len(calls.log) == 60
    assert worst(runs[0], runs[1]) == 0.0


def test_foreach_path_for_cuda_equals_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's path (foreach, CPU counters), run here on CPU tensors."""
    calls = Calls(monkeypatch)
    monkeypatch.setattr(_torch_kernels, "kernel_for", lambda device, dtype, algorithm: "foreach")
    cases = ["adam-amsgrad-l2-maximize", "sgd-nesterov-wd-maximize", "adagrad-all"]
    cases += [
        "rmsprop-centered-momentum-wd-maximize",
        "adadelta-all",
        "adamax-all",
        "nadam-l2-maximize",
        "nadam-decoupled",
        "radam-l2-maximize",
        "radam-decoupled",
    ]
    for case in cases:
        name, algorithm, kwargs = CASES[case]
        model, chain_model = make_model(), make_model()
        calls.clear()
        dispatched = train(build(gk, name, model, kwargs), model, 30, check_grads=True)
        assert calls.log == [(algorithm, "foreach")] * 60
        chain_opt = build(gk, name, chain_model, kwargs)
        chain_opt.torch_kernels = False
        assert worst(train(chain_opt, chain_model, 30), dispatched) <= RTOL


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "Adagrad"])
def test_low_precision_default_step_is_torchs_fused_kernel(
    name: str, dtype: torch.dtype, calls: Calls
) -> None:
    kwargs: dict[str, Any] = {"lr": 0.05, "weight_decay": 1e-2, "maximize": True}
    if name == "SGD":
        kwargs.update(momentum=0.9, nesterov=True)
    # torch's fused CPU SGD is wrong in low precision (pytorch/pytorch#191763): there gradkit
    # takes, and is compared with, torch's CPU default, the single-tensor loop.
    path = "single" if name == "SGD" and dtype == torch.bfloat16 else "fused"
    runs = []
    for library, extra in ((gk, {}), (torch.optim, {"fused": path == "fused"})):
        model = make_model(dtype)
        opt = getattr(library, name)(model.parameters(), **kwargs, **extra)
        runs.append(train(opt, model, 10, check_grads=True))
        assert all(p.dtype == dtype for p in model.parameters())
        if library is gk:
            assert calls.log == [(name.lower().removesuffix("w"), path)] * 10
    assert worst(runs[1], runs[0]) == 0.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nesterov", [False, True])
def test_low_precision_sgd_updates_every_element(dtype: torch.dtype, nesterov: bool) -> None:
    """Hand-derived: from 0, gradient 1, rate 0.5 and momentum 0.9, heavy ball steps by 1 then
    1.9 (Nesterov 1.9 then 2.71), in units of -0.5: -0.5 and -1.45 (Nesterov -0.95 and
    -2.305), to the dtype's rounding. torch 2.13's fused CPU SGD leaves the whole vector blocks of a
    1000-element low-precision tensor unchanged (pytorch/pytorch#191763); gradkit's default
    step must not."""
    param = nn.Parameter(torch.zeros(1000, dtype=dtype))
    opt = gk.SGD([param], lr=0.5, momentum=0.9, nesterov=nesterov)
    expected = [-0.95, -2.305] if nesterov else [-0.5, -1.45]
    for value in expected:
        param.grad = torch.ones_like(param)
        opt.step()
        wanted = torch.full((1000,), value, dtype=torch.float64)
        # Within the rounding of the state and of the parameter (two ulps of the value).
        assert torch.allclose(param.double(), wanted, rtol=2 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_lars_default_step_matches_the_chain(dtype: torch.dtype) -> None:
    """LARS's element-wise part is torch's SGD kernel: in low precision its single-tensor loop
    (the fused one skips whole vector blocks); the step agrees with the chain's to its
    rounding on a tensor with many blocks."""
    torch.manual_seed(0)
    start = torch.randn(64, 40, dtype=dtype)
    grads = [torch.randn(64, 40, dtype=dtype) for _ in range(3)]
    runs = []
    for torch_kernels in (True, False):
        param = nn.Parameter(start.clone())
        opt = gk.LARS([param], lr=0.5, momentum=0.9, weight_decay=1e-2, trust_coefficient=0.2)
        opt.torch_kernels = torch_kernels
        for grad in grads:
            param.grad = grad.clone()
            opt.step()
        runs.append(param.detach().double())
    moved = (runs[1] - start.double()).abs()
    assert bool((moved > 0).float().mean() > 0.9), "the chain moves nearly every element"
    error = (runs[0] - runs[1]).abs().max() / moved.max()
    assert error < 8 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam"])
def test_low_precision_default_step_is_torchs_single_tensor_loop(
    name: str, dtype: torch.dtype, calls: Calls
) -> None:
    """Where torch has no fused CPU kernel its CPU default is the single-tensor loop, and the
    gradkit default step is that loop on gradkit's state: equal bit for bit."""
    kwargs: dict[str, Any] = {"lr": 1e-2, "weight_decay": 1e-2, "maximize": True}
    if name == "RMSprop":
        kwargs.update(momentum=0.9, centered=True)
    runs = []
    for library in (gk, torch.optim):
        model = make_model(dtype)
        runs.append(train(getattr(library, name)(model.parameters(), **kwargs), model, 10))
        if library is gk:
            assert calls.log == [(name.lower(), "single")] * 10
    assert worst(runs[1], runs[0]) == 0.0


def test_float64_default_dtype_counters(calls: Calls) -> None:
    """With float64 as the default dtype the counters are float64, as torch's; still exact."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        runs = []
        for library in (gk, torch.optim):
            model = make_model()
            opt = build(library, "Adagrad", model, {"lr": 0.05, "lr_decay": 0.1})
            runs.append(train(opt, model, 30))
        model = make_model()
        opt = build(gk, "Adam", model, {"lr": 1e-2})
        adam = train(opt, model, 30)
        assert opt.state[model[0].weight]["step"].dtype == torch.float64
        torch_model = make_model()
        reference = train(build(torch.optim, "Adam", torch_model, {"lr": 1e-2}), torch_model, 30)
    finally:
        torch.set_default_dtype(previous)
    assert calls.fused() == 2 * 30 + 2 * 30
    assert worst(runs[1], runs[0]) <= RTOL
    assert worst(reference, adam) <= RTOL


def test_gradient_with_other_strides_than_its_parameter_runs_the_chain(calls: Calls) -> None:
    """torch's fused CPU kernels walk raw memory: a transposed gradient would be misread."""
    runs = []
    for library, dispatch in ((gk, True), (gk, False), (torch.optim, False)):
        torch.manual_seed(0)
        odd = nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
        plain = nn.Parameter(torch.randn(6, dtype=torch.float64))
        opt = library.Adam([{"params": [odd]}, {"params": [plain]}], lr=1e-2)
        if library is gk:
            opt.torch_kernels = dispatch
        trajectory = []
        for step in range(10):
            grad = torch.randn(6, 4, generator=torch.Generator().manual_seed(step), dtype=odd.dtype)
            odd.grad = grad.t()  # the same values in a column-major layout
            plain.grad = grad[:, 0].clone()
            opt.step()
            trajectory.append(torch.cat([odd.detach().flatten(), plain.detach()]))
        runs.append(trajectory)
    assert calls.fused() == 10, "only the group with matching layouts"
    # The transposed parameter took the chain's step, bit for bit.
    assert worst([t[:24] for t in runs[1]], [t[:24] for t in runs[0]]) == 0.0
    assert worst(runs[2], runs[0]) <= RTOL


def test_kernel_choice_per_device_and_algorithm() -> None:
    cpu, cuda, meta = (torch.device(kind) for kind in ("cpu", "cuda", "meta"))
    names = ("adam", "sgd", "adagrad", "lamb", "lars")
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    choose = _torch_kernels.kernel_for
    assert [choose(cpu, f32, name) for name in names] == ["fused"] * 5
    assert [choose(cpu, torch.float64, name) for name in names] == ["fused"] * 5
    # torch's fused CPU SGD skips whole vector blocks in low precision (pytorch/pytorch#191763).
    assert [choose(cpu, bf16, name) for name in names] == [
        "fused",
        "single",
        "fused",
        "fused",
        "single",
    ]
    assert [choose(cpu, f16, name) for name in names] == [choose(cpu, bf16, n) for n in names]
    kinds = [choose(cuda, bf16, name) for name in names]
    assert kinds == ["foreach", "fused", "foreach", "foreach", "fused"]
    loops = ("rmsprop", "adadelta", "adamax", "nadam", "radam")
    assert [choose(cpu, f32, name) for name in loops] == ["single"] * 5
    assert [choose(cuda, f32, name) for name in loops] == ["foreach"] * 5
    assert choose(meta, f32, "sgd") is None


def test_torch_kernels_knob_is_validated_and_survives_copies() -> None:
    params = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match=r"invalid torch_kernels='yes'; expected True or False"):
        gk.ChainedOptimizer(params, gk.scale_by_learning_rate(), torch_kernels="yes")
    opt = gk.ChainedOptimizer(params, gk.scale_by_learning_rate(), torch_kernels=False)
    assert opt.torch_kernels is False
    assert copy.deepcopy(opt).torch_kernels is False
    assert pickle.loads(pickle.dumps(opt)).torch_kernels is False
    assert gk.SGD(params).torch_kernels is True


def test_a_non_contiguous_parameter_with_gradients_laid_out_alike_is_dispatched(
    calls: Calls,
) -> None:
    runs = []
    for library in (gk, torch.optim):
        torch.manual_seed(0)
        param = nn.Parameter(torch.randn(6, 4, dtype=torch.float64).t())
        opt = library.SGD([param], lr=0.05, momentum=0.9, weight_decay=0.1)
        trajectory = []
        for step in range(10):
            grad = torch.randn(
                6, 4, generator=torch.Generator().manual_seed(step), dtype=param.dtype
            )
            param.grad = grad.t()
            opt.step()
            trajectory.append(param.detach().flatten())
        runs.append(trajectory)
    assert calls.fused() == 10
    assert worst(runs[1], runs[0]) <= RTOL


# LAMB and LARS: torch's Adam or SGD kernel on a workspace, then the trust ratio (see
# gradkit.optim._kernel_steps). Each case: optimizer, the functional it calls, options.
LAYERWISE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lamb-default": ("LAMB", "adam", {"lr": 1e-2}),
    "lamb-wd-bounds-maximize": (
        "LAMB",
        "adam",
        {"lr": 1e-2, "weight_decay": 0.1, "weight_norm_bounds": (0.5, 2.0), **MAX},
    ),
    "lamb-eps": ("LAMB", "adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-3}),
    "lars-default": ("LARS", "sgd", {"lr": 0.5}),
    "lars-nesterov-wd-maximize": (
        "LARS",
        "sgd",
        {"lr": 0.5, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-2, **MAX},
    ),
    "lars-no-momentum-unit-eps": (
        "LARS",
        "sgd",
        {"lr": 0.5, "momentum": 0.0, "unit_ratio_on_zero_grad": True, "eps": 1e-6},
    ),
}
LAYERWISE_RTOL = {torch.float64: RTOL, torch.float32: 1e-6}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(LAYERWISE))
def test_lamb_and_lars_default_step_equals_the_chain(
    case: str, dtype: torch.dtype, calls: Calls
) -> None:
    name, functional, kwargs = LAYERWISE[case]
    model, chain_model = make_model(dtype), make_model(dtype)
    start = flat(model)
    opt = build(gk, name, model, kwargs)
    opt.param_groups[1]["layer_adaptation"] = False  # the trust ratio off: a plain step
    dispatched = train(opt, model, STEPS, check_grads=True)
    # LARS with weight decay: one call per tensor (the decay is each tensor's own).
    assert set(calls.log) == {(functional, "fused")} and len(calls.log) >= 2 * STEPS

    calls.clear()
    chain_opt = build(gk, name, chain_model, kwargs)
    chain_opt.param_groups[1]["layer_adaptation"] = False
    chain_opt.torch_kernels = False
    chained = train(chain_opt, chain_model, STEPS)
    assert calls.log == []
    assert relative(start, dispatched[-1]) > 1e-3, "the run must move the parameters"
    assert worst(chained, dispatched) <= LAYERWISE_RTOL[dtype]
    if dtype == torch.float64:
        assert_same_state(chain_opt, opt)


@pytest.mark.parametrize("case", ["lamb-wd-bounds-maximize", "lars-nesterov-wd-maximize"])
def test_lamb_and_lars_resume_across_dispatch_on_and_off(case: str, calls: Calls) -> None:
    name, _, kwargs = LAYERWISE[case]
    model = make_model()
    opt = build(gk, name, model, kwargs)
    train(opt, model, 20)
    chain_model = copy.deepcopy(model)
    chain_opt = build(gk, name, chain_model, kwargs)
    chain_opt.torch_kernels = False
    chain_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    calls.clear()
    first = train(opt, model, 20, start=20)
    dispatched = len(calls.log)
    assert dispatched >= 40
    second = train(chain_opt, chain_model, 20, start=20)
    assert len(calls.log) == dispatched
    assert worst(first, second) <= RTOL
    chain_opt.torch_kernels = True  # and back, mid-run
    assert (
        worst(train(opt, model, 10, start=40), train(chain_opt, chain_model, 10, start=40)) <= RTOL
    )
    assert_same_state(opt, chain_opt)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lars_parameter_that_starts_late_gets_its_buffer_like_the_chain(
    dtype: torch.dtype, calls: Calls
) -> None:
    runs = []
    for dispatch in (True, False):
        model = make_model(dtype)
        opt = gk.LARS(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
        opt.torch_kernels = dispatch
        trajectory = []
        for step in range(20):
            opt.zero_grad()
            loss_of(model, step, False).backward()
            if step < 5:
                model[2].bias.grad = None
            opt.step()
            trajectory.append(flat(model))
        runs.append(trajectory)
    assert calls.fused() > 0
    assert worst(runs[1], runs[0]) <= LAYERWISE_RTOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lars_heavy_ball_steps_the_gradients_without_a_workspace(
    dtype: torch.dtype, calls: Calls
) -> None:
    """Heavy ball in float32: after the first step (whose buffers torch starts undamped) each
    tensor takes one kernel call on its own gradient, its factor as the dampening 1 - s (1 -
    tau); float64 keeps the workspace (the same number of calls, the chain's numbers to 1e-15).
    Dampening, weight decay and maximize all enter the kernel's arithmetic here."""
    runs, workspaces = [], []
    for dispatch in (True, False):
        model = make_model(dtype)
        opt = gk.LARS(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2, maximize=True)
        opt.param_groups[0]["dampening"] = 0.3
        opt.torch_kernels = dispatch
        runs.append(train(opt, model, 30, check_grads=True))
        workspaces.append(bool(opt._kept.workspaces._lists))
    tensors = len(list(make_model().parameters()))
    assert calls.log == [("sgd", "fused")] * (30 * tensors)
    # The workspace is made at the first step (fresh buffers); in float64 it is used throughout.
    assert workspaces == [True, False]
    assert relative(flat(make_model(dtype)), runs[0][-1]) > 1e-3, "the run must move"
    assert worst(runs[1], runs[0]) <= LAYERWISE_RTOL[dtype]


def test_lars_factor_too_small_for_the_dampening_keeps_the_workspace() -> None:
    """With s ~ 1e-10 the dampening 1 - s would carry s to 1e-6 only (2**-53 / s); the
    workspace keeps the momentum buffers equal to the chain's to 1e-12 in float64."""
    optimizers = []
    for dispatch in (True, False):
        model = make_model()
        opt = gk.LARS(model.parameters(), lr=1e-7, momentum=0.9, weight_decay=1e-2)
        opt.torch_kernels = dispatch
        train(opt, model, 5)
        optimizers.append(opt)
    assert_same_state(optimizers[1], optimizers[0])


def test_lamb_keeps_its_workspace_between_steps(calls: Calls) -> None:
    model = make_model()
    opt = gk.LAMB(model.parameters(), lr=1e-2)
    params = list(model.parameters())
    train(opt, model, 2)
    first = opt._kept.workspaces(params)
    train(opt, model, 3, start=2)
    assert all(a is b for a, b in zip(first, opt._kept.workspaces(params), strict=True))
    assert all(
        w.shape == p.shape and w.stride() == p.stride() for w, p in zip(first, params, strict=True)
    )
    # Not state: a state dict and a copy have none of it.
    assert all(set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"} for p in params)
    assert not copy.deepcopy(opt)._kept.workspaces._lists


@pytest.mark.parametrize("name", ["SGD", "LARS"])
def test_sgds_step_counters_advance_as_one_vector_and_survive_a_reload(
    calls: Calls, name: str
) -> None:
    """torch's SGD keeps no counter; the default path advances gradkit's as views of one
    vector. Every counter still counts, and one loaded from a state dict is taken up."""
    model = make_model()
    params = list(model.parameters())
    opt = getattr(gk, name)(model.parameters(), lr=1e-2, momentum=0.9)
    train(opt, model, 3)
    assert calls.fused() > 0
    steps = [opt.state[p]["step"] for p in params]
    assert [float(s) for s in steps] == [3.0] * len(params)
    storages = {s.untyped_storage().data_ptr() for s in steps}
    assert len(storages) == 1
    saved = copy.deepcopy(opt.state_dict())
    train(opt, model, 2, start=3)
    assert [float(opt.state[p]["step"]) for p in params] == [5.0] * len(params)
    opt.load_state_dict(saved)
    train(opt, model, 1, start=5)
    assert [float(opt.state[p]["step"]) for p in params] == [4.0] * len(params)
    # The saved state was not advanced through a view it shares with the optimizer.
    assert [float(entry["step"]) for entry in saved["state"].values()] == [3.0] * len(params)


def test_foreach_path_for_cuda_lamb_and_lars_equal_the_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CUDA's paths (LAMB: Adam's foreach; LARS: SGD's fused), run here on CPU tensors."""
    calls = Calls(monkeypatch)
    monkeypatch.setattr(_torch_kernels, "kernel_for", lambda device, dtype, algorithm: "foreach")
    for case in ("lamb-wd-bounds-maximize", "lars-nesterov-wd-maximize"):
        name, functional, kwargs = LAYERWISE[case]
        model, chain_model = make_model(), make_model()
        calls.clear()
        dispatched = train(build(gk, name, model, kwargs), model, 30, check_grads=True)
        assert set(calls.log) == {(functional, "foreach")} and len(calls.log) >= 60
        chain_opt = build(gk, name, chain_model, kwargs)
        chain_opt.torch_kernels = False
        assert worst(train(chain_opt, chain_model, 30), dispatched) <= RTOL
