"""Signal propagation (arXiv 2101.08692, Fig. 1) reproduces the paper's qualitative picture.

Set-up shared by the three pictures: 1-D models, 3 stages of 4 blocks, width 32, at
initialisation with seed 0, fed 256 x (32 channels x 64 positions) of N(0, 1). Tolerances:
each channel statistic averages 256 * 64 = 16,384 values, so sampling noise is ~1%; the larger
error is the finite width (a random network of 32 channels deviates from the infinite-width
prediction by a few percent; seeds 0-2 were checked and stay within half of each tolerance).
32 input channels, not MNIST-1D's one: with one channel the stem's 32 outputs are linear
combinations of the same 3 input values, and the channel correlations that follow make the
zero-mean scaled-WS weights cancel part of the signal (measured 15-20% below the NF
prediction in the last stage).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradkit.diagnostics import COLUMNS, SignalPropagation, plot, signal_propagation, write_csv
from gradkit.models import create_model

DEPTH, STAGES, ALPHA = 4, 3, 0.2
SHAPE = (32, 64)
RELU_RESIDUAL = 1.0 - 1.0 / math.pi  # channel variance of a He-initialised conv of relu(BN(x))


def _measure(name: str, **options) -> SignalPropagation:
    torch.manual_seed(0)
    model = create_model(name, width=32, depth=DEPTH, stages=STAGES, in_channels=32, **options)
    return signal_propagation(model, SHAPE, batch_size=256, seed=0)


def _stages(values: list[float]) -> list[np.ndarray]:
    return [np.asarray(values[s * DEPTH : (s + 1) * DEPTH]) for s in range(STAGES)]


def test_unnormalized_resnet_variance_explodes_with_depth() -> None:
    result = _measure("resnet1d", norm="none")
    variance = np.asarray(result.column("variance"))
    assert np.all(np.diff(variance) > 0), variance  # grows at every block, stages included
    assert variance[-1] > 100 * variance[0]  # ~x1.7 per block: exponential (measured x224)
    squared_mean = np.asarray(result.column("squared_mean"))
    assert squared_mean[-1] > 100 * squared_mean[0]  # and so does the mean shift
    residual = np.asarray(result.column("residual_variance"))
    assert residual[-1] > 100 * residual[0]


def test_batch_norm_keeps_the_residual_variance_constant_and_resets_each_stage() -> None:
    result = _measure("resnet1d", norm="batch")
    # BN makes every branch see unit variance: its output variance is 1 - 1/pi at every block
    residual = np.asarray(result.column("residual_variance"))
    assert np.all(np.abs(residual - RELU_RESIDUAL) < 0.07), residual
    stages = _stages(result.column("variance"))
    for stage in stages:  # so the variance grows linearly within a stage, by 1 - 1/pi a block
        assert np.all(np.abs(np.diff(stage) - RELU_RESIDUAL) < 0.2), stage
        assert stage.max() < 1 + DEPTH  # linear, not exponential
    for previous, stage in itertools.pairwise(stages):
        # the transition's shortcut sees relu(BN(x)): variance resets to 2 (1 - 1/pi)
        assert abs(stage[0] - 2 * RELU_RESIDUAL) < 0.15
        assert stage[0] < previous[-1] - 1.0
    assert max(result.column("squared_mean")) < 3.0


def test_nf_resnet_follows_the_predicted_variance_and_resets_between_stages() -> None:
    result = _measure("nf_resnet1d", skip_gain=1.0)
    expected = np.asarray(result.column("expected_variance"))
    predicted = np.tile(1 + ALPHA**2 * np.arange(1, DEPTH + 1), STAGES)  # 1 + k alpha^2
    np.testing.assert_allclose(expected, predicted, rtol=1e-12)
    variance = np.asarray(result.column("variance"))
    np.testing.assert_allclose(variance, predicted, rtol=0.06)
    stages = _stages(list(variance))
    for stage in stages:
        slope = np.polyfit(np.arange(DEPTH), stage, 1)[0]
        assert 0.75 * ALPHA**2 < slope < 1.25 * ALPHA**2, stage
    for previous, stage in itertools.pairwise(stages):
        assert stage[0] < previous[-1] - 0.05  # the reset: drops by ~(DEPTH - 1) alpha^2
    residual = np.asarray(result.column("residual_variance"))
    assert np.all(np.abs(residual - 1) < 0.1), residual  # beta and gamma give f unit input
    assert max(result.column("squared_mean")) < 0.01  # scaled WS removes the mean shift


def test_residual_variance_is_measured_before_the_skip_gain() -> None:
    result = _measure("nf_resnet1d")  # skip gains 0 (NFNets): every block starts as identity
    for stage in _stages(result.column("variance")):
        np.testing.assert_allclose(stage, stage[0], rtol=1e-12)  # no growth inside a stage
    assert min(result.column("residual_variance")) > 0.5  # yet the branches carry signal


def test_model_state_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    model = create_model("resnet1d", width=8, depth=1, stochastic_depth=0.5, dropout=0.5)
    model.train()
    model.head.eval()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    first = signal_propagation(model, (40,), batch_size=64, seed=3)
    second = signal_propagation(model, (40,), batch_size=64, seed=3)
    assert first == second  # no dropout or stochastic depth, same input
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert model.training and not model.head.training
    assert all(not block._forward_hooks for block in model.blocks)


def test_given_inputs_and_csv_and_plot(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("nf_resnet2d", width=8, depth=2, stages=2, skip_gain=1.0)
    result = signal_propagation(model, inputs=torch.randn(16, 3, 8, 8), title="nf")
    assert [b.name for b in result.blocks] == [f"blocks.{i}" for i in range(4)]
    assert [b.stage for b in result.blocks] == [0, 0, 1, 1]
    write_csv(result, tmp_path / "spp.csv")
    lines = (tmp_path / "spp.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 5
    row = lines[1].split(",")
    assert row[:3] == ["0", "blocks.0", "0"]
    assert float(row[4]) == pytest.approx(result.blocks[0].variance, rel=1e-15)
    plot(result, tmp_path / "spp.png")
    assert (tmp_path / "spp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spp.csv", "spp.png"]  # no temp left


BAD = [
    ({}, "signal_propagation: give exactly one of input_shape and inputs"),
    (
        {"input_shape": (40,), "batch_size": 1},
        "signal_propagation: invalid batch_size=1; expected an integer >= 2",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_bad_input(kwargs, message) -> None:
    with pytest.raises(ValueError) as error:
        signal_propagation(create_model("resnet1d", width=8, depth=1), **kwargs)
    assert str(error.value) == message


def test_model_without_residual_blocks() -> None:
    with pytest.raises(ValueError) as error:
        signal_propagation(nn.Sequential(nn.Linear(40, 2)), (40,))
    assert str(error.value) == (
        "signal_propagation: Sequential has no residual blocks (gradkit.nn.ResidualBlock) "
        "to measure"
    )
