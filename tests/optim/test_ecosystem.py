"""The optimizers inside the tools practitioners use them with.

``copy.deepcopy`` and ``pickle`` (of a model and its optimizer together), SAM under
``torch.amp.GradScaler`` and behind a trainer's plain ``optimizer.step()``,
``torch.compile(optimizer.step)``, timm's ``no_weight_decay()`` convention and LARS's trust
ratio for an exactly zero gradient as timm and NVIDIA's LARC compute it.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from gradkit.optim import (
    LARS,
    OPTIMIZERS,
    SAM,
    SGD,
    Adam,
    ChainedOptimizer,
    add_decayed_weights,
    chain,
    param_groups,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)

# Large enough that a few steps move the weights visibly, small enough that nothing diverges.
LR: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nag": 0.05,
    "sgdw": 0.05,
    "adagrad": 0.1,
    "rmsprop": 0.02,
    "adadelta": 1.0,
    "adam": 0.05,
    "amsgrad": 0.05,
    "adamax": 0.05,
    "nadam": 0.05,
    "adamw": 0.05,
    "radam": 0.05,
    "lars": 20.0,
    "lamb": 0.05,
    "lion": 0.02,
    "adan": 0.05,
}

INPUTS = torch.linspace(-1.0, 1.0, 15, dtype=torch.float64).reshape(5, 3)
TARGETS = torch.linspace(0.5, -0.5, 10, dtype=torch.float64).reshape(5, 2)
TOLERANCE = {"rtol": 0.0, "atol": 1e-12}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2).double()


def loss_of(model: nn.Module) -> Tensor:
    return ((model(INPUTS) - TARGETS) ** 2).mean()


def closure_for(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], Tensor]:
    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    return closure


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        closure = closure_for(model, optimizer)
        if isinstance(optimizer, SAM):
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()


def assert_same_model(actual: nn.Module, expected: nn.Module) -> None:
    for (name, a), (_, b) in zip(
        actual.named_parameters(), expected.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")


# --- copy.deepcopy and pickle ----------------------------------------------------------------


def _user_chain(params: Any) -> ChainedOptimizer:
    return ChainedOptimizer(
        params,
        chain(add_decayed_weights(), scale_by_rms(), trace(), scale_by_learning_rate()),
        lr=0.01,
        weight_decay=0.01,
        momentum=0.9,
    )


FACTORIES: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    **{
        name: (lambda params, name=name: OPTIMIZERS[name].create(params, lr=LR[name]))
        for name in OPTIMIZERS
    },
    "user-chain": _user_chain,
    "sam-momentum": lambda params: SAM(SGD(params, lr=0.05, momentum=0.9), rho=0.05),
    "asam-adam": lambda params: SAM(Adam(params, lr=0.05), rho=0.5, adaptive=True),
}


def _round_trip(value: Any, via: str) -> Any:
    if via == "deepcopy":
        return copy.deepcopy(value)
    buffer = io.BytesIO()
    pickle.dump(value, buffer)
    buffer.seek(0)
    return pickle.load(buffer)


@pytest.mark.parametrize("via", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_copied_optimizer_continues_in_lock_step(name, via):
    model = make_model()
    optimizer = FACTORIES[name](model.parameters())
    train(model, optimizer, 3)
    model_copy, optimizer_copy = _round_trip((model, optimizer), via)
    copied_params = {id(p) for p in model_copy.parameters()}
    assert all(id(p) in copied_params for g in optimizer_copy.param_groups for p in g["params"])
    for _ in range(3):
        train(model, optimizer, 1)
        train(model_copy, optimizer_copy, 1)
        assert_same_model(model_copy, model)
    assert type(optimizer_copy) is type(optimizer)
    assert optimizer_copy.defaults == optimizer.defaults


def test_pickled_fused_optimizer_compiles_its_own_program():
    model = make_model()
    optimizer = Adam(model.parameters(), lr=0.05, fused=True)
    train(model, optimizer, 2)  # the first step is eager, the second compiled
    assert optimizer._fused.compilations == 1
    model_copy, optimizer_copy = _round_trip((model, optimizer), "pickle")
    assert optimizer_copy.fused and optimizer_copy._fused is not optimizer._fused
    for _ in range(2):
        train(model, optimizer, 1)
        train(model_copy, optimizer_copy, 1)
        assert_same_model(model_copy, model)


def test_sam_copied_between_its_two_passes_finishes_the_step():
    model = make_model()
    optimizer = SAM(SGD(model.parameters(), lr=0.05, momentum=0.9), rho=0.05)
    train(model, optimizer, 2)
    optimizer.zero_grad()
    loss_of(model).backward()
    optimizer.first_step()
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer))
    for m, opt in ((model, optimizer), (model_copy, optimizer_copy)):
        opt.zero_grad()
        loss_of(m).backward()
        opt.step()
    assert_same_model(model_copy, model)


# --- SAM: step() without a closure, GradScaler ------------------------------------------------


def _sam(model: nn.Module) -> SAM:
    return SAM(SGD(model.parameters(), lr=0.05, momentum=0.9), rho=0.05)


def test_sam_step_without_closure_after_first_step_is_second_step():
    model, reference_model = make_model(), make_model()
    optimizer, reference = _sam(model), _sam(reference_model)
    for _ in range(3):
        for m, opt in ((model, optimizer), (reference_model, reference)):
            opt.zero_grad()
            loss_of(m).backward()
            opt.first_step()
            opt.zero_grad()
            loss_of(m).backward()
        optimizer.step()  # what a trainer calls (Hugging Face's Trainer, accelerate)
        reference.second_step()
        for a, b in zip(model.parameters(), reference_model.parameters(), strict=True):
            assert torch.equal(a, b)
    # And the same as the closure form.
    closure_model = make_model()
    closure_sam = _sam(closure_model)
    train(closure_model, closure_sam, 3)
    for a, b in zip(model.parameters(), closure_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sam_step_without_closure_or_first_step_is_an_error():
    optimizer = _sam(make_model())
    message = (
        "SAM.step needs a closure that zeroes the gradients, computes the loss and calls "
        "backward, or a call of first_step (after the first backward) before step(); got neither"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        optimizer.step()


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_sam_first_step_on_a_non_finite_gradient_does_not_perturb(bad):
    model = make_model()
    optimizer = _sam(model)
    optimizer.zero_grad()
    loss_of(model).backward()
    model.weight.grad[0, 0] = bad
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.first_step()
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    # The step finishes as an inner step from theta.
    optimizer.zero_grad()
    loss_of(model).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    for p, b, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p, b - 0.05 * g, **TOLERANCE)


def _scaled_sam_step(
    model: nn.Module,
    optimizer: SAM,
    scaler: torch.amp.GradScaler,
    first: float | None = None,
    second: float | None = None,
    unscale: bool = False,
) -> None:
    """The AMP recipe of SAM's docstring; ``first``/``second`` corrupt one gradient entry."""
    optimizer.zero_grad()
    scaler.scale(loss_of(model)).backward()
    if first is not None:
        model.weight.grad[0, 0] = first
    optimizer.first_step()
    optimizer.zero_grad()
    scaler.scale(loss_of(model)).backward()
    if second is not None:
        model.weight.grad[1, 2] = second
    if unscale:
        scaler.unscale_(optimizer)  # as before gradient clipping
    scaler.step(optimizer)
    scaler.update()


@pytest.mark.parametrize("unscale", [False, True], ids=["plain", "unscale_"])
def test_sam_under_grad_scaler_skips_non_finite_steps_and_restores_the_weights(unscale):
    model, reference_model = make_model(), make_model()
    optimizer, reference = _sam(model), _sam(reference_model)
    # A power-of-two scale (halved on a skipped step) is exact; no growth within the test.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)

    for _ in range(2):
        _scaled_sam_step(model, optimizer, scaler, unscale=unscale)
        train(reference_model, reference, 1)
        assert_same_model(model, reference_model)
    assert scaler.get_scale() == 2.0**10

    corruptions = [(None, math.inf), (None, math.nan), (math.inf, math.inf)]
    for first, second in corruptions:
        before = [p.detach().clone() for p in model.parameters()]
        buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
        scale = scaler.get_scale()
        _scaled_sam_step(model, optimizer, scaler, first, second, unscale=unscale)
        for p, b, buffer in zip(model.parameters(), before, buffers, strict=True):
            assert torch.equal(p, b), "a skipped step must leave the weights at theta"
            assert torch.equal(optimizer.state[p]["momentum_buffer"], buffer)
        assert scaler.get_scale() == scale / 2

    for _ in range(2):
        _scaled_sam_step(model, optimizer, scaler, unscale=unscale)
        train(reference_model, reference, 1)
        assert_same_model(model, reference_model)


def test_sam_closure_under_grad_scaler_is_an_error():
    model = make_model()
    optimizer = _sam(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    optimizer.zero_grad()
    scaler.scale(loss_of(model)).backward()
    message = (
        "SAM.step: a closure cannot be used under GradScaler; call first_step after the first "
        "scaled backward, then scaler.step(opt) after the second"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        scaler.step(optimizer, closure_for(model, optimizer))


# --- torch.compile(optimizer.step) -----------------------------------------------------------


def _compiled_run(fused: bool, compiled: bool, calls: list[int]) -> Tensor:
    torch.manual_seed(0)
    param = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    optimizer = Adam([param], lr=0.1, fused=fused)

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        calls.append(1)
        return gm.forward

    step = torch.compile(optimizer.step, backend=backend) if compiled else optimizer.step
    pattern = torch.arange(12.0, dtype=torch.float64).reshape(4, 3) - 5.0
    for index in range(5):
        param.grad = pattern * (index + 1) / 10
        step()
    if fused:
        assert optimizer._fused.compilations + optimizer._fused.direct_steps >= 1
    return param.detach().clone()


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
def test_compiled_optimizer_step_matches_the_uncompiled_one(fused):
    torch.compiler.reset()
    calls: list[int] = []
    try:
        compiled = _compiled_run(fused, True, calls)
    finally:
        torch.compiler.reset()
    uncompiled = _compiled_run(fused, False, [])
    torch.testing.assert_close(compiled, uncompiled, rtol=1e-12, atol=0.0)
    if not fused:
        # The first step (state created) and the steady state: no graph per step count.
        assert 1 <= len(calls) <= 2, f"{len(calls)} graphs for 5 steps"


# --- timm's no_weight_decay() -----------------------------------------------------------------


class TinyViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 3))
        self.proj = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)

    def no_weight_decay(self) -> set[str]:
        # timm's ViTs list dist_token whether or not they have one.
        return {"pos_embed", "dist_token"}


def _decay_of(groups: list[dict[str, Any]], model: nn.Module) -> dict[str, tuple[float, bool]]:
    names = {id(p): name for name, p in model.named_parameters()}
    return {
        names[id(p)]: (group["weight_decay"], group["layer_adaptation"])
        for group in groups
        for p in group["params"]
    }


def test_param_groups_reads_the_model_no_weight_decay():
    model = TinyViT()
    decay = _decay_of(param_groups(model, weight_decay=0.05), model)
    assert decay == {
        "pos_embed": (0.0, False),
        "proj.weight": (0.05, True),
        "proj.bias": (0.0, False),
        "norm.weight": (0.0, False),
        "norm.bias": (0.0, False),
    }


def test_param_groups_reads_no_weight_decay_of_a_submodule():
    model = nn.Sequential(TinyViT(), nn.Linear(3, 2))
    decay = _decay_of(param_groups(model, weight_decay=0.05), model)
    assert decay["0.pos_embed"] == (0.0, False)
    assert decay["0.proj.weight"] == (0.05, True)
    assert decay["1.weight"] == (0.05, True)


def test_param_groups_rejects_a_no_weight_decay_that_is_not_a_set_of_names():
    class Bad(TinyViT):
        def no_weight_decay(self) -> Any:
            return "pos_embed"

    message = (
        "param_groups: model.no_weight_decay() returned 'pos_embed'; expected a set of "
        "parameter names (str)"
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        param_groups(Bad(), weight_decay=0.05)


# --- LARS with an exactly zero gradient -------------------------------------------------------


def _lars_two_steps(unit_ratio: bool | None, fused: bool = False) -> list[Tensor]:
    """Two LARS steps (lr 1, eta 1e-3, beta 0.1, no momentum) of a weight [3, 4] whose
    gradient is exactly 0 and of a weight [6, 8] with gradient [0, 5]."""
    frozen_gain = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    weight = nn.Parameter(torch.tensor([6.0, 8.0], dtype=torch.float64))
    options: dict[str, Any] = {} if unit_ratio is None else {"unit_ratio_on_zero_grad": unit_ratio}
    optimizer = LARS(
        [frozen_gain, weight],
        lr=1.0,
        momentum=0.0,
        weight_decay=0.1,
        trust_coefficient=1e-3,
        fused=fused,
        **options,
    )
    for _ in range(2):
        frozen_gain.grad = torch.zeros(2, dtype=torch.float64)
        weight.grad = torch.tensor([0.0, 5.0], dtype=torch.float64)
        optimizer.step()
    return [frozen_gain.detach(), weight.detach()]


def _expected_weight() -> Tensor:
    """The non-zero gradient's parameter, by hand: the same with or without the option."""
    w, g = [6.0, 8.0], [0.0, 5.0]
    for _ in range(2):
        w_norm = math.hypot(*w)
        ratio = 1e-3 * w_norm / (5.0 + 0.1 * w_norm)
        w = [wi - ratio * (gi + 0.1 * wi) for wi, gi in zip(w, g, strict=True)]
    return torch.tensor(w, dtype=torch.float64)


def test_lars_zero_gradient_follows_the_formula_by_default():
    # ratio = eta ||w|| / (0 + beta ||w||) = 1e-2; w <- w - 1e-2 * 0.1 w = 0.999 w, twice.
    for unit_ratio in (None, False):
        gain, weight = _lars_two_steps(unit_ratio)
        torch.testing.assert_close(
            gain, torch.tensor([3.0, 4.0], dtype=torch.float64) * 0.999**2, **TOLERANCE
        )
        torch.testing.assert_close(weight, _expected_weight(), **TOLERANCE)


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
def test_lars_unit_ratio_on_zero_grad_is_timms_ratio(fused):
    # ratio = 1 (timm, LARC); w <- w - 1 * (0 + 0.1 w) = 0.9 w, twice: [2.43, 3.24].
    gain, weight = _lars_two_steps(True, fused=fused)
    torch.testing.assert_close(gain, torch.tensor([2.43, 3.24], dtype=torch.float64), **TOLERANCE)
    torch.testing.assert_close(weight, _expected_weight(), **TOLERANCE)
