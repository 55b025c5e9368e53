"""Gamma constants of activations (arXiv 2101.08692, Sec. 4.2): 1/sqrt(Var g(z)), z ~ N(0, 1)."""

from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest
import torch

from gradkit.nn import ACTIVATIONS, RELU_GAMMA, Activation, activation_gamma
from gradkit.nn import _activations as activations_module

NFNETS_RELU_GAMMA = 1.7139588594436646  # NFNets' code, an empirical estimate

MC_SAMPLES = 2**26  # std. error of the ReLU estimate ~3.4e-4, so 1e-3 is ~3 sigma


@pytest.fixture(scope="module")
def monte_carlo_gammas() -> dict[str, float]:
    """Plain Monte-Carlo estimates of 1/std(g(z)) for the four activations, float64, seed 0."""
    names = ("relu", "gelu", "silu", "tanh")
    generator = torch.Generator().manual_seed(0)
    sums = dict.fromkeys(names, 0.0)
    squares = dict.fromkeys(names, 0.0)
    chunk = 2**22
    for _ in range(MC_SAMPLES // chunk):
        z = torch.randn(chunk, dtype=torch.float64, generator=generator)
        for name in names:
            values = ACTIVATIONS[name](z)
            sums[name] += float(values.sum())
            squares[name] += float((values * values).sum())
    gammas = {}
    for name in names:
        mean = sums[name] / MC_SAMPLES
        gammas[name] = 1.0 / math.sqrt(squares[name] / MC_SAMPLES - mean * mean)
    return gammas


def test_relu_gamma_is_the_closed_form() -> None:
    # Var[relu(z)] = E[z^2; z > 0] - E[z; z > 0]^2 = 1/2 - 1/(2 pi)
    assert math.isclose(RELU_GAMMA, 1.0 / math.sqrt(0.5 - 0.5 / math.pi), abs_tol=1e-15)
    assert activation_gamma("relu") == pytest.approx(RELU_GAMMA, abs=1e-12)
    assert activation_gamma("relu") == pytest.approx(1.712858550449663, abs=1e-12)


def test_relu_gamma_against_an_independent_quadrature() -> None:
    # the trapezoid rule on a grid with a node at the kink z = 0, error O(h^2) ~ 1e-10
    # (by hand: numpy >= 1.24 is supported, and np.trapz is deprecated in numpy 2)
    z, step = np.linspace(-12.0, 12.0, 480_001, retstep=True)
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    relu = np.maximum(z, 0.0)

    def trapezoid(values: np.ndarray) -> float:
        return float(step * (values.sum() - 0.5 * (values[0] + values[-1])))

    mean, second = trapezoid(relu * density), trapezoid(relu * relu * density)
    reference = 1.0 / math.sqrt(second - mean * mean)
    assert activation_gamma("relu") == pytest.approx(reference, abs=1e-8)
    assert abs(NFNETS_RELU_GAMMA - reference) > 1e-3  # not NFNets' empirical constant


def test_documented_relu_gamma_is_the_returned_one() -> None:
    documented = re.findall(r"\\approx (\d\.\d+)", activations_module.__doc__)
    assert documented == [f"{activation_gamma('relu'):.4f}"]
    failures, attempted = doctest.testmod(activations_module, report=False)
    assert attempted >= 1 and failures == 0  # the example in activation_gamma's docstring


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh"])
def test_gamma_matches_monte_carlo(name: str, monte_carlo_gammas: dict[str, float]) -> None:
    assert abs(activation_gamma(name) - monte_carlo_gammas[name]) < 1e-3


def test_gamma_of_known_closed_forms() -> None:
    assert activation_gamma("identity") == pytest.approx(1.0, abs=1e-12)
    # Var[tanh(z)] has no closed form, but the values differ enough to catch a mix-up
    values = {name: activation_gamma(name) for name in ("gelu", "silu", "tanh")}
    assert values["gelu"] == pytest.approx(1.7009, abs=1e-4)
    assert values["silu"] == pytest.approx(1.7872, abs=1e-4)
    assert values["tanh"] == pytest.approx(1.5925, abs=1e-4)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "elu", "softplus"])
def test_scaled_activation_has_unit_variance(name: str) -> None:
    z = torch.randn(2**20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = Activation(name, scaled=True)(z)
    assert float(out.var()) == pytest.approx(1.0, abs=6e-3)
    assert torch.equal(Activation(name)(z), ACTIVATIONS[name](z))


def test_unknown_activation_suggests_the_closest() -> None:
    with pytest.raises(ValueError) as error:
        activation_gamma("rleu")
    assert str(error.value) == (
        "activation_gamma: unknown activation='rleu'; expected one of 'elu', 'gelu', "
        "'identity', 'leaky_relu', 'relu', 'sigmoid', 'silu', 'softplus', 'tanh' "
        "(did you mean 'relu'?)"
    )
