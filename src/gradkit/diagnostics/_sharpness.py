r"""ε-sharpness of a minimum (Keskar et al., arXiv 1609.04836, Sec. 2.2.1, Metric 2.1).

Around the parameters :math:`x` take the box

.. math:: \mathcal C_\epsilon = \{ \delta \in \mathbb R^n :
          |\delta_i| \le \epsilon (|x_i| + 1) \},

(relative size :math:`\epsilon`, so large and small weights are probed proportionally) and report

.. math:: \phi_{x, f}(\epsilon) = 100 \cdot
          \frac{\max_{\delta \in \mathcal C_\epsilon} f(x + \delta) - f(x)}{1 + f(x)},

a percentage, in the full parameter space (the paper's :math:`A = I_n`). Large-batch training
ends in minima with larger :math:`\phi` (the paper's Table 3).

The inner maximum is found by projected sign-gradient ascent, the :math:`\ell_\infty`-type
steepest ascent that suits a box,

.. math:: \delta \leftarrow \Pi_{\mathcal C_\epsilon}\big(\delta + \alpha_t\, r \odot
          \operatorname{sign} \nabla f(x + \delta)\big), \qquad r_i = \epsilon(|x_i| + 1),

with :math:`\alpha_t` decaying linearly from ``step_size`` and several restarts drawn uniformly
in the box (a start at :math:`\delta = 0` would stall at a minimum, where the gradient is zero).
The paper uses L-BFGS-B (10 iterations); both give a lower bound on the true maximum, and the
largest loss seen at any iterate is reported. For a convex quadratic
:math:`f = \frac12 \sum_i a_i x_i^2` the maximum sits at the corner
:math:`\delta_i = \operatorname{sign}(x_i) r_i`, which this ascent reaches exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradkit.diagnostics._evaluation import (
    DEFAULT_LOSS,
    Data,
    LossFunction,
    check_positive,
    check_positive_integer,
    dataset_loss,
    loss_and_gradient,
    preserved,
    trainable,
)


@dataclass(frozen=True)
class Sharpness:
    """The ε-sharpness of a model (see the module docstring).

    Attributes:
        sharpness: :math:`\\phi` in percent.
        loss: :math:`f(x)`, the dataset loss at the parameters.
        max_loss: the largest :math:`f(x + \\delta)` found in the box.
        epsilon: the relative box size.
        evaluations: loss-and-gradient evaluations of the dataset it took.
    """

    sharpness: float
    loss: float
    max_loss: float
    epsilon: float
    evaluations: int


def sharpness(
    model: nn.Module,
    data: Data,
    *,
    epsilon: float = 1e-3,
    steps: int = 20,
    restarts: int = 3,
    step_size: float = 0.25,
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    seed: int = 0,
) -> Sharpness:
    """The ε-sharpness :math:`\\phi_{x,f}(\\epsilon)` of ``model`` on ``data``, in percent.

    Evaluated in evaluation mode; parameters, gradients and modes are left as they were.

    Args:
        epsilon: the relative box size (the paper reports ``1e-3`` and ``5e-4``).
        steps: ascent steps per restart.
        restarts: starts drawn uniformly in the box.
        step_size: the first step as a fraction of the box's half-width :math:`r_i`.
        seed: seeds the starts.

    Example:
        >>> sharpness(model, (x_train, y_train), epsilon=1e-3, batch_size=1000).sharpness
    """
    check_positive("sharpness", "epsilon", epsilon)
    check_positive_integer("sharpness", "steps", steps)
    check_positive_integer("sharpness", "restarts", restarts)
    check_positive("sharpness", "step_size", step_size)
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for _, p in trainable(model)]
    with preserved(model):
        origin = [p.detach().clone() for p in parameters]
        radius = [epsilon * (x.abs() + 1) for x in origin]
        loss, _ = dataset_loss(model, data, loss_fn, batch_size=batch_size)
        best, evaluations = loss, 0
        for _ in range(restarts):
            delta = [
                (2 * torch.rand(r.shape, generator=generator, dtype=r.dtype) - 1).to(r.device) * r
                for r in radius
            ]
            for step in range(steps + 1):
                with torch.no_grad():
                    for p, x, d in zip(parameters, origin, delta, strict=True):
                        p.copy_(x + d)
                value, gradient = loss_and_gradient(
                    model, data, parameters, loss_fn, batch_size=batch_size
                )
                evaluations += 1
                best = max(best, value)
                if step == steps:
                    break
                alpha = step_size * (1 - step / steps)
                delta = [
                    torch.clamp(d + alpha * r * g.sign(), -r, r)
                    for d, r, g in zip(delta, radius, gradient, strict=True)
                ]
    return Sharpness(100 * (best - loss) / (1 + loss), loss, best, float(epsilon), evaluations)
