"""The default path's step plan: last step's buckets reused only while nothing changed.

The eager step (``fused=False``) keeps its buckets between steps (``gradkit.optim._plan``).
Each test changes one thing between steps that the buckets depend on and demands the numbers
of the same run with the plan switched off (every step builds its buckets, as before the plan
existed), bit for bit: a check that missed the change would step stale state, skip a
parameter or step one that has no gradient. Both eager routes are covered: torch's kernels
(the default) and the chain (``torch_kernels=False``).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradkit.optim as gko
from gradkit.optim import _plan

_data = torch.Generator().manual_seed(3)
INPUTS = torch.randn(32, 6, generator=_data, dtype=torch.float64)
TARGETS = torch.randn(32, 4, generator=_data, dtype=torch.float64)
Edit = Callable[[int, nn.Module, Any], None]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def run(build: Callable[..., Any], edit: Edit, torch_kernels: bool, steps: int = 8) -> Tensor:
    model = make_model()
    optimizer = build(model.parameters())
    optimizer.torch_kernels = torch_kernels
    for step in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(INPUTS), TARGETS).backward()
        edit(step, model, optimizer)
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def assert_same_as_without_plan(
    build: Callable[..., Any], edit: Edit, monkeypatch: pytest.MonkeyPatch
) -> None:
    for torch_kernels in (True, False):
        planned = run(build, edit, torch_kernels)
        with monkeypatch.context() as patch:
            patch.setattr(_plan.StepPlan, "reuse", lambda self, groups, state: False)
            unplanned = run(build, edit, torch_kernels)
        assert torch.equal(planned, unplanned), f"torch_kernels={torch_kernels}"


BUILDS = {
    "Adam": lambda params: gko.Adam(params, lr=1e-2),
    "SGD": lambda params: gko.SGD(params, lr=0.05, momentum=0.9),
    "LAMB": lambda params: gko.LAMB(params, lr=1e-2),
    "Lion": lambda params: gko.Lion(params, lr=1e-3),  # no torch kernel: the chain
}


def test_steady_steps_reuse_the_buckets() -> None:
    model = make_model()
    optimizer = gko.SGD(model.parameters(), lr=0.05, momentum=0.9)
    plans = []
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(INPUTS), TARGETS).backward()
        optimizer.step()
        plans.append(optimizer._plan)
    # Step 1 makes the state, step 2 its momentum buffers: from step 2 on one plan serves.
    assert plans[0] is None
    assert plans[1] is not None and all(plan is plans[1] for plan in plans[2:])


@pytest.mark.parametrize("name", sorted(BUILDS))
@pytest.mark.parametrize("how", ["new dict", "new entry", "deleted", "last deleted"])
def test_state_replaced_between_steps_is_honoured(
    name: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(step: int, model: nn.Module, optimizer: Any) -> None:
        if step != 4:
            return
        # The last parameter's state is the last entry of optimizer.state.
        param = model[2].bias if how == "last deleted" else model[2].weight
        state = optimizer.state[param]
        key = next(k for k in state if k != "step")
        if how == "new dict":
            optimizer.state[param] = {**state, key: torch.zeros_like(param)}
        elif how == "new entry":
            state[key] = state[key] * 4.0
        else:
            del optimizer.state[param]  # this parameter starts again from fresh state

    assert_same_as_without_plan(BUILDS[name], replace, monkeypatch)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_a_parameter_that_loses_and_regains_its_gradient(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def drop(step: int, model: nn.Module, optimizer: Any) -> None:
        if step in (3, 4):
            model[0].bias.grad = None

    assert_same_as_without_plan(BUILDS[name], drop, monkeypatch)


def test_a_parameter_that_gains_a_gradient_it_never_had(monkeypatch: pytest.MonkeyPatch) -> None:
    def late(step: int, model: nn.Module, optimizer: Any) -> None:
        if step < 5:
            model[2].bias.grad = None

    assert_same_as_without_plan(BUILDS["Adam"], late, monkeypatch)


def test_load_state_dict_and_a_group_edited_mid_run(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: dict[str, Any] = {}

    def reload(step: int, model: nn.Module, optimizer: Any) -> None:
        if step == 2:
            saved["state"] = optimizer.state_dict()
        if step == 5:
            optimizer.load_state_dict(saved["state"])
        if step == 6:
            optimizer.param_groups[0]["params"] = optimizer.param_groups[0]["params"][1:]

    assert_same_as_without_plan(BUILDS["SGD"], reload, monkeypatch)


def test_a_param_group_added_mid_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(params: Any) -> Any:
        params = list(params)
        optimizer = gko.Adam(params[:-2], lr=1e-2)
        optimizer.later = params[-2:]
        return optimizer

    def add_group(step: int, model: nn.Module, optimizer: Any) -> None:
        if step < 4:
            for param in optimizer.later:
                param.grad = None
        if step == 4:
            optimizer.add_param_group({"params": optimizer.later, "lr": 5e-3})

    assert_same_as_without_plan(build, add_group, monkeypatch)


def test_a_parameter_whose_dtype_changed_is_sorted_again() -> None:
    """``param.data = ...`` (what ``module.to()`` does) keeps the parameter object: the plan
    must see that its bucket (one dtype, one device) no longer holds it."""
    params = [nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(3))]
    optimizer = gko.SGD(params, lr=0.1)
    for _ in range(2):
        for param in params:
            param.grad = torch.ones_like(param)
        optimizer.step()
    plan = optimizer._plan
    assert plan is not None
    params[1].data = params[1].data.double()
    for param in params:
        param.grad = torch.ones_like(param)
    before = params[1].detach().clone()
    optimizer.step()
    assert optimizer._plan is not plan
    assert sorted(str(b.params[0].dtype) for b in optimizer._plan.buckets) == [
        "torch.float32",
        "torch.float64",
    ]
    torch.testing.assert_close(params[1].detach(), before - 0.1, rtol=0, atol=1e-15)


@pytest.mark.parametrize("torch_kernels", [True, False])
def test_a_step_keeps_no_gradient_alive(torch_kernels: bool) -> None:
    """Kept buckets drop their gradients and updates after the step: a gradient freed by
    ``zero_grad(set_to_none=True)`` is freed, not held until the next step."""
    param = nn.Parameter(torch.randn(64))
    optimizer = gko.Adam([param], lr=1e-2)
    optimizer.torch_kernels = torch_kernels
    for _ in range(3):
        param.grad = torch.randn(64)
        optimizer.step()
    assert optimizer._plan is not None
    grad = weakref.ref(param.grad)
    optimizer.zero_grad(set_to_none=True)
    gc.collect()
    assert grad() is None
    assert all(not bucket.updates for bucket in optimizer._plan.buckets)


def test_a_copy_starts_without_a_plan() -> None:
    import copy

    param = nn.Parameter(torch.randn(8))
    optimizer = gko.SGD([param], lr=0.1, momentum=0.9)
    for _ in range(3):
        param.grad = torch.randn(8)
        optimizer.step()
    assert optimizer._plan is not None
    clone = copy.deepcopy(optimizer)
    assert clone._plan is None
    # The copy's parameters are its own: stepping it leaves the original alone.
    original = param.detach().clone()
    for clone_param in clone.param_groups[0]["params"]:
        clone_param.grad = torch.ones(8)
    clone.step()
    assert torch.equal(param.detach(), original)
