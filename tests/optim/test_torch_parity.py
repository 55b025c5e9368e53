"""Parity with ``torch.optim`` for the algorithms both libraries have.

For SGD, Adagrad, RMSprop, Adadelta, Adam (and AMSGrad), Adamax, NAdam, AdamW and RAdam,
``gradkit.optim.X(..., **kw)`` must follow the same trajectory as ``torch.optim.X(..., **kw)``:
same parameters after every step, same per-parameter state (under torch's key names) and the
same ``step`` counters. The two libraries evaluate the update in a different order of float
operations (multi-tensor ops here, torch's single-tensor loop on CPU), so agreement is at the
level of rounding: on a smooth float64 problem in the stable regime the relative difference
stays near 1e-16 for 100 steps, and the tests allow 1e-12.

The problem: a Linear(5, 8)-Tanh-Linear(8, 3) MLP in float64 on fixed random data with an MSE
loss, mini-batches in a fixed cycle, and two param groups (the second with half the learning
rate and no weight decay). With ``maximize=True`` the objective is the negated loss, so a
maximizing run descends the same landscape and stays in the stable regime.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradkit.optim as gk

STEPS = 100
RTOL = 1e-12
MIN_MOVE = 1e-3  # every run must move every group's parameters by at least this much (relative)
BATCHES = 4

_generator = torch.Generator().manual_seed(1234)
INPUTS = torch.randn(BATCHES * 16, 5, generator=_generator, dtype=torch.float64)
TARGETS = torch.randn(BATCHES * 16, 3, generator=_generator, dtype=torch.float64)


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(torch.float64)


def make_groups(model: nn.Sequential, lr: Any) -> list[dict[str, Any]]:
    """Group 0 takes the optimizer's defaults; group 1 has half the rate and no decay."""
    second_lr = lr * 0.5 if not isinstance(lr, Tensor) else (lr * 0.5).clone()
    return [
        {"params": list(model[0].parameters())},
        {"params": list(model[2].parameters()), "lr": second_lr, "weight_decay": 0.0},
    ]


def make_pair(
    name: str, kwargs: dict[str, Any]
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, torch.optim.Optimizer]:
    """Two identical models, one driven by torch.optim.<name>, one by gradkit.optim.<name>."""
    lr = kwargs["lr"]
    ref_model, gk_model = make_model(), make_model()
    ref_opt = getattr(torch.optim, name)(make_groups(ref_model, lr), **kwargs)
    gk_opt = getattr(gk, name)(make_groups(gk_model, lr), **kwargs)
    return ref_model, ref_opt, gk_model, gk_opt


def train_step(model: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    start = (step % BATCHES) * 16
    loss = nn.functional.mse_loss(model(INPUTS[start : start + 16]), TARGETS[start : start + 16])
    if opt.param_groups[0].get("maximize", False):
        loss = -loss
    opt.zero_grad()
    loss.backward()
    opt.step()


def flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def rel_diff(reference: Tensor, other: Tensor) -> float:
    """max |reference - other| / max |reference| (exact agreement required for a zero tensor)."""
    diff = (reference - other).abs().max().item()
    scale = reference.abs().max().item()
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def run_lockstep(
    ref: tuple[nn.Module, torch.optim.Optimizer],
    other: tuple[nn.Module, torch.optim.Optimizer],
    steps: int,
    before_step: Callable[[int, torch.optim.Optimizer], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """Train both pairs side by side; return the relative parameter difference after each step."""
    diffs = []
    for step in range(steps):
        for model, opt in (ref, other):
            if before_step is not None:
                before_step(step, opt)
            train_step(model, opt, step)
        if after_step is not None:
            after_step()
        diffs.append(rel_diff(flat(ref[0]), flat(other[0])))
    return diffs


def assert_trajectories_agree(diffs: list[float], what: str) -> None:
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    early = ", ".join(f"{d:.1e}" for d in diffs[:5])
    assert diffs[worst] <= RTOL, (
        f"{what}: relative parameter difference {diffs[worst]:.3e} after step {worst + 1} "
        f"exceeds {RTOL:.0e} (first steps: {early})"
    )


def assert_moved(model: nn.Module, initial: list[Tensor], what: str) -> None:
    for index, (param, start) in enumerate(zip(model.parameters(), initial, strict=True)):
        moved = rel_diff(start, param.detach())
        assert moved > MIN_MOVE, (
            f"{what}: parameter {index} moved only {moved:.1e} (relative); the comparison "
            f"would be vacuous"
        )


def assert_states_agree(
    ref_opt: torch.optim.Optimizer,
    gk_opt: torch.optim.Optimizer,
    what: str,
    *,
    same_dtypes: bool = True,
) -> None:
    """Same state keys as torch (gradkit may add ``step`` where torch keeps none), same values.

    torch.optim.SGD keeps no ``step``; one it loaded from a gradkit state dict stays frozen, so
    it is not compared. ``same_dtypes=False`` allows torch's casting of loaded state (see
    :func:`test_state_dict_loads_across_libraries`).
    """
    ref_params = [p for group in ref_opt.param_groups for p in group["params"]]
    gk_params = [p for group in gk_opt.param_groups for p in group["params"]]
    for index, (ref_p, gk_p) in enumerate(zip(ref_params, gk_params, strict=True)):
        ref_state, gk_state = ref_opt.state[ref_p], gk_opt.state[gk_p]
        extra = set(gk_state) - set(ref_state)
        assert set(ref_state) <= set(gk_state) and extra <= {"step"}, (
            f"{what}: parameter {index} has state keys {sorted(gk_state)}, torch has "
            f"{sorted(ref_state)}"
        )
        for key, ref_value in ref_state.items():
            if key == "step" and isinstance(ref_opt, torch.optim.SGD):
                continue
            value = gk_state[key]
            assert isinstance(value, Tensor), f"{what}: state[{key!r}] is {type(value)}"
            assert value.shape == ref_value.shape, f"{what}: state[{key!r}] shape"
            assert value.dtype == ref_value.dtype or not same_dtypes, (
                f"{what}: state[{key!r}] of parameter {index} is {value.dtype}, torch's is "
                f"{ref_value.dtype}"
            )
            if key == "step":
                assert value.item() == ref_value.item(), (
                    f"{what}: step counter {value.item()} != torch's {ref_value.item()}"
                )
            else:
                # A value torch cast on load was computed in the coarser dtype on one side.
                coarser = max(value.dtype, ref_value.dtype, key=lambda t: torch.finfo(t).eps)
                rtol = RTOL if value.dtype == ref_value.dtype else 100 * torch.finfo(coarser).eps
                diff = rel_diff(ref_value.double(), value.double())
                assert diff <= rtol, (
                    f"{what}: state[{key!r}] of parameter {index} differs from torch's by "
                    f"{diff:.3e} (relative)"
                )


# --- the grid ------------------------------------------------------------------------------

LR = {
    "SGD": 0.05,
    "Adagrad": 1e-2,
    "RMSprop": 1e-3,
    "Adadelta": 1.0,
    "Adam": 1e-3,
    "AdamW": 1e-3,
    "Adamax": 2e-3,
    "NAdam": 1e-3,
    "RAdam": 1e-3,
}

WD = {"weight_decay": 1e-2}
MAX = {"maximize": True}

GRID: dict[str, dict[str, dict[str, Any]]] = {
    "SGD": {
        "plain": {},
        "wd": WD,
        "maximize": MAX,
        "momentum": {"momentum": 0.9},
        "momentum-dampening": {"momentum": 0.9, "dampening": 0.3},
        "momentum-dampening-wd-maximize": {"momentum": 0.9, "dampening": 0.5, **WD, **MAX},
        "nesterov": {"momentum": 0.9, "nesterov": True},
        "nesterov-wd": {"momentum": 0.9, "nesterov": True, **WD},
        "nesterov-maximize": {"momentum": 0.8, "nesterov": True, **MAX},
    },
    "Adagrad": {
        "default": {},
        "lr_decay": {"lr_decay": 0.05},
        "initial_accumulator_value": {"initial_accumulator_value": 0.1},
        "wd": WD,
        "maximize": MAX,
        "all": {"lr_decay": 0.01, "initial_accumulator_value": 0.5, **WD, **MAX},
    },
    "RMSprop": {
        "default": {},
        "alpha": {"alpha": 0.9},
        "centered": {"centered": True},
        "momentum": {"momentum": 0.9},
        "centered-momentum": {"centered": True, "momentum": 0.9},
        "wd": WD,
        "maximize": MAX,
        "centered-momentum-wd-maximize": {"centered": True, "momentum": 0.5, **WD, **MAX},
    },
    "Adadelta": {
        "default": {},
        "rho": {"rho": 0.95},
        "wd": WD,
        "maximize": MAX,
        "wd-maximize": {**WD, **MAX},
    },
    "Adam": {
        "default": {},
        "betas": {"betas": (0.8, 0.99)},
        "amsgrad": {"amsgrad": True},
        "wd": WD,
        "wd-decoupled": {**WD, "decoupled_weight_decay": True},
        "maximize": MAX,
        "amsgrad-wd-maximize": {"amsgrad": True, **WD, **MAX},
        "amsgrad-wd-decoupled-maximize": {
            "amsgrad": True,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
            **MAX,
        },
    },
    "AdamW": {
        "default": {},
        "wd": {"weight_decay": 0.1},
        "no-wd": {"weight_decay": 0.0},
        "amsgrad": {"amsgrad": True},
        "maximize": MAX,
        "amsgrad-maximize": {"amsgrad": True, **MAX},
    },
    "Adamax": {
        "default": {},
        "betas": {"betas": (0.8, 0.99)},
        "wd": WD,
        "maximize": MAX,
        "wd-maximize": {**WD, **MAX},
    },
    "NAdam": {
        "default": {},
        "momentum_decay": {"momentum_decay": 1e-2},
        "no-momentum_decay": {"momentum_decay": 0.0},
        "wd": WD,
        "wd-decoupled": {**WD, "decoupled_weight_decay": True},
        "maximize": MAX,
        "wd-decoupled-maximize": {"weight_decay": 0.1, "decoupled_weight_decay": True, **MAX},
    },
    "RAdam": {
        "default": {},
        "betas": {"betas": (0.8, 0.99)},
        "wd": WD,
        "wd-decoupled": {**WD, "decoupled_weight_decay": True},
        "maximize": MAX,
        "wd-decoupled-maximize": {"weight_decay": 0.1, "decoupled_weight_decay": True, **MAX},
    },
}

CASES = [
    pytest.param(name, {"lr": LR[name], **options}, id=f"{name}-{label}")
    for name, configs in GRID.items()
    for label, options in configs.items()
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_trajectory_and_state_match_torch(name: str, kwargs: dict[str, Any]) -> None:
    ref_model, ref_opt, gk_model, gk_opt = make_pair(name, kwargs)
    initial = [p.detach().clone() for p in ref_model.parameters()]
    diffs = run_lockstep((ref_model, ref_opt), (gk_model, gk_opt), STEPS)
    what = f"{name}({kwargs})"
    assert_moved(ref_model, initial, what)
    assert_trajectories_agree(diffs, what)
    assert_states_agree(ref_opt, gk_opt, what)


def test_grid_covers_every_shared_algorithm() -> None:
    shared = {"SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"}
    assert set(GRID) == shared
    for name in shared:
        assert issubclass(getattr(gk, name), torch.optim.Optimizer)


# --- hyperparameters read from the group at every step -------------------------------------

SCHEDULERS = {
    "SGD-momentum-StepLR": (
        "SGD",
        {"lr": 0.05, "momentum": 0.9},
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7),
    ),
    "Adam-LambdaLR": (
        "Adam",
        {"lr": 2e-3},
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + 0.05 * t)),
    ),
    "RMSprop-CosineAnnealingWarmRestarts": (
        "RMSprop",
        {"lr": 1e-3, "momentum": 0.5},
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=30),
    ),
    # OneCycleLR also cycles SGD's momentum and Adam's beta1, group by group.
    "SGD-nesterov-OneCycleLR": (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[0.05, 0.025], total_steps=STEPS
        ),
    ),
    "AdamW-OneCycleLR": (
        "AdamW",
        {"lr": 1e-3},
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[2e-3, 1e-3], total_steps=STEPS
        ),
    ),
    "NAdam-OneCycleLR": (
        "NAdam",
        {"lr": 1e-3},
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[2e-3, 1e-3], total_steps=STEPS
        ),
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULERS), ids=list(SCHEDULERS))
def test_lr_scheduler_drives_gradkit_like_torch(case: str) -> None:
    name, kwargs, make_scheduler = SCHEDULERS[case]
    ref_model, ref_opt, gk_model, gk_opt = make_pair(name, kwargs)
    ref_sched, gk_sched = make_scheduler(ref_opt), make_scheduler(gk_opt)
    lrs = []

    def advance() -> None:
        ref_sched.step()
        gk_sched.step()
        assert gk_sched.get_last_lr() == ref_sched.get_last_lr()
        lrs.append(ref_sched.get_last_lr()[0])

    initial = [p.detach().clone() for p in ref_model.parameters()]
    diffs = run_lockstep((ref_model, ref_opt), (gk_model, gk_opt), STEPS, after_step=advance)
    assert len(set(lrs)) > 5, "the schedule should actually change the learning rate"
    assert_moved(ref_model, initial, case)
    assert_trajectories_agree(diffs, case)
    assert_states_agree(ref_opt, gk_opt, case)


def _momentum_schedule(step: int, opt: torch.optim.Optimizer) -> None:
    # Cyclic momentum with a stretch of zero momentum (the buffer is kept, then reused).
    for index, group in enumerate(opt.param_groups):
        momentum = 0.0 if 40 <= step < 50 else 0.85 + 0.1 * math.cos(step / 7 + index)
        group["momentum"] = momentum


def _betas_schedule(step: int, opt: torch.optim.Optimizer) -> None:
    for index, group in enumerate(opt.param_groups):
        beta1 = 0.9 - 0.1 * math.sin(step / 9 + index)
        beta2 = 0.999 if step < 50 else 0.99
        group["betas"] = (beta1, beta2)


def _mixed_schedule(step: int, opt: torch.optim.Optimizer) -> None:
    for group in opt.param_groups:
        group["lr"] = group["lr"] * 0.99
        group["weight_decay"] = 0.0 if step < 30 else 0.05
        group["alpha"] = 0.99 if step % 20 < 10 else 0.9


HYPER_CASES = {
    "SGD-momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}, _momentum_schedule),
    "SGD-momentum-dampening": (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.2},
        _momentum_schedule,
    ),
    "RMSprop-momentum": ("RMSprop", {"lr": 1e-3, "momentum": 0.9}, _momentum_schedule),
    "RMSprop-lr-wd-alpha": ("RMSprop", {"lr": 1e-3, "centered": True}, _mixed_schedule),
    "Adam-betas": ("Adam", {"lr": 1e-3}, _betas_schedule),
    "Adam-amsgrad-betas": ("Adam", {"lr": 1e-3, "amsgrad": True}, _betas_schedule),
    "AdamW-betas": ("AdamW", {"lr": 1e-3}, _betas_schedule),
    "Adamax-betas": ("Adamax", {"lr": 2e-3}, _betas_schedule),
    "NAdam-betas": ("NAdam", {"lr": 1e-3}, _betas_schedule),
    "RAdam-betas": ("RAdam", {"lr": 1e-3}, _betas_schedule),
}


@pytest.mark.parametrize("case", list(HYPER_CASES), ids=list(HYPER_CASES))
def test_hyperparameters_changed_mid_run_match_torch(case: str) -> None:
    name, kwargs, schedule = HYPER_CASES[case]
    ref_model, ref_opt, gk_model, gk_opt = make_pair(name, kwargs)
    initial = [p.detach().clone() for p in ref_model.parameters()]
    diffs = run_lockstep((ref_model, ref_opt), (gk_model, gk_opt), STEPS, before_step=schedule)
    assert_moved(ref_model, initial, case)
    assert_trajectories_agree(diffs, case)
    assert_states_agree(ref_opt, gk_opt, case)


# --- lr as a tensor ------------------------------------------------------------------------

TENSOR_LR_CASES = {
    "SGD-momentum": ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2}),
    "Adam": ("Adam", {"lr": 1e-3, "weight_decay": 1e-2}),
    "Adam-decoupled": ("Adam", {"lr": 1e-3, "weight_decay": 0.1, "decoupled_weight_decay": True}),
}


@pytest.mark.parametrize("case", list(TENSOR_LR_CASES), ids=list(TENSOR_LR_CASES))
def test_tensor_lr_matches_float_lr(case: str) -> None:
    name, kwargs = TENSOR_LR_CASES[case]
    ref_model, ref_opt, float_model, float_opt = make_pair(name, kwargs)
    tensor_kwargs = {**kwargs, "lr": torch.tensor(kwargs["lr"], dtype=torch.float64)}
    tensor_model = make_model()
    tensor_opt = getattr(gk, name)(make_groups(tensor_model, tensor_kwargs["lr"]), **tensor_kwargs)
    initial = [p.detach().clone() for p in tensor_model.parameters()]
    for step in range(STEPS):
        for model, opt in ((ref_model, ref_opt), (float_model, float_opt)):
            train_step(model, opt, step)
        train_step(tensor_model, tensor_opt, step)
    assert_moved(tensor_model, initial, case)
    for group in tensor_opt.param_groups:
        assert isinstance(group["lr"], Tensor) and group["lr"].dim() == 0
    vs_float = rel_diff(flat(float_model), flat(tensor_model))
    assert vs_float <= RTOL, f"{case}: tensor lr differs from float lr by {vs_float:.3e}"
    vs_torch = rel_diff(flat(ref_model), flat(tensor_model))
    assert vs_torch <= RTOL, f"{case}: tensor lr differs from torch by {vs_torch:.3e}"
    assert_states_agree(ref_opt, tensor_opt, case)


# --- state_dict interchange ----------------------------------------------------------------

INTEROP_CASES = {
    "Adam": ("Adam", {"lr": 1e-3, "weight_decay": 1e-2}),
    "Adam-amsgrad": ("Adam", {"lr": 1e-3, "amsgrad": True}),
    "SGD-momentum": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "NAdam": ("NAdam", {"lr": 1e-3, "weight_decay": 1e-2}),
}
LIBRARIES = {"torch": torch.optim, "gradkit": gk}


@pytest.mark.parametrize("direction", ["torch-to-gradkit", "gradkit-to-torch"])
@pytest.mark.parametrize("case", list(INTEROP_CASES), ids=list(INTEROP_CASES))
def test_state_dict_loads_across_libraries(case: str, direction: str) -> None:
    """Train with one library, load its state_dict into the other, continue in lock step."""
    name, kwargs = INTEROP_CASES[case]
    source_lib, target_lib = (LIBRARIES[side] for side in direction.split("-to-"))
    source_model = make_model()
    source_opt = getattr(source_lib, name)(make_groups(source_model, kwargs["lr"]), **kwargs)
    for step in range(20):
        train_step(source_model, source_opt, step)
    saved = copy.deepcopy(source_opt.state_dict())

    # Built with another lr: the param groups of the state dict must replace the target's.
    target_model = copy.deepcopy(source_model)
    target_kwargs = {**kwargs, "lr": 10 * kwargs["lr"]}
    target_opt = getattr(target_lib, name)(make_groups(target_model, 1.0), **target_kwargs)
    target_opt.load_state_dict(saved)
    assert [g["lr"] for g in target_opt.param_groups] == [kwargs["lr"], kwargs["lr"] * 0.5]

    initial = [p.detach().clone() for p in source_model.parameters()]
    diffs = run_lockstep((source_model, source_opt), (target_model, target_opt), 60)
    what = f"{case} {direction}"
    assert_moved(source_model, initial, what)
    assert_trajectories_agree(diffs, what)
    if source_lib is torch.optim:
        assert_states_agree(source_opt, target_opt, what)
    else:
        # torch.optim's load_state_dict casts every floating state tensor but ``step`` to the
        # parameter's dtype (NAdam's float32 ``mu_product`` becomes float64), as it does when
        # loading its own state dict; the values still agree.
        assert_states_agree(target_opt, source_opt, what, same_dtypes=False)
