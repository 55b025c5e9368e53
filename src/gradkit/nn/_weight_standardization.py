r"""Weight-standardized convolutions (arXiv 1903.10520) and their scaled form (arXiv 2101.08692).

Per output unit :math:`i` (PyTorch's output-first layout), with fan-in :math:`N` (input channels
times kernel size), :math:`\mu_i` and :math:`\sigma_i^2` the mean and (biased) variance of its
:math:`N` weights:

- weight standardization: :math:`\hat W_{ij} = (W_{ij} - \mu_i) / \sqrt{\sigma_i^2 + \epsilon}`;
- scaled weight standardization (NF-ResNets, NFNets arXiv 2102.06171):

  .. math:: \hat W_{ij} = g_i\,\gamma\,\frac{W_{ij} - \mu_i}{\sqrt{\max(N\sigma_i^2, \epsilon)}},

  with a learnable gain :math:`g_i` (initialised to 1) and the fixed :math:`\gamma` of the
  activation in front of the layer. With :math:`g = \gamma = 1` each unit's weights have mean 0
  and variance :math:`1/N`, so the layer preserves the variance of its input and removes a
  shared mean (the "mean shift" of ReLU outputs).

The layers are thin subclasses of ``nn.Conv1d``/``nn.Conv2d``: only the weight they convolve
with changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _fan_in(weight: Tensor) -> int:
    return weight[0].numel()


def _standardize(weight: Tensor, eps: float, scaled: bool) -> Tensor:
    dims = tuple(range(1, weight.ndim))
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=False)
    if scaled:
        return (weight - mean) * torch.rsqrt(torch.clamp(var * _fan_in(weight), min=eps))
    return (weight - mean) * torch.rsqrt(var + eps)


class _WeightStandardized:
    """The forward pass shared by every standardized convolution (mixin for ``nn.ConvNd``)."""

    eps: float
    weight: nn.Parameter
    bias: nn.Parameter | None

    def standardized_weight(self) -> Tensor:
        r""":math:`\hat W`, the weight the layer convolves with."""
        return _standardize(self.weight, self.eps, scaled=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)  # type: ignore[attr-defined]


class _ScaledWeightStandardized(_WeightStandardized):
    gain: nn.Parameter
    gamma: float

    def _init_scaled(self, gamma: float) -> None:
        self.gamma = float(gamma)
        # One dimension, so that param_groups exempts it from decay like any other gain.
        self.gain = nn.Parameter(torch.ones(self.weight.shape[0], dtype=self.weight.dtype))
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="linear")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def standardized_weight(self) -> Tensor:
        r""":math:`g\,\gamma\,(W - \mu)/\sqrt{\max(N\sigma^2, \epsilon)}` per output unit."""
        gain = self.gain.view((-1,) + (1,) * (self.weight.ndim - 1))
        return _standardize(self.weight, self.eps, scaled=True) * (gain * self.gamma)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={self.gamma:.6g}, eps={self.eps:g}"  # type: ignore[misc]


class WSConv1d(_WeightStandardized, nn.Conv1d):
    """``nn.Conv1d`` with weight standardization (Qiao et al., arXiv 1903.10520).

    Takes ``nn.Conv1d``'s arguments plus ``eps`` (default ``1e-5``), added to the variance.
    """

    def __init__(self, *args: Any, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps


class WSConv2d(_WeightStandardized, nn.Conv2d):
    """``nn.Conv2d`` with weight standardization (Qiao et al., arXiv 1903.10520).

    Takes ``nn.Conv2d``'s arguments plus ``eps`` (default ``1e-5``), added to the variance.
    """

    def __init__(self, *args: Any, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps


class ScaledWSConv1d(_ScaledWeightStandardized, nn.Conv1d):
    r"""``nn.Conv1d`` with scaled weight standardization (arXiv 2101.08692, Eq. 4).

    Takes ``nn.Conv1d``'s arguments plus ``gamma`` (the :math:`\gamma` of the activation in
    front, see :func:`gradkit.nn.activation_gamma`; default 1) and ``eps`` (default ``1e-4``,
    a floor on :math:`N\sigma^2` as in NFNets). The gain :math:`g` is a learnable parameter
    of shape ``(out_channels,)``; the bias starts at zero.
    """

    def __init__(self, *args: Any, gamma: float = 1.0, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps
        self._init_scaled(gamma)


class ScaledWSConv2d(_ScaledWeightStandardized, nn.Conv2d):
    r"""``nn.Conv2d`` with scaled weight standardization (arXiv 2101.08692, Eq. 4).

    Takes ``nn.Conv2d``'s arguments plus ``gamma`` (the :math:`\gamma` of the activation in
    front, see :func:`gradkit.nn.activation_gamma`; default 1) and ``eps`` (default ``1e-4``,
    a floor on :math:`N\sigma^2` as in NFNets). The gain :math:`g` is a learnable parameter
    of shape ``(out_channels,)``; the bias starts at zero.
    """

    def __init__(self, *args: Any, gamma: float = 1.0, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps
        self._init_scaled(gamma)
