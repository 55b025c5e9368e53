"""ε-sharpness (Keskar et al., arXiv 1609.04836, Metric 2.1) against closed forms on quadratics.

For :math:`f(x) = c + \\frac12 \\sum_i a_i x_i^2` (all :math:`a_i > 0`) the maximum over the box
:math:`|\\delta_i| \\le \\epsilon (|x_i| + 1)` sits at the corner that moves every coordinate away
from 0, so :math:`\\max f = c + \\frac12 \\sum_i a_i (|x_i| + \\epsilon(|x_i| + 1))^2` and
:math:`\\phi = 100 (\\max f - f(x)) / (1 + f(x))`.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from gradkit.diagnostics import sharpness


class _Quadratic(nn.Module):
    """A 'model' whose every output is :math:`c + \\frac12 \\sum a_i x_i^2` at its parameter x."""

    def __init__(self, curvature: list[float], x: list[float], offset: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("curvature", torch.tensor(curvature, dtype=torch.float64))
        self.x = nn.Parameter(torch.tensor(x, dtype=torch.float64))
        self.offset = offset

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        value = self.offset + 0.5 * (self.curvature * self.x**2).sum()
        return value.expand(len(inputs))


def _value(outputs: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


DATA = (torch.zeros(4, 1), torch.zeros(4))


def _closed_form(curvature: list[float], x: list[float], epsilon: float, offset: float) -> float:
    a, x0 = torch.tensor(curvature), torch.tensor(x, dtype=torch.float64)
    f = offset + 0.5 * float((a * x0**2).sum())
    corner = x0.abs() + epsilon * (x0.abs() + 1)
    top = offset + 0.5 * float((a * corner**2).sum())
    return 100 * (top - f) / (1 + f)


@pytest.mark.parametrize("a", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("epsilon", [1e-3, 5e-2])
def test_one_dimensional_minimum(a: float, epsilon: float) -> None:
    # f = a x^2 / 2 at x = 0: max f = a eps^2 / 2 at the boundary, f(x) = 0.
    result = sharpness(_Quadratic([a], [0.0]), DATA, epsilon=epsilon, loss_fn=_value)
    assert result.loss == 0.0
    assert result.max_loss == pytest.approx(0.5 * a * epsilon**2, rel=1e-12)
    assert result.sharpness == pytest.approx(100 * 0.5 * a * epsilon**2, rel=1e-12)


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_several_coordinates_away_from_zero(offset: float) -> None:
    curvature, x, epsilon = [1.0, 3.0, 0.2], [0.5, -2.0, 0.0], 1e-2
    result = sharpness(
        _Quadratic(curvature, x, offset), DATA, epsilon=epsilon, loss_fn=_value, seed=4
    )
    assert result.sharpness == pytest.approx(_closed_form(curvature, x, epsilon, offset), rel=1e-10)


def test_grows_with_curvature() -> None:
    values = [
        sharpness(_Quadratic([a, a / 4], [0.3, -0.1]), DATA, epsilon=1e-2, loss_fn=_value).sharpness
        for a in (0.25, 1.0, 4.0, 16.0)
    ]
    assert all(b > a for a, b in itertools.pairwise(values))
    assert values[-1] / values[0] > 10


def test_a_network_is_restored_and_sharpness_grows_with_epsilon() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    small = sharpness(model, (x, y), epsilon=1e-3, batch_size=16)
    large = sharpness(model, (x, y), epsilon=1e-1, batch_size=16)
    assert 0 < small.sharpness < large.sharpness
    assert small.max_loss > small.loss
    assert model.training
    # eval mode (dropout off): the reported f(x) is the deterministic full-data loss
    model.eval()
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model(x), y))
    assert small.loss == pytest.approx(expected, rel=1e-6)
    assert large.evaluations == 3 * 21
    for p, value in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epsilon": 0.0}, "invalid epsilon=0.0"),
        ({"steps": 0}, "invalid steps=0"),
        ({"restarts": 0}, "invalid restarts=0"),
        ({"step_size": -1.0}, "invalid step_size=-1.0"),
    ],
)
def test_bad_input(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sharpness(_Quadratic([1.0], [0.0]), DATA, loss_fn=_value, **options)
