"""Weight-standardized and scaled weight-standardized convolutions (arXiv 1903.10520,
2101.08692): the standardized weights, the forward pass, the gain and gamma."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradkit.nn import ScaledWSConv1d, ScaledWSConv2d, WSConv1d, WSConv2d, activation_gamma
from gradkit.optim import param_groups

F64 = torch.float64


def _per_unit(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = weight.detach().flatten(1)
    return flat.mean(dim=1), flat.var(dim=1, unbiased=False)


def _distort(conv: torch.nn.Module) -> None:
    """Give every output unit its own offset and a large scale, which standardization undoes."""
    weight = conv.weight
    offsets = torch.linspace(-3.0, 3.0, weight.shape[0], dtype=weight.dtype)
    with torch.no_grad():
        weight.mul_(7.0).add_(offsets.view((-1,) + (1,) * (weight.ndim - 1)))


@pytest.mark.parametrize(
    ("cls", "args", "fan_in"),
    [(ScaledWSConv1d, (6, 10, 5), 30), (ScaledWSConv2d, (4, 12, 3), 36)],
)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_scaled_ws_has_mean_zero_and_variance_one_over_fan_in(cls, args, fan_in, dtype) -> None:
    torch.manual_seed(0)
    conv = cls(*args, dtype=dtype)
    _distort(conv)
    mean, var = _per_unit(conv.standardized_weight())
    assert mean.abs().max() < 1e-6
    assert (var - 1.0 / fan_in).abs().max() < 1e-6


@pytest.mark.parametrize(("cls", "args"), [(WSConv1d, (6, 10, 5)), (WSConv2d, (4, 12, 3))])
def test_ws_has_mean_zero_and_unit_variance(cls, args) -> None:
    torch.manual_seed(0)
    conv = cls(*args, dtype=F64, eps=0.0)
    _distort(conv)
    mean, var = _per_unit(conv.standardized_weight())
    assert mean.abs().max() < 1e-12
    assert (var - 1.0).abs().max() < 1e-12


def test_gain_and_gamma_scale_each_unit() -> None:
    torch.manual_seed(0)
    gamma = activation_gamma("gelu")
    conv = ScaledWSConv2d(3, 5, 3, gamma=gamma, dtype=F64)
    with torch.no_grad():
        conv.gain.copy_(torch.arange(1.0, 6.0, dtype=F64))
    _, var = _per_unit(conv.standardized_weight())
    expected = (torch.arange(1.0, 6.0, dtype=F64) * gamma) ** 2 / 27
    torch.testing.assert_close(var, expected, rtol=1e-12, atol=0.0)


def test_forward_convolves_with_the_standardized_weight() -> None:
    torch.manual_seed(0)
    conv = ScaledWSConv1d(3, 4, 3, stride=2, padding=1, gamma=1.7, dtype=F64)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=F64))
    x = torch.randn(2, 3, 11, dtype=F64)
    w = conv.weight.detach()
    mean = w.mean(dim=(1, 2), keepdim=True)
    std = w.std(dim=(1, 2), keepdim=True, unbiased=False)
    by_hand = 1.7 * (w - mean) / (std * 9**0.5)  # 9 = fan-in
    expected = F.conv1d(x, by_hand, conv.bias.detach(), stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


def test_scaled_ws_preserves_variance_of_a_gamma_scaled_relu() -> None:
    # y = WS_gamma(relu(z)) with z ~ N(0, 1): unit variance and (nearly) zero channel means
    torch.manual_seed(0)
    conv = ScaledWSConv2d(64, 64, 3, padding=1, gamma=activation_gamma("relu"))
    h = torch.randn(64, 64, 16, 16).relu()
    with torch.no_grad():
        y = conv(h)
    assert float(y.var(dim=(0, 2, 3)).mean()) == pytest.approx(1.0, abs=0.1)
    assert float(y.mean(dim=(0, 2, 3)).pow(2).mean()) < 0.02  # relu's mean 0.4 would give 0.3


def test_gain_gets_gradients_and_no_weight_decay() -> None:
    conv = ScaledWSConv2d(2, 3, 3)
    conv(torch.randn(4, 2, 6, 6)).square().mean().backward()
    assert conv.gain.grad is not None and conv.gain.grad.abs().sum() > 0
    groups = param_groups(conv, weight_decay=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(conv.weight)}


def test_they_are_thin_subclasses_of_torch_convolutions() -> None:
    assert isinstance(ScaledWSConv2d(2, 3, 3), torch.nn.Conv2d)
    assert isinstance(WSConv1d(2, 3, 3), torch.nn.Conv1d)
    assert "gamma=1.5" in repr(ScaledWSConv1d(2, 3, 3, gamma=1.5))
