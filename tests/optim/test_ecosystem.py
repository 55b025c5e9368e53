"""The optimizers inside the tools practitioners use them with.

``copy.deepcopy`` and ``pickle`` (of a model and its optimizer together), SAM under
``torch.amp.GradScaler`` and behind a trainer's plain ``optimizer.step()``,
``torch.compile(optimizer.step)``, timm's ``no_weight_decay()`` convention and LARS's trust
ratio for an exactly zero gradient as timm and NVIDIA's LARC compute it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from gradkit.optim import (
    LARS,
    SAM,
    param_groups,
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
