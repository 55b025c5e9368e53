"""Adam and its descendants: Adam/AMSGrad, Adamax, NAdam, RAdam.

Each rule follows torch.optim's (same bias corrections, same placement of eps, same counters),
so that swapping ``torch.optim.X`` for ``gradkit.optim.X`` gives the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradkit.optim._core import (
    Bucket,
    GradientTransformation,
    elementwise,
    scalar_dtype,
    select,
    unstack,
)
from gradkit.optim._foreach import (
    add_scalar_,
    add_scaled_,
    addcmul_,
    lerp_,
    mul_scalars_,
)
from gradkit.optim._hyper import Hyper, boolean, non_negative
from gradkit.optim._hyper import betas as _betas_check


def _moments(bucket: Bucket, beta1: Any, beta2: Any | None) -> tuple[list[Tensor], ...]:
    """Update the first moment (and the second unless ``beta2`` is None); return them."""
    exp_avgs = [state["exp_avg"] for state in bucket.states]
    lerp_(exp_avgs, bucket.updates, 1 - beta1)
    if beta2 is None:
        return (exp_avgs,)
    exp_avg_sqs = [state["exp_avg_sq"] for state in bucket.states]
    torch._foreach_mul_(exp_avg_sqs, beta2)
    addcmul_(exp_avg_sqs, bucket.updates, bucket.updates, 1 - beta2)
    return exp_avgs, exp_avg_sqs


def _zeros(param: Tensor) -> Tensor:
    return torch.zeros_like(param, memory_format=torch.preserve_format)


class _Moments(GradientTransformation):
    """Common state of the Adam family: ``exp_avg`` and ``exp_avg_sq``."""

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["exp_avg"] = _zeros(param)
        state["exp_avg_sq"] = _zeros(param)


class ScaleByAdam(_Moments):
    r"""Adam (Kingma & Ba, arXiv 1412.6980) and AMSGrad (Reddi et al., arXiv 1904.09237).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) u_t^2,
        \quad \hat v_t = \max(\hat v_{t-1}, v_t) \;(\text{AMSGrad, else } \hat v_t = v_t)

    .. math::
        u_t \leftarrow \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    This is torch.optim.Adam's placement of :math:`\epsilon` (after bias-correcting
    :math:`\sqrt{v}`), and AMSGrad keeps the maximum of the *uncorrected* :math:`v`.

    Reads ``betas``, ``eps``, ``amsgrad``. State: ``exp_avg``, ``exp_avg_sq``
    (and ``max_exp_avg_sq``).
    """

    name = "scale_by_adam"
    guard_free = True

    def __init__(
        self,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            [
                Hyper("betas", betas, _betas_check),
                Hyper("eps", eps, non_negative),
                Hyper("amsgrad", amsgrad, boolean),
            ]
        )

    def scalars(self, bucket: Bucket) -> dict[str, Any]:
        beta1, beta2 = bucket.value("betas")
        eps = bucket.value("eps")
        return {
            "scales": bucket.per_step(lambda t: (1 - beta2**t) ** 0.5 / (1 - beta1**t)),
            "eps_scales": bucket.per_step(lambda t: eps * (1 - beta2**t) ** 0.5),
        }

    def apply(self, bucket: Bucket) -> None:
        r"""Adam's direction, written into the updates (free once the moments have taken
        them), with no new arrays:

        .. math::
            \frac{m / (1-\beta_1^t)}{\sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon}
            = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\cdot
            \frac{m}{\sqrt{v} + \epsilon\sqrt{1-\beta_2^t}}

        the same value up to float rounding. A denominator in a fresh parameter-sized buffer
        made each step had the allocator hand 40 MB back to the system and fault it in again
        at every step of a 10M-parameter LAMB (9.5k page faults).
        """
        beta1, beta2 = bucket.value("betas")
        scalars = bucket.step_scalars(self)
        exp_avgs, exp_avg_sqs = _moments(bucket, beta1, beta2)
        if bucket.group["amsgrad"]:
            for state, exp_avg_sq in zip(bucket.states, exp_avg_sqs, strict=True):
                if "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = _zeros(exp_avg_sq)
            maxima = [state["max_exp_avg_sq"] for state in bucket.states]
            torch._foreach_maximum_(maxima, exp_avg_sqs)
            exp_avg_sqs = maxima
        updates = bucket.updates
        torch._foreach_copy_(updates, exp_avg_sqs)
        torch._foreach_sqrt_(updates)
        torch._foreach_add_(updates, unstack(scalars["eps_scales"]))
        torch._foreach_reciprocal_(updates)
        torch._foreach_mul_(updates, exp_avgs)
        torch._foreach_mul_(updates, unstack(scalars["scales"]))


def scale_by_adam(
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False
) -> ScaleByAdam:
    r"""Adam: :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)` (AMSGrad with ``amsgrad``)."""
    return ScaleByAdam(betas, eps, amsgrad)


class ScaleByAdamax(GradientTransformation):
    r"""Adamax, the infinity-norm variant of Adam (arXiv 1412.6980, Sec. 7.1).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t,\quad
        s_t = \max(\beta_2 s_{t-1}, |u_t| + \epsilon),\quad
        u_t \leftarrow \frac{m_t}{(1-\beta_1^t)\, s_t}

    As ``torch.optim.Adamax``, :math:`\epsilon` is added to :math:`|u|` inside the maximum.

    Reads ``betas``, ``eps``. State: ``exp_avg``, ``exp_inf``.
    """

    name = "scale_by_adamax"
    guard_free = True

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__([Hyper("betas", betas, _betas_check), Hyper("eps", eps, non_negative)])

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["exp_avg"] = _zeros(param)
        state["exp_inf"] = _zeros(param)

    def scalars(self, bucket: Bucket) -> dict[str, Any]:
        beta1, _ = bucket.value("betas")
        return {"inverse_bias_correction1": bucket.per_step_reciprocal(lambda t: 1 - beta1**t)}

    def apply(self, bucket: Bucket) -> None:
        beta1, beta2 = bucket.value("betas")
        inverse_bias_correction1 = bucket.step_scalars(self)["inverse_bias_correction1"]
        (exp_avgs,) = _moments(bucket, beta1, None)
        exp_infs = [state["exp_inf"] for state in bucket.states]
        torch._foreach_mul_(exp_infs, beta2)
        # The raw update is no longer needed: reuse its memory for |u| + eps.
        torch._foreach_abs_(bucket.updates)
        add_scalar_(bucket.updates, bucket.value("eps"))
        torch._foreach_maximum_(exp_infs, bucket.updates)
        torch._foreach_copy_(bucket.updates, exp_avgs)
        torch._foreach_div_(bucket.updates, exp_infs)
        torch._foreach_mul_(bucket.updates, unstack(inverse_bias_correction1))


def scale_by_adamax(betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> ScaleByAdamax:
    r"""Adamax: :math:`\hat m_t / \max(\beta_2 s, |u| + \epsilon)`."""
    return ScaleByAdamax(betas, eps)


class ScaleByNadam(_Moments):
    r"""NAdam (Dozat, ICLR 2016 workshop), with torch.optim.NAdam's momentum-decay schedule.

    .. math::
        \mu_t = \beta_1\left(1 - \tfrac12\, 0.96^{t\psi}\right),\quad
        \Pi_t = \prod_{k\le t}\mu_k,\quad
        m_t, v_t \text{ as in Adam},

    .. math::
        u_t \leftarrow \frac{1}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        \left(\frac{1-\mu_t}{1-\Pi_t}\,u_t + \frac{\mu_{t+1}}{1-\Pi_t\,\mu_{t+1}}\,m_t\right)

    :math:`\Pi_t` is kept per parameter as ``mu_product``, a 0-d tensor in torch's scalar dtype
    (float32 unless the default dtype is float64), exactly as torch.optim does.

    Reads ``betas``, ``eps``, ``momentum_decay`` (:math:`\psi`). State: ``exp_avg``,
    ``exp_avg_sq``, ``mu_product``.
    """

    name = "scale_by_nadam"
    guard_free = True

    def __init__(
        self,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum_decay: float = 4e-3,
    ) -> None:
        super().__init__(
            [
                Hyper("betas", betas, _betas_check),
                Hyper("eps", eps, non_negative),
                Hyper("momentum_decay", momentum_decay, non_negative),
            ]
        )

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        super().init_state(param, state, group)
        state["mu_product"] = torch.ones((), dtype=scalar_dtype())

    def scalars(self, bucket: Bucket) -> dict[str, Any]:
        beta1, beta2 = bucket.value("betas")
        psi = bucket.value("momentum_decay")
        mus = bucket.per_step(lambda t: beta1 * (1.0 - 0.5 * 0.96 ** (t * psi)))
        mus_next = bucket.per_step(lambda t: beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi)))
        products = bucket.advance_counters("mu_product", mus)
        return {
            "grad_scales": elementwise(lambda mu, p: (1.0 - mu) / (1.0 - p), mus, products),
            "avg_scales": elementwise(lambda mu, p: mu / (1.0 - p * mu), mus_next, products),
            "inverse_bias_correction2": bucket.per_step_reciprocal(lambda t: 1 - beta2**t),
        }

    def apply(self, bucket: Bucket) -> None:
        beta1, beta2 = bucket.value("betas")
        scalars = bucket.step_scalars(self)
        exp_avgs, exp_avg_sqs = _moments(bucket, beta1, beta2)
        denom = torch._foreach_mul(exp_avg_sqs, unstack(scalars["inverse_bias_correction2"]))
        torch._foreach_sqrt_(denom)
        add_scalar_(denom, bucket.value("eps"))
        torch._foreach_mul_(bucket.updates, unstack(scalars["grad_scales"]))
        add_scaled_(bucket.updates, exp_avgs, unstack(scalars["avg_scales"]))
        torch._foreach_div_(bucket.updates, denom)


def scale_by_nadam(
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, momentum_decay: float = 4e-3
) -> ScaleByNadam:
    r"""NAdam: Adam with a Nesterov look-ahead on the first moment and torch's :math:`\mu_t`."""
    return ScaleByNadam(betas, eps, momentum_decay)


class ScaleByRadam(_Moments):
    r"""RAdam, Adam with a rectified adaptive rate (Liu et al., arXiv 1908.03265, Alg. 2).

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1,\qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}

    .. math::
        u_t \leftarrow \begin{cases}
        \dfrac{m_t}{1-\beta_1^t}\, r_t\, \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}
        & \rho_t > 5 \\[2ex]
        \dfrac{m_t}{1-\beta_1^t} & \text{else (SGD with momentum)}\end{cases},\quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    The threshold is torch.optim's ``> 5`` (the paper's Algorithm 2 says ``> 4``), and
    :math:`\epsilon` is added to the uncorrected :math:`\sqrt{v_t}`, as in torch.

    Reads ``betas``, ``eps``. State: ``exp_avg``, ``exp_avg_sq``.
    """

    name = "scale_by_radam"
    guard_free = True

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__([Hyper("betas", betas, _betas_check), Hyper("eps", eps, non_negative)])

    def scalars(self, bucket: Bucket) -> dict[str, Any]:
        r"""The step's scales, with :math:`\rho_t > 5` as numbers rather than a branch: the
        update is :math:`m_t\, a / (s \sqrt{v_t} + e)` with :math:`(a, s, e) = (r_t
        \sqrt{1-\beta_2^t}/(1-\beta_1^t), 1, \epsilon)` when rectified and :math:`(1/(1-
        \beta_1^t), 0, 1)` before (the denominator is then exactly 1)."""
        beta1, beta2 = bucket.value("betas")
        eps = bucket.value("eps")
        rho_inf = 2 / (1 - beta2) - 1

        def rho(t: Any) -> Any:
            return rho_inf - 2 * t * (beta2**t) / (1 - beta2**t)

        def scale(t: Any) -> Any:
            rho_t = rho(t)
            rectified = rho_t > 5.0
            # Where the switch is off the radicand may be negative: select before the root.
            radicand = select(
                rectified,
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t),
                1.0,
            )
            bias_correction1 = 1 - beta1**t
            return select(
                rectified,
                radicand**0.5 * (1 - beta2**t) ** 0.5 / bias_correction1,
                1 / bias_correction1,
            )

        rectified = bucket.per_step(lambda t: rho(t) > 5.0)
        return {
            "scales": bucket.per_step(scale),
            "root_scales": elementwise(lambda r: select(r, 1.0, 0.0), rectified),
            "shifts": elementwise(lambda r: select(r, eps, 1.0), rectified),
        }

    def apply(self, bucket: Bucket) -> None:
        beta1, beta2 = bucket.value("betas")
        scalars = bucket.step_scalars(self)
        exp_avgs, exp_avg_sqs = _moments(bucket, beta1, beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        mul_scalars_(denom, unstack(scalars["root_scales"]))
        torch._foreach_add_(denom, unstack(scalars["shifts"]))
        torch._foreach_copy_(bucket.updates, exp_avgs)
        torch._foreach_div_(bucket.updates, denom)
        torch._foreach_mul_(bucket.updates, unstack(scalars["scales"]))


def scale_by_radam(betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> ScaleByRadam:
    r"""RAdam: Adam rectified by :math:`r_t` once :math:`\rho_t > 5`, momentum SGD before."""
    return ScaleByRadam(betas, eps)
