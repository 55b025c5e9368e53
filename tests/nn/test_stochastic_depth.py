"""Stochastic depth (arXiv 1603.09382): per-sample drop, scaled by the keep probability in
training, identity in evaluation."""

from __future__ import annotations

import pytest
import torch

from gradkit.nn import StochasticDepth, stochastic_depth


def test_training_drops_whole_samples_and_scales_the_rest() -> None:
    torch.manual_seed(0)
    layer = StochasticDepth(0.25)
    x = torch.rand(4000, 3, 5) + 0.5  # strictly positive, so a zero means "dropped"
    y = layer(x)
    dropped = (y == 0).flatten(1)
    assert torch.equal(dropped.all(dim=1), dropped.any(dim=1))  # all or nothing per sample
    kept = ~dropped.all(dim=1)
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    assert float(kept.double().mean()) == pytest.approx(0.75, abs=0.025)  # 4 sigma at n=4000


def test_expectation_is_preserved() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000, 1)
    assert float(stochastic_depth(x, 0.4, training=True).mean()) == pytest.approx(1.0, abs=0.01)


def test_evaluation_and_zero_probability_are_the_identity() -> None:
    x = torch.randn(8, 4)
    layer = StochasticDepth(0.9).eval()
    assert layer(x) is x
    assert StochasticDepth(0.0)(x) is x


@pytest.mark.parametrize("p", [1.0, -0.1, float("nan"), True])
def test_bad_probability(p) -> None:
    with pytest.raises(ValueError) as error:
        StochasticDepth(p)
    assert str(error.value) == f"StochasticDepth: invalid p={p!r}; expected a number in [0, 1)"
