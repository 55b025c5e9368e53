"""Properties every gradkit optimizer must have, checked for every registry entry.

No-op steps, ``p.grad`` left alone, dtype preservation, ``state_dict`` round trips followed by
lock-step training, GradScaler, frozen and zero-size parameters, ``maximize``, param groups added
later, and the construction errors of user-built chains. SAM wrapping a few optimizers is
checked wherever the property is one SAM promises too.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from gradkit.optim import (
    OPTIMIZERS,
    SAM,
    AdamW,
    ChainedOptimizer,
    NAdam,
    add_decayed_weights,
    chain,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_nadam,
    scale_by_rms,
    trace,
    when,
)
from gradkit.optim._core import counter_keys

# Learning rates for these tests: large enough that three steps visibly move bfloat16
# parameters (spacing 2^-7 near 1), small enough that nothing diverges in a few steps.
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
    "lars": 20.0,  # times trust_coefficient 1e-3: a relative step of 2%
    "lamb": 0.05,
    # A step of lr in every coordinate; at 0.05 a bias coordinate passes its optimum within
    # five steps, so its gradient changes sign and the momentum (betas) changes the update.
    "lion": 0.05,
    "adan": 0.05,
}

# Each registry entry's own hyperparameter that a per-group override must change (besides
# lr and weight_decay, which every entry reads).
GROUP_OVERRIDE: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.5},
    "momentum": {"momentum": 0.5, "dampening": 0.1},
    "nag": {"momentum": 0.5},
    "sgdw": {"momentum": 0.5},
    "adagrad": {"lr_decay": 0.1, "eps": 1e-3},
    "rmsprop": {"alpha": 0.9, "centered": True},
    "adadelta": {"rho": 0.5},
    "adam": {"betas": (0.5, 0.9)},
    # Not amsgrad=False: v only grows over these 5 steps, so the maximum changes nothing.
    "amsgrad": {"betas": (0.5, 0.9), "eps": 1e-3},
    "adamax": {"betas": (0.5, 0.9)},
    "nadam": {"momentum_decay": 0.1},
    "adamw": {"betas": (0.5, 0.9), "eps": 1e-3},
    "radam": {"betas": (0.5, 0.9)},
    "lars": {"trust_coefficient": 2e-3, "momentum": 0.5},
    "lamb": {"betas": (0.5, 0.9), "weight_norm_bounds": (0.0, 0.5)},
    "lion": {"betas": (0.5, 0.9)},
    # Not no_prox: on its own (weight_decay 0) it changes nothing.
    "adan": {"betas": (0.5, 0.5, 0.9), "eps": 1e-3},
}

NAMES = list(OPTIMIZERS)
SAM_NAMES = ["sam-sgd", "sam-momentum", "sam-adam", "sam-lamb"]

# With weight_decay=0 and a zero gradient, an optimizer whose update is a function of the
# current gradient only (scaled per coordinate by statistics that a zero gradient keeps
# finite and positive) leaves the parameters where they are, whatever its history. Those
# with a first moment or momentum buffer keep moving on it.
MEMORYLESS = {"sgd", "adagrad", "rmsprop", "adadelta"}


def test_tables_cover_the_registry():
    """A new registry entry fails here until it is given settings for these tests."""
    assert set(LR) == set(OPTIMIZERS)
    assert set(GROUP_OVERRIDE) == set(OPTIMIZERS)
    assert MEMORYLESS.issubset(OPTIMIZERS)


# --- helpers ---------------------------------------------------------------------------------

_data = torch.Generator().manual_seed(1234)
INPUTS = torch.randn(16, 3, generator=_data, dtype=torch.float64)
TARGETS = torch.randn(16, 4, generator=_data, dtype=torch.float64)


def make_params(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[Tensor]:
    """A linear layer's weight (4, 3) and bias (4,), as leaf tensors of ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (weight, bias)]


def clone_params(params: list[Tensor]) -> list[Tensor]:
    return [p.detach().clone().requires_grad_(p.requires_grad) for p in params]


def loss_fn(params: list[Tensor]) -> Tensor:
    """Mean squared error of the linear layer on fixed data (in the parameters' dtype)."""
    weight, bias = params[0], params[1]
    inputs, targets = INPUTS.to(weight.dtype), TARGETS.to(weight.dtype)
    return ((inputs @ weight.T + bias - targets) ** 2).mean()


def make(name: str, params, **overrides: Any) -> torch.optim.Optimizer:
    """The registry entry ``name`` (or ``sam-<name>``: SAM over it) with this module's lr."""
    if name.startswith("sam-"):
        inner = name.removeprefix("sam-")
        return SAM(OPTIMIZERS[inner].create(params, **{"lr": LR[inner], **overrides}), rho=0.05)
    return OPTIMIZERS[name].create(params, **{"lr": LR[name], **overrides})


def train_step(
    optimizer: torch.optim.Optimizer,
    params: list[Tensor],
    loss: Callable[[list[Tensor]], Tensor] = loss_fn,
) -> None:
    """One step: backward and ``step()`` (SAM: ``step(closure)``, two backward passes)."""

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = loss(params)
        value.backward()
        return value

    if isinstance(optimizer, SAM):
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()


def snapshot(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> list[dict | None]:
    """A deep copy of each parameter's state (``None`` where it has none)."""
    result: list[dict | None] = []
    for param in params:
        state = optimizer.state.get(param)  # .get: never create an entry in the defaultdict
        if state is None:
            result.append(None)
            continue
        result.append(
            {
                key: value.detach().clone() if isinstance(value, Tensor) else copy.deepcopy(value)
                for key, value in state.items()
            }
        )
    return result


def assert_bitwise(actual: Tensor, expected: Tensor, what: str = "") -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert torch.equal(actual, expected), f"{what}: {actual} != {expected}"


def assert_same_params(actual: list[Tensor], expected: list[Tensor]) -> None:
    for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
        assert_bitwise(a.detach(), b.detach(), f"parameter {index}")


def assert_same_state(actual: list[dict | None], expected: list[dict | None]) -> None:
    for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
        if a is None or b is None:
            assert a is None and b is None, f"parameter {index}: state {a} vs {b}"
            continue
        assert set(a) == set(b), f"parameter {index}: state keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            if isinstance(a[key], Tensor):
                assert_bitwise(a[key], b[key], f"parameter {index}, state {key!r}")
            else:
                assert a[key] == b[key], f"parameter {index}, state {key!r}"


# --- no-op steps -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_step_without_gradients_changes_nothing(name):
    params = make_params()
    initial = clone_params(params)
    optimizer = make(name, params)

    # Fresh optimizer: no state is created, nothing moves.
    if isinstance(optimizer, SAM):
        optimizer.step(lambda: loss_fn(params).detach())  # a closure that never backprops
    else:
        optimizer.step()
    assert_same_params(params, initial)
    assert len(optimizer.state) == 0

    # After training: parameters and state (including every 'step' counter) stay as they are.
    for _ in range(3):
        train_step(optimizer, params)
    optimizer.zero_grad(set_to_none=True)
    before_params, before_state = clone_params(params), snapshot(optimizer, params)
    if isinstance(optimizer, SAM):
        optimizer.step(lambda: loss_fn(params).detach())
    else:
        optimizer.step()
    assert_same_params(params, before_params)
    assert_same_state(snapshot(optimizer, params), before_state)
    for state in snapshot(optimizer, params):
        assert state is not None and float(state["step"]) == 3.0


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_from_fresh_state_moves_only_with_weight_decay(name):
    """A first step on a zero gradient is a no-op for every optimizer iff weight_decay = 0."""
    for weight_decay in (0.0, 0.1):
        params = make_params()
        initial = clone_params(params)
        optimizer = make(name, params, weight_decay=weight_decay)
        for param in params:
            param.grad = torch.zeros_like(param)
        optimizer.step()
        moved = [not torch.equal(p, q) for p, q in zip(params, initial, strict=True)]
        if weight_decay == 0:
            assert not any(moved), f"{name} moved on a zero gradient without weight decay"
        else:
            assert all(moved), f"{name} did not apply weight_decay={weight_decay}"


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_after_training_moves_only_optimizers_with_memory(name):
    """With weight_decay=0, a zero gradient is a no-op exactly for the memoryless optimizers.

    SGD without momentum, Adagrad, RMSprop (without momentum) and Adadelta multiply the current
    gradient by a finite per-coordinate factor, so a zero gradient gives a zero update; the
    momentum buffer of SGD/NAG/SGDW/LARS and the first moment of the Adam family keep moving
    the parameters.
    """
    params = make_params()
    optimizer = make(name, params, weight_decay=0.0)
    for _ in range(3):
        train_step(optimizer, params)
    before = clone_params(params)
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    unchanged = all(torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert unchanged == (name in MEMORYLESS), (
        f"{name}: parameters {'unchanged' if unchanged else 'moved'} on a zero gradient"
    )
    for state in snapshot(optimizer, params):
        assert float(state["step"]) == 4.0  # a step with a (zero) gradient still counts


# --- p.grad is never modified ----------------------------------------------------------------

GRAD_VARIANTS = [
    pytest.param({}, id="defaults"),
    pytest.param({"maximize": True}, id="maximize"),
    pytest.param({"weight_decay": 0.1}, id="weight_decay"),
    pytest.param({"agc_clipping": 0.01}, id="agc"),
]


@pytest.mark.parametrize("variant", GRAD_VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_step_never_modifies_grad(name, variant):
    params = make_params()
    optimizer = make(name, params, **variant)
    for _ in range(3):
        optimizer.zero_grad()
        loss_fn(params).backward()
        grads = [p.grad for p in params]
        expected = [g.clone() for g in grads]
        optimizer.step()
        for param, grad, copy_ in zip(params, grads, expected, strict=True):
            assert param.grad is grad, "step() replaced p.grad"
            assert_bitwise(param.grad, copy_, "p.grad after step()")


@pytest.mark.parametrize("name", SAM_NAMES)
def test_sam_inner_step_never_modifies_grad(name):
    params = make_params()
    optimizer = make(name, params)
    for _ in range(3):
        optimizer.zero_grad()
        loss_fn(params).backward()
        optimizer.first_step()
        optimizer.zero_grad()
        loss_fn(params).backward()
        expected = [p.grad.clone() for p in params]
        optimizer.second_step()
        for param, copy_ in zip(params, expected, strict=True):
            assert_bitwise(param.grad, copy_, "p.grad after SAM.second_step()")


# --- dtypes ----------------------------------------------------------------------------------

DTYPES = [
    pytest.param(torch.float32, id="f32"),
    pytest.param(torch.float64, id="f64"),
    pytest.param(torch.bfloat16, id="bf16"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_updates_and_state_keep_the_parameter_dtype(name, dtype):
    params = make_params(dtype)
    initial = clone_params(params)
    optimizer = make(name, params)
    for _ in range(3):
        train_step(optimizer, params)
    for param, before in zip(params, initial, strict=True):
        assert param.dtype == dtype
        assert torch.isfinite(param).all()
        assert not torch.equal(param, before), f"{name} did not train a {dtype} parameter"
        state = optimizer.state[param]
        assert "step" in state
        step = state["step"]
        assert isinstance(step, Tensor) and step.ndim == 0
        assert step.dtype == torch.float32  # torch.optim's scalar dtype (default dtype float32)
        assert float(step) == 3.0
        for key, value in state.items():
            if not isinstance(value, Tensor):
                continue
            if value.ndim == 0:
                # 0-d counters ('step', NAdam's 'mu_product') stay in the scalar dtype.
                assert value.dtype == torch.float32, f"{key} is {value.dtype}"
            else:
                assert value.dtype == dtype, f"state {key!r} is {value.dtype}, param {dtype}"
                assert value.shape == param.shape, f"state {key!r} has shape {value.shape}"
                assert torch.isfinite(value).all(), f"state {key!r} is not finite"


# --- state_dict round trip -------------------------------------------------------------------


def _through_memory(state_dict: dict) -> dict:
    # state_dict() holds references to the live state tensors: copy before training on.
    return copy.deepcopy(state_dict)


def _through_bytes(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("via", [_through_memory, _through_bytes], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_state_dict_round_trip_continues_bit_identically(name, dtype, via):
    params = make_params(dtype)
    optimizer = make(name, params)
    for _ in range(3):
        train_step(optimizer, params)

    checkpoint = via(optimizer.state_dict())
    resumed_params = clone_params(params)
    resumed = make(name, resumed_params)  # a fresh optimizer, no state
    resumed.load_state_dict(checkpoint)
    assert_same_state(snapshot(resumed, resumed_params), snapshot(optimizer, params))
    for group, saved in zip(resumed.param_groups, optimizer.param_groups, strict=True):
        for key, value in saved.items():
            if key != "params":
                assert group[key] == value, f"group key {key!r}"

    for _ in range(4):
        train_step(optimizer, params)
        train_step(resumed, resumed_params)
    assert_same_params(resumed_params, params)
    assert_same_state(snapshot(resumed, resumed_params), snapshot(optimizer, params))


@pytest.mark.parametrize("via", [_through_memory, _through_bytes], ids=["deepcopy", "torch.save"])
def test_nadam_bfloat16_mu_product_is_not_rounded_on_load(via):
    params = make_params(torch.bfloat16)
    optimizer = make("nadam", params)
    for _ in range(5):
        train_step(optimizer, params)
    mu_product = optimizer.state[params[0]]["mu_product"].clone()
    # The point of the check: this value is not representable in bfloat16.
    assert mu_product.to(torch.bfloat16).float() != mu_product

    resumed_params = clone_params(params)
    resumed = make("nadam", resumed_params)
    resumed.load_state_dict(via(optimizer.state_dict()))
    loaded = resumed.state[resumed_params[0]]["mu_product"]
    assert_bitwise(loaded, mu_product, "mu_product after load")
    assert resumed.state[resumed_params[0]]["exp_avg"].dtype == torch.bfloat16


def test_a_zero_dim_parameter_keeps_its_counter_and_casts_its_buffers_on_load():
    # For a 0-d parameter every state entry is 0-d: the counters are told apart from the
    # element-wise buffers by what init_state makes for a probe parameter, not by shape.
    params = [torch.nn.Parameter(torch.tensor(0.5, dtype=torch.bfloat16))]
    optimizer = NAdam(params, lr=1e-2)
    for _ in range(5):
        params[0].grad = torch.tensor(0.25, dtype=torch.bfloat16)
        optimizer.step()
    mu_product = optimizer.state[params[0]]["mu_product"].clone()
    assert mu_product.to(torch.bfloat16).float() != mu_product
    resumed_params = [torch.nn.Parameter(params[0].detach().clone())]
    resumed = NAdam(resumed_params, lr=1e-2)
    saved = optimizer.state_dict()
    saved["state"][0]["exp_avg"] = saved["state"][0]["exp_avg"].float()  # cast back on load
    resumed.load_state_dict(saved)
    state = resumed.state[resumed_params[0]]
    assert_bitwise(state["mu_product"], mu_product, "mu_product after load")
    assert state["exp_avg"].dtype == torch.bfloat16


def test_counter_keys_are_the_zero_dim_entries_init_state_makes():
    groups = [{"betas": (0.9, 0.999), "amsgrad": True}]
    assert counter_keys(OPTIMIZERS["nadam"].create([torch.zeros(3)])._transformation, groups) == (
        "mu_product",
    )
    adam = OPTIMIZERS["adam"].create([torch.zeros(3)], amsgrad=True)
    assert counter_keys(adam._transformation, adam.param_groups) == ()
    assert counter_keys(when("layer_adaptation", scale_by_nadam()), groups) == ("mu_product",)


# --- GradScaler ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_grad_scaler_steps_and_skips_non_finite_steps(name):
    params = make_params()
    reference_params = clone_params(params)
    optimizer = make(name, params)
    reference = make(name, reference_params)
    # A power-of-two scale is exact: the scaled run must match the unscaled one bit for bit.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)

    def scaled_step(corrupt: float | None = None) -> None:
        optimizer.zero_grad()
        scaler.scale(loss_fn(params)).backward()
        if corrupt is not None:
            params[0].grad[0, 0] = corrupt
        scaler.step(optimizer)
        scaler.update()

    initial = clone_params(params)
    for _ in range(2):
        scaled_step()
        train_step(reference, reference_params)
    assert not torch.equal(params[0], initial[0])
    assert_same_params(params, reference_params)
    assert_same_state(snapshot(optimizer, params), snapshot(reference, reference_params))

    for bad in (math.inf, math.nan):
        before_params, before_state = clone_params(params), snapshot(optimizer, params)
        scale = scaler.get_scale()
        scaled_step(corrupt=bad)
        assert_same_params(params, before_params)
        assert_same_state(snapshot(optimizer, params), before_state)
        assert scaler.get_scale() == scale / 2  # the step was recognized as skipped

    # Training resumes where it left off.
    scaled_step()
    train_step(reference, reference_params)
    assert_same_params(params, reference_params)


# --- frozen and zero-size parameters ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_frozen_unused_and_zero_size_parameters(name):
    weight, bias = make_params()
    frozen = torch.randn(3, 3, generator=torch.Generator().manual_seed(7))  # requires_grad=False
    unused = torch.randn(5, generator=torch.Generator().manual_seed(8)).requires_grad_()
    empty = torch.empty(0, requires_grad=True)  # gets an (empty) gradient
    empty_unused = torch.empty(0, 2, requires_grad=True)  # never gets a gradient
    params = [weight, bias, frozen, unused, empty, empty_unused]
    initial = clone_params(params)
    optimizer = make(name, params)

    def loss(ps: list[Tensor]) -> Tensor:
        return loss_fn(ps) + (ps[4] * 2.0).sum()

    for _ in range(3):
        train_step(optimizer, params, loss)

    assert not torch.equal(weight, initial[0])
    assert not torch.equal(bias, initial[1])
    for index in (2, 3, 5):
        assert_bitwise(params[index].detach(), initial[index], f"parameter {index}")
        assert params[index] not in optimizer.state, f"state created for parameter {index}"
    assert frozen.grad is None and unused.grad is None
    assert empty.shape == (0,) and empty.grad is not None
    for param in (weight, bias, empty):
        state = optimizer.state[param]
        assert float(state["step"]) == 3.0
        for value in state.values():
            if isinstance(value, Tensor) and value.ndim > 0:
                assert value.shape == param.shape


# --- maximize --------------------------------------------------------------------------------


def _negated(params: list[Tensor]) -> Tensor:
    return -loss_fn(params)


@pytest.mark.parametrize("name", NAMES)
def test_maximize_is_minimizing_the_negation(name):
    """maximize=True on f = -loss follows minimizing loss exactly (weight decay included)."""
    up_params, down_params = make_params(torch.float64), make_params(torch.float64)
    up = make(name, up_params, maximize=True, weight_decay=0.05)
    down = make(name, down_params, weight_decay=0.05)
    initial = clone_params(up_params)
    for _ in range(5):
        train_step(up, up_params, _negated)
        train_step(down, down_params)
    assert not torch.equal(up_params[0], initial[0])
    assert_same_params(up_params, down_params)
    assert_same_state(snapshot(up, up_params), snapshot(down, down_params))


@pytest.mark.parametrize("name", SAM_NAMES)
def test_sam_maximize_is_minimizing_the_negation(name):
    up_params, down_params = make_params(torch.float64), make_params(torch.float64)
    up = make(name, up_params, maximize=True)
    down = make(name, down_params)
    for _ in range(5):
        train_step(up, up_params, _negated)
        train_step(down, down_params)
    for a, b in zip(up_params, down_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


# --- param groups ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_added_param_group_gets_defaults_and_is_validated(name):
    weight, bias = make_params()
    optimizer = make(name, [weight])
    with pytest.raises(ValueError, match=r"invalid lr=-1\.0 in param group 1"):
        optimizer.add_param_group({"params": [bias], "lr": -1.0})
    assert len(optimizer.param_groups) == 1  # the bad group was not kept

    optimizer.add_param_group({"params": [bias]})
    first, added = optimizer.param_groups
    assert set(added) == set(first)
    for key, value in optimizer.defaults.items():
        assert added[key] == value, f"added group has {key}={added[key]!r}, default {value!r}"
    assert added["lr"] == first["lr"] == LR[name.removeprefix("sam-")]
    train_step(optimizer, [weight, bias])
    assert float(optimizer.state[bias]["step"]) == 1.0


def _split_run(name: str, bias_overrides: dict[str, Any], steps: int = 5) -> tuple[Tensor, ...]:
    """Weight and bias trained on one loss by two separate optimizers; the bias one overridden."""
    weight, bias = make_params(torch.float64)
    for_weight = make(name, [weight])
    for_bias = make(name, [bias], **bias_overrides)
    for _ in range(steps):
        for_weight.zero_grad()
        for_bias.zero_grad()
        loss_fn([weight, bias]).backward()
        for_weight.step()
        for_bias.step()
    return weight, bias, for_weight, for_bias


@pytest.mark.parametrize("late", [False, True], ids=["constructor", "add_param_group"])
@pytest.mark.parametrize("name", NAMES)
def test_per_group_overrides_take_effect(name, late):
    """A group with overrides steps exactly like an optimizer built with those values."""
    override = {"lr": LR[name] / 2, "weight_decay": 0.1, **GROUP_OVERRIDE[name]}
    weight, bias = make_params(torch.float64)
    if late:
        grouped = make(name, [weight])
        grouped.add_param_group({"params": [bias], **override})
    else:
        grouped = make(name, [{"params": [weight]}, {"params": [bias], **override}])
    for key, value in override.items():
        assert grouped.param_groups[1][key] == value
    for key, value in grouped.param_groups[0].items():
        if key != "params":
            assert value == grouped.defaults[key], f"group 0 has {key}={value!r}"
    for _ in range(5):
        train_step(grouped, [weight, bias])

    ref_weight, ref_bias, for_weight, for_bias = _split_run(name, override)
    assert_same_params([weight, bias], [ref_weight, ref_bias])
    assert_same_state(snapshot(grouped, [weight]), snapshot(for_weight, [ref_weight]))
    assert_same_state(snapshot(grouped, [bias]), snapshot(for_bias, [ref_bias]))

    # Each override on its own changes the bias's trajectory, so none is silently ignored.
    _, default_bias, _, _ = _split_run(name, {})
    for key, value in override.items():
        _, overridden_bias, _, _ = _split_run(name, {key: value})
        assert not torch.equal(overridden_bias, default_bias), f"{name}: {key}={value!r} no effect"


# --- user-built chains -----------------------------------------------------------------------


def test_user_chain_rejects_unknown_hyperparameter():
    with pytest.raises(TypeError, match=r"unexpected hyperparameter 'momentum'"):
        ChainedOptimizer(
            make_params(), chain(scale_by_adam(), scale_by_learning_rate()), momentum=0.9
        )


def test_user_chain_accepts_the_keys_it_reads():
    optimizer = ChainedOptimizer(
        make_params(), chain(scale_by_rms(), trace(), scale_by_learning_rate()), momentum=0.9
    )
    assert optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["maximize"] is False


def test_chain_rejects_one_key_with_two_defaults():
    with pytest.raises(ValueError, match=r"'weight_decay' but with different defaults"):
        chain(add_decayed_weights(0.0), scale_by_adam(), add_decayed_weights(0.1))
    with pytest.raises(ValueError, match=r"'eps' but with different defaults \(1e-08 and 1e-06\)"):
        chain(scale_by_adam(eps=1e-8), scale_by_rms(eps=1e-6))
    # The same default twice is allowed (coupled and decoupled decay of one value).
    chain(add_decayed_weights(0.1), scale_by_adam(), add_decayed_weights(0.1))


def test_empty_chain_is_rejected():
    with pytest.raises(ValueError, match=r"expected at least one transformation, got none"):
        chain()


def test_user_chain_matches_the_named_optimizer():
    """AdamW written as a user chain steps exactly like gradkit.optim.AdamW."""
    a, b = make_params(), make_params()
    user = ChainedOptimizer(
        a, chain(scale_by_adam(), add_decayed_weights(1e-2), scale_by_learning_rate(1e-3))
    )
    named = AdamW(b)
    for _ in range(5):
        train_step(user, a)
        train_step(named, b)
    assert_same_params(a, b)


@pytest.mark.parametrize("name", NAMES + SAM_NAMES)
def test_load_state_dict_leaves_the_group_keys_of_a_fresh_optimizer(name):
    params = make_params()
    optimizer = make(name, params)
    train_step(optimizer, params)
    fresh = make(name, make_params())
    fresh.load_state_dict(optimizer.state_dict())
    assert [sorted(g) for g in fresh.param_groups] == [sorted(g) for g in optimizer.param_groups]
