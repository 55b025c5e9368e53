r"""Lion: the sign of an interpolated momentum (Chen et al., arXiv 2302.06675, Alg. 2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation
from gradkit.optim._foreach import add_scaled_
from gradkit.optim._hyper import Hyper
from gradkit.optim._hyper import betas as _betas_check


class ScaleByLion(GradientTransformation):
    r"""The update direction of Lion (Chen et al., arXiv 2302.06675, Alg. 2).

    .. math::
        c_t = \beta_1 m_{t-1} + (1-\beta_1) u_t,\qquad u_t \leftarrow \operatorname{sign}(c_t),
        \qquad m_t = \beta_2 m_{t-1} + (1-\beta_2) u_t

    Every coordinate of the update is -1, 0 or +1, so the step has the same size in every
    coordinate (``lr``), and the momentum is the only state. ``sign(0) = 0``: a coordinate
    whose gradient and momentum are both zero does not move. The interpolation :math:`c_t`
    uses the momentum of the previous step, which is updated afterwards with :math:`\beta_2`.

    Reads ``betas``. State: ``exp_avg`` (:math:`m`).
    """

    name = "scale_by_lion"
    guard_free = True

    def __init__(self, betas: tuple[float, float] = (0.9, 0.99)) -> None:
        super().__init__([Hyper("betas", betas, _betas_check)])

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def apply(self, bucket: Bucket) -> None:
        beta1, beta2 = bucket.value("betas")
        exp_avgs = [state["exp_avg"] for state in bucket.states]
        direction = torch._foreach_mul(exp_avgs, beta1)
        add_scaled_(direction, bucket.updates, 1 - beta1)
        torch._foreach_mul_(exp_avgs, beta2)
        add_scaled_(exp_avgs, bucket.updates, 1 - beta2)
        torch._foreach_sign_(direction)
        torch._foreach_copy_(bucket.updates, direction)


def scale_by_lion(betas: tuple[float, float] = (0.9, 0.99)) -> ScaleByLion:
    r"""Lion's direction :math:`\operatorname{sign}(\beta_1 m + (1-\beta_1) u)`, then
    :math:`m \leftarrow \beta_2 m + (1-\beta_2) u`."""
    return ScaleByLion(betas)
