"""The fused step's plan and direct call: fast when nothing changed, exact when something did.

After dynamo has run a fused step's program through its guards, later steps reuse their buckets
and call the program directly (``gradkit.optim._plan``, ``gradkit.optim.fused._direct``).
Each test here changes one thing between steps that the compiled program or the buckets depend
on, and demands the eager path's numbers: a check that missed the change would run the program
on the wrong layout, the wrong state or the wrong structure.

The runs are in float64, where the two paths agree to float64 rounding: in float32, inductor's
vector code (its width and fused multiply-adds differ between CPUs) can leave a parameter one
float32 ulp of its update's scale away from eager, more than an element-wise 1e-6 of a small
parameter allows, and the comparison would depend on the machine. A missed change shows as an
error of the size of a step (1e-3 to 1e-2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradkit.optim as gko
from gradkit.optim import OPTIMIZERS, ChainedOptimizer, GradientTransformation
from gradkit.optim._core import Bucket

_data = torch.Generator().manual_seed(2)
INPUTS = torch.randn(32, 6, generator=_data, dtype=torch.float64)
TARGETS = torch.randn(32, 4, generator=_data, dtype=torch.float64)
Edit = Callable[[int, nn.Module, torch.optim.Optimizer], None]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # Two biases of one size, so that one tensor can be the gradient of both.
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    ).double()


def backward(model: nn.Module) -> None:
    nn.functional.mse_loss(model(INPUTS), TARGETS).backward()


def run(
    build: Callable[..., torch.optim.Optimizer], edit: Edit, *, fused: bool, steps: int = 8
) -> tuple[Tensor, torch.optim.Optimizer]:
    """``steps`` steps; ``edit(step, model, optimizer)`` runs after each backward pass."""
    model = make_model()
    optimizer = build(model.parameters(), fused=fused)
    for step in range(steps):
        optimizer.zero_grad()
        backward(model)
        edit(step, model, optimizer)
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), optimizer


def assert_same_as_eager(build: Callable[..., torch.optim.Optimizer], edit: Edit) -> Any:
    eager, _ = run(build, edit, fused=False)
    fused, optimizer = run(build, edit, fused=True)
    torch.testing.assert_close(fused, eager, rtol=1e-10, atol=1e-12)
    return optimizer._fused


def adam(params: Any, *, fused: bool) -> torch.optim.Optimizer:
    return gko.Adam(params, lr=1e-2, fused=fused)


def no_edit(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    pass


def test_steady_state_steps_call_the_program_without_dynamo(monkeypatch: Any) -> None:
    """Step 1 creates the state eagerly, step 2 runs through dynamo (and compiles), every later
    step calls the recorded program itself: dynamo's entry point is not called again."""
    fused = assert_same_as_eager(adam, no_edit)
    assert fused.direct_steps == 6 and fused.compilations == 1
    model = make_model()
    optimizer = gko.Adam(model.parameters(), lr=1e-2, fused=True)
    guarded_calls = []
    compiled = optimizer._fused._step._compiled
    monkeypatch.setattr(
        optimizer._fused._step, "_compiled", lambda *a: guarded_calls.append(1) or compiled(*a)
    )
    for _ in range(5):
        optimizer.zero_grad()
        backward(model)
        optimizer.step()
    assert len(guarded_calls) == 1 and optimizer._fused.direct_steps == 3


def test_a_gradient_with_other_strides_is_not_read_in_the_old_layout() -> None:
    def transposed_grad(step: int, model: nn.Module, optimizer: Any) -> None:
        if step >= 4:
            weight = model[0].weight
            weight.grad = weight.grad.t().contiguous().t()  # same shape, column-major
            assert weight.grad.stride() != weight.stride()

    fused = assert_same_as_eager(adam, transposed_grad)
    assert fused.direct_steps >= 1  # before the change


def test_one_tensor_as_the_gradient_of_two_parameters() -> None:
    """Dynamo passes one tensor once, and compiles another program for it; the direct call
    must not feed that tensor to a program compiled for two distinct gradients."""

    def shared_grad(step: int, model: nn.Module, optimizer: Any) -> None:
        if step in (4, 5):
            grad = model[0].bias.grad + model[2].bias.grad
            model[0].bias.grad = grad
            model[2].bias.grad = grad

    fused = assert_same_as_eager(adam, shared_grad)
    assert fused.direct_steps >= 3  # before, and again after


def test_a_boolean_hyperparameter_toggled_between_steps() -> None:
    def sgd(params: Any, *, fused: bool) -> torch.optim.Optimizer:
        return gko.SGD(params, lr=0.05, momentum=0.9, fused=fused)

    def toggle(step: int, model: nn.Module, optimizer: Any) -> None:
        optimizer.param_groups[0]["nesterov"] = step % 3 == 2

    fused = assert_same_as_eager(sgd, toggle)
    assert fused.compilations == 2  # one program per value, each compiled once


@pytest.mark.parametrize("how", ["new dict", "new entry", "deleted"])
def test_state_replaced_between_steps_is_honoured(how: str) -> None:
    def replace(step: int, model: nn.Module, optimizer: Any) -> None:
        if step != 4:
            return
        param = model[2].weight
        state = optimizer.state[param]
        if how == "new dict":
            optimizer.state[param] = {**state, "exp_avg": torch.zeros_like(param)}
        elif how == "new entry":
            state["exp_avg_sq"] = state["exp_avg_sq"] * 4.0
        else:
            del optimizer.state[param]  # this parameter starts again from fresh state

    assert_same_as_eager(adam, replace)


def test_a_parameter_that_loses_and_regains_its_gradient() -> None:
    def drop(step: int, model: nn.Module, optimizer: Any) -> None:
        if step in (3, 4):
            model[0].bias.grad = None

    fused = assert_same_as_eager(adam, drop)
    assert fused.compilations == 2  # with and without that parameter


def test_load_state_dict_mid_run() -> None:
    saved: dict[str, Any] = {}

    def reload(step: int, model: nn.Module, optimizer: Any) -> None:
        if step == 3:
            saved["state"] = optimizer.state_dict()
        if step == 6:
            optimizer.load_state_dict(saved["state"])

    fused = assert_same_as_eager(adam, reload)
    assert fused.direct_steps >= 3


def test_a_param_group_added_mid_run() -> None:
    """The new group's parameters join the step at once (they had no gradient before)."""

    def build(params: Any, *, fused: bool) -> torch.optim.Optimizer:
        params = list(params)
        optimizer = gko.Adam(params[:-2], lr=1e-2, fused=fused)
        optimizer.later = params[-2:]  # type: ignore[attr-defined]
        return optimizer

    def add_group(step: int, model: nn.Module, optimizer: Any) -> None:
        if step < 4:
            for param in optimizer.later:
                param.grad = None
        if step == 4:
            optimizer.add_param_group({"params": optimizer.later, "lr": 5e-3})

    fused = assert_same_as_eager(build, add_group)
    assert fused.direct_steps >= 3


def test_a_sparse_gradient_is_still_refused_with_its_message() -> None:
    params = [nn.Parameter(torch.randn(8))]
    optimizer = gko.SGD(params, lr=0.1, fused=True)
    for _ in range(3):
        params[0].grad = torch.randn(8)
        optimizer.step()
    assert optimizer._fused.direct_steps == 1
    params[0].grad = torch.randn(8).to_sparse()
    with pytest.raises(TypeError, match=r"^SGD does not support sparse gradients \(parameter 0"):
        optimizer.step()


class ScaleByFactor(GradientTransformation):
    """A user's transformation that reads a Python attribute, not a hyperparameter."""

    name = "scale_by_factor"

    def __init__(self) -> None:
        super().__init__()
        self.factor = 1.0

    def apply(self, bucket: Bucket) -> None:
        torch._foreach_mul_(bucket.updates, self.factor)


def test_a_users_transformation_always_runs_under_dynamos_guards() -> None:
    """gradkit cannot know what a user's transformation reads, so its chain is never called
    directly: dynamo's guards see the attribute change and the step follows it."""

    def build(params: Any, *, fused: bool) -> torch.optim.Optimizer:
        chain = gko.chain(ScaleByFactor(), gko.scale_by_learning_rate(0.05))
        return ChainedOptimizer(params, chain, fused=fused)

    def change_factor(step: int, model: nn.Module, optimizer: Any) -> None:
        optimizer.transformation.transformations[0].factor = 1.0 + 0.5 * (step >= 4)

    fused = assert_same_as_eager(build, change_factor)
    assert fused.direct_steps == 0


class HalveUpdates(GradientTransformation):
    """A user's transformation that reads nothing but the bucket, and says so."""

    name = "halve_updates"
    guard_free = True

    def apply(self, bucket: Bucket) -> None:
        torch._foreach_mul_(bucket.updates, 0.5)


class HalveUpdatesAndMore(HalveUpdates):
    """A subclass, which might read more than its base: it has not declared itself."""


@pytest.mark.parametrize("kind", [HalveUpdates, HalveUpdatesAndMore])
def test_a_users_transformation_is_called_directly_only_if_its_class_declares_it(
    kind: type,
) -> None:
    def build(params: Any, *, fused: bool) -> torch.optim.Optimizer:
        return ChainedOptimizer(
            params, gko.chain(kind(), gko.scale_by_learning_rate(0.05)), fused=fused
        )

    fused = assert_same_as_eager(build, no_edit)
    assert fused.direct_steps == (6 if kind is HalveUpdates else 0)


def test_whether_a_chain_skips_dynamos_guards_is_declared_not_read_from_its_module() -> None:
    from gradkit.optim.fused._direct import trusted

    class InGradkitsNamespace(HalveUpdates):
        __module__ = "gradkit.optim.users_module"  # the old rule trusted any such module

    assert HalveUpdates.guard_free and not InGradkitsNamespace.guard_free
    assert trusted(gko.chain(HalveUpdates(), gko.scale_by_learning_rate()))
    assert not trusted(gko.chain(InGradkitsNamespace(), gko.scale_by_learning_rate()))
    assert not trusted(gko.chain(ScaleByFactor(), gko.scale_by_learning_rate()))
    params = [nn.Parameter(torch.zeros(2))]
    for name, spec in OPTIMIZERS.items():
        for options in ({}, {"agc_clipping": 0.01}):
            optimizer = spec.create(params, **options)
            assert trusted(optimizer.transformation), (name, options)


@pytest.mark.parametrize("name", ["lamb", "radam", "nadam"])
def test_named_optimizers_reach_the_direct_call(name: str) -> None:
    """The per-step scalars (bias corrections, RAdam's switch, NAdam's products) and LAMB's
    workspaces are inputs the direct call gathers; a missing one would keep it guarded."""

    def build(params: Any, *, fused: bool) -> torch.optim.Optimizer:
        return OPTIMIZERS[name].create(params, fused=fused, lr=1e-2)

    fused = assert_same_as_eager(build, no_edit)
    assert fused.direct_steps == 6
