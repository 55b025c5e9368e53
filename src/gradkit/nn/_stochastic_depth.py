r"""Stochastic depth (Huang et al., arXiv 1603.09382): drop whole residual branches per sample.

In training, each sample's branch output is kept with probability :math:`1 - p` and scaled by
:math:`1/(1-p)`,

.. math:: y_b = \frac{m_b}{1 - p}\,x_b, \qquad m_b \sim \operatorname{Bernoulli}(1 - p),

so that :math:`E[y] = x`; in evaluation it is the identity. (Huang et al. scale at test time
instead; scaling in training, as timm and NFNets do, leaves the evaluated network unchanged.)
"""

from __future__ import annotations

from torch import Tensor, nn

from gradkit._checks import check_probability


def stochastic_depth(x: Tensor, p: float, *, training: bool) -> Tensor:
    """Zero each sample of ``x`` (dimension 0) with probability ``p``; scale survivors."""
    check_probability("stochastic_depth", "p", p)
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class StochasticDepth(nn.Module):
    """Module form of :func:`stochastic_depth`, for the end of a residual branch."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        check_probability("StochasticDepth", "p", p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return stochastic_depth(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"
