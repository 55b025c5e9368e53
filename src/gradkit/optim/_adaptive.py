"""Per-coordinate scaling by gradient statistics: AdaGrad, RMSProp, Adadelta."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation, unstack
from gradkit.optim._foreach import add_scalar, add_scalar_, addcmul_, lerp_
from gradkit.optim._hyper import Hyper, boolean, non_negative, unit_interval


class ScaleByAdagrad(GradientTransformation):
    r"""AdaGrad (Duchi, Hazan & Singer, JMLR 2011), as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + u_t^2,\qquad
        u_t \leftarrow \frac{u_t}{\left(1 + (t-1)\,\delta\right)\left(\sqrt{s_t} + \epsilon\right)}

    Reads ``lr_decay`` (:math:`\delta`), ``initial_accumulator_value`` (:math:`s_0`, used when
    the state is created) and ``eps``. State: ``sum``.
    """

    name = "scale_by_adagrad"
    guard_free = True

    def __init__(
        self, lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10
    ) -> None:
        super().__init__(
            [
                Hyper("lr_decay", lr_decay, non_negative),
                Hyper("initial_accumulator_value", initial_accumulator_value, non_negative),
                Hyper("eps", eps, non_negative),
            ]
        )

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["sum"] = torch.full_like(
            param, group["initial_accumulator_value"], memory_format=torch.preserve_format
        )

    def apply(self, bucket: Bucket) -> None:
        sums = [state["sum"] for state in bucket.states]
        torch._foreach_addcmul_(sums, bucket.updates, bucket.updates, value=1)
        std = torch._foreach_sqrt(sums)
        add_scalar_(std, bucket.value("eps"))
        torch._foreach_div_(bucket.updates, std)
        if not bucket.is_off("lr_decay"):
            decay = bucket.step_scalars(self)["decay"]
            torch._foreach_mul_(bucket.updates, unstack(decay))

    def scalars(self, bucket: Bucket) -> dict[str, Any] | None:
        if bucket.is_off("lr_decay"):
            return None
        lr_decay = bucket.value("lr_decay")
        return {"decay": bucket.per_step_reciprocal(lambda t: 1 + (t - 1) * lr_decay)}


def scale_by_adagrad(
    lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> ScaleByAdagrad:
    r"""AdaGrad: :math:`u / (\sqrt{\sum_{k\le t} u_k^2} + \epsilon)`."""
    return ScaleByAdagrad(lr_decay, initial_accumulator_value, eps)


class ScaleByRms(GradientTransformation):
    r"""RMSProp (Hinton, lecture 6e, 2012), plain or centered (Graves, arXiv 1308.0850).

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) u_t^2,\quad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) u_t \;(\text{centered}),\quad
        u_t \leftarrow \frac{u_t}{\sqrt{v_t - \bar g_t^2} + \epsilon}

    (without centering, :math:`\bar g = 0`). As ``torch.optim.RMSprop``, there is no bias
    correction and :math:`\epsilon` is added outside the square root; its momentum is a
    :func:`trace` after this transformation.

    Reads ``alpha``, ``eps``, ``centered``. State: ``square_avg`` (and ``grad_avg``).
    """

    name = "scale_by_rms"
    guard_free = True

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> None:
        super().__init__(
            [
                Hyper("alpha", alpha, unit_interval),
                Hyper("eps", eps, non_negative),
                Hyper("centered", centered, boolean),
            ]
        )

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def apply(self, bucket: Bucket) -> None:
        alpha = bucket.value("alpha")
        square_avgs = [state["square_avg"] for state in bucket.states]
        torch._foreach_mul_(square_avgs, alpha)
        addcmul_(square_avgs, bucket.updates, bucket.updates, 1 - alpha)
        if bucket.group["centered"]:
            for state, param in zip(bucket.states, bucket.params, strict=True):
                if "grad_avg" not in state:
                    state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            grad_avgs = [state["grad_avg"] for state in bucket.states]
            lerp_(grad_avgs, bucket.updates, 1 - alpha)
            avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(square_avgs)
        add_scalar_(avg, bucket.value("eps"))
        torch._foreach_div_(bucket.updates, avg)


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> ScaleByRms:
    r"""RMSProp: :math:`u / (\sqrt{\mathrm{EMA}_\alpha(u^2)} + \epsilon)`, optionally centered."""
    return ScaleByRms(alpha, eps, centered)


class ScaleByAdadelta(GradientTransformation):
    r"""Adadelta (Zeiler, arXiv 1212.5701), as ``torch.optim.Adadelta``.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) u_t^2,\quad
        \Delta_t = \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, u_t,\quad
        a_t = \rho a_{t-1} + (1-\rho)\Delta_t^2,\quad u_t \leftarrow \Delta_t

    A :func:`scale_by_learning_rate` follows (torch's ``lr``, 1.0 by default).

    Reads ``rho``, ``eps``. State: ``square_avg``, ``acc_delta``.
    """

    name = "scale_by_adadelta"
    guard_free = True

    def __init__(self, rho: float = 0.9, eps: float = 1e-6) -> None:
        super().__init__([Hyper("rho", rho, unit_interval), Hyper("eps", eps, non_negative)])

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def apply(self, bucket: Bucket) -> None:
        rho, eps = bucket.value("rho"), bucket.value("eps")
        square_avgs = [state["square_avg"] for state in bucket.states]
        acc_deltas = [state["acc_delta"] for state in bucket.states]
        torch._foreach_mul_(square_avgs, rho)
        addcmul_(square_avgs, bucket.updates, bucket.updates, 1 - rho)
        std = add_scalar(square_avgs, eps)
        torch._foreach_sqrt_(std)
        delta = add_scalar(acc_deltas, eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, std)
        torch._foreach_mul_(bucket.updates, delta)
        torch._foreach_mul_(acc_deltas, rho)
        addcmul_(acc_deltas, bucket.updates, bucket.updates, 1 - rho)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> ScaleByAdadelta:
    r"""Adadelta: :math:`u \cdot \sqrt{a+\epsilon}/\sqrt{v+\epsilon}` with running averages."""
    return ScaleByAdadelta(rho, eps)
