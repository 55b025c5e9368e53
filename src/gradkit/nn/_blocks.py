r"""Residual blocks: pre-activation with any norm (arXiv 1603.05027) and normalizer-free.

Every block computes :math:`h_{i+1} = s(h_i) + c \cdot f(h_i)` with a residual branch :math:`f`
held in the attribute ``branch``, so diagnostics (signal propagation) can measure the branch
before any skip gain :math:`c`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradkit._checks import check_integer
from gradkit.nn._activations import Activation, activation_gamma
from gradkit.nn._norm import make_norm
from gradkit.nn._stochastic_depth import StochasticDepth
from gradkit.nn._weight_standardization import ScaledWSConv1d, ScaledWSConv2d

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_SCALED_WS_CONV = {1: ScaledWSConv1d, 2: ScaledWSConv2d}


class ResidualBlock(nn.Module):
    """Base of residual blocks: ``branch`` is the residual function :math:`f`.

    ``expected_variance`` is the variance of the block's output that the architecture predicts
    at initialisation, where it makes a prediction (NF-ResNets), else ``None``. ``stage`` is
    the index of the stage the block belongs to (set by the model that builds it).
    """

    branch: nn.Module
    expected_variance: float | None = None
    stage: int = 0


def _check_block(owner: str, in_channels: int, out_channels: int, dims: int, stride: int) -> None:
    check_integer(owner, "in_channels", in_channels, 1)
    check_integer(owner, "out_channels", out_channels, 1)
    check_integer(owner, "stride", stride, 1)
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ValueError(f"{owner}: invalid dims={dims!r}; expected 1 or 2 (spatial dimensions)")


class PreActBlock(ResidualBlock):
    r"""The pre-activation basic block of ResNet-V2 (He et al., arXiv 1603.05027), any norm.

    .. math:: h = g(\mathrm{N}(x)), \qquad
              y = s + f(h), \quad f = \mathrm{conv} \circ g \circ \mathrm{N} \circ \mathrm{conv},

    with :math:`s = x`, or a strided 1x1 convolution of :math:`h` where the shape changes.
    ``norm="none"`` gives the unnormalized ResNet of arXiv 2101.08692, Fig. 1, whose
    variance doubles at every block. Convolutions use He initialisation
    (:math:`\operatorname{Var} W = 2/N`) and no bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dims: int,
        *,
        stride: int = 1,
        norm: str = "batch",
        groups: int = 8,
        activation: str = "relu",
        stochastic_depth: float = 0.0,
    ) -> None:
        super().__init__()
        _check_block("PreActBlock", in_channels, out_channels, dims, stride)
        conv = _CONV[dims]
        self.pre = nn.Sequential(
            make_norm(norm, in_channels, dims, groups=groups), Activation(activation)
        )
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv(in_channels, out_channels, 1, stride=stride, bias=False)
        self.branch = nn.Sequential(
            conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            make_norm(norm, out_channels, dims, groups=groups),
            Activation(activation),
            conv(out_channels, out_channels, 3, padding=1, bias=False),
        )
        self.drop = StochasticDepth(stochastic_depth)
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        h = self.pre(x)
        skip = x if self.shortcut is None else self.shortcut(h)
        return skip + self.drop(self.branch(h))


class NFBlock(ResidualBlock):
    r"""A normalizer-free residual block (Brock et al., arXiv 2101.08692, Eq. 3; 2102.06171).

    .. math:: h = g(\beta x), \qquad y = s + \alpha\, c\, f(h), \quad
              f = \mathrm{WS}_\gamma \circ g \circ \mathrm{WS}_\gamma,

    where :math:`\mathrm{WS}_\gamma` are scaled weight-standardized convolutions carrying the
    :math:`\gamma` of the activation :math:`g`, :math:`\beta = 1/\sqrt{\operatorname{Var} x}`
    is the inverse of the expected standard deviation of the input (so :math:`f` sees unit
    variance), :math:`\alpha` (0.2) sets how fast the variance grows, and :math:`c` is a
    learnable skip gain, initialised to 0 (SkipInit, arXiv 2002.10444, as NFNets do). The
    shortcut :math:`s` is :math:`x`, or a strided 1x1 scaled-WS convolution of :math:`h` where
    the shape changes. With :math:`c = 1` at initialisation the output variance is
    ``expected_variance`` :math:`= \operatorname{Var} s + \alpha^2`, where
    :math:`\operatorname{Var} s` is 1 with a convolutional shortcut and :math:`1/\beta^2`
    otherwise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dims: int,
        *,
        stride: int = 1,
        alpha: float = 0.2,
        beta: float = 1.0,
        activation: str = "relu",
        skip_gain: float = 0.0,
        stochastic_depth: float = 0.0,
    ) -> None:
        super().__init__()
        _check_block("NFBlock", in_channels, out_channels, dims, stride)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"NFBlock: invalid {name}={value!r}; expected a number > 0")
        conv = _SCALED_WS_CONV[dims]
        gamma = activation_gamma(activation)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.activation = Activation(activation)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv(in_channels, out_channels, 1, stride=stride, gamma=gamma)
        self.branch = nn.Sequential(
            conv(in_channels, out_channels, 3, stride=stride, padding=1, gamma=gamma),
            Activation(activation),
            conv(out_channels, out_channels, 3, padding=1, gamma=gamma),
        )
        self.drop = StochasticDepth(stochastic_depth)
        self.skip_gain = nn.Parameter(torch.tensor(float(skip_gain)))
        skip_variance = 1.0 if self.shortcut is not None else 1.0 / self.beta**2
        self.expected_variance = skip_variance + self.alpha**2

    def forward(self, x: Tensor) -> Tensor:
        h = self.activation(x * self.beta)
        skip = x if self.shortcut is None else self.shortcut(h)
        return skip + self.drop(self.branch(h)) * (self.alpha * self.skip_gain)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:.6g}"
