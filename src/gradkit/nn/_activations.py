r"""Activations and their variance-preserving gains :math:`\gamma` (arXiv 2101.08692, Sec. 4.2).

For an activation :math:`g` and :math:`z \sim \mathcal N(0, 1)`,

.. math:: \gamma_g = \frac{1}{\sqrt{\operatorname{Var}[g(z)]}},

so that :math:`\gamma_g\,g(z)` has unit variance. For ReLU,
:math:`\operatorname{Var}[\max(z, 0)] = \tfrac12 - \tfrac1{2\pi}` and
:math:`\gamma = \sqrt{2 / (1 - 1/\pi)} \approx 1.7129`, the exact value, which gradkit uses.
NFNets' code (arXiv 2102.06171) scales ReLU by 1.7139588594436646, an empirical estimate of the
same quantity, 0.06% larger; the difference is far below what a signal propagation plot shows.
The others are integrated numerically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradkit._checks import check_choice

ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {
        "elu": F.elu,
        "gelu": F.gelu,
        "identity": lambda x: x,
        "leaky_relu": F.leaky_relu,  # negative slope 0.01, torch's default
        "relu": F.relu,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
        "softplus": F.softplus,
        "tanh": torch.tanh,
    }
)
"""The activations gradkit knows by name, as functions of a tensor."""

RELU_GAMMA = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))
r"""The analytic :math:`\gamma` of ReLU, :math:`\sqrt{2/(1 - 1/\pi)}`."""


def _moments(function: Callable[[Tensor], Tensor]) -> tuple[float, float]:
    r""":math:`E[g(z)]` and :math:`E[g(z)^2]` by Gauss-Legendre quadrature of :math:`g\varphi`.

    The integral is split at 0 (where ReLU-like activations have a kink, which would spoil a
    single Gauss-Hermite rule: each half is then smooth) and cut at :math:`|z| = 12`, beyond which
    :math:`\varphi(z) < 10^{-31}`.
    """
    nodes, weights = np.polynomial.legendre.leggauss(256)
    half = 6.0  # maps [-1, 1] onto [0, 12] and [-12, 0]
    z = np.concatenate([half * (nodes - 1.0), half * (nodes + 1.0)])
    w = np.concatenate([weights, weights]) * half * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    values = function(torch.from_numpy(z)).double().numpy()
    return float(np.dot(w, values)), float(np.dot(w, values * values))


@functools.cache
def activation_gamma(name: str) -> float:
    r"""The gain :math:`\gamma = 1/\sqrt{\operatorname{Var}[g(z)]}`, :math:`z \sim N(0, 1)`.

    Scaling an activation's output by :math:`\gamma` restores unit variance after it, the
    ingredient that lets NF-ResNets keep their signal at the predicted scale without
    normalization (Brock et al., arXiv 2101.08692, Sec. 4.2). Computed once per activation in
    float64 by quadrature (see :func:`_moments`) and cached; for ReLU it agrees with the closed
    form :data:`RELU_GAMMA` to machine precision.

    Example:
        >>> round(activation_gamma("relu"), 4)
        1.7129
    """
    check_choice("activation_gamma", "activation", name, ACTIVATIONS)
    mean, second = _moments(ACTIVATIONS[name])
    return 1.0 / math.sqrt(second - mean * mean)


class Activation(nn.Module):
    r"""A named activation, optionally multiplied by its :math:`\gamma`: :math:`\gamma\,g(x)`.

    Args:
        name: one of :data:`ACTIVATIONS`.
        scaled: multiply by :func:`activation_gamma` (NF-ResNets) or not (``gamma = 1``).
    """

    def __init__(self, name: str = "relu", *, scaled: bool = False) -> None:
        super().__init__()
        check_choice("Activation", "activation", name, ACTIVATIONS)
        self.name = name
        self.gamma = activation_gamma(name) if scaled else 1.0
        self._function = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        out = self._function(x)
        return out * self.gamma if self.gamma != 1.0 else out

    def extra_repr(self) -> str:
        return f"{self.name!r}, gamma={self.gamma:.6g}"
