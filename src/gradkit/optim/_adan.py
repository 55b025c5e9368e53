r"""Adan, adaptive Nesterov momentum (Xie et al., arXiv 2208.06677, Alg. 1), and its proximal
weight decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation, unstack
from gradkit.optim._foreach import add_scalar_, add_scaled_
from gradkit.optim._hyper import Hyper, beta_triple, non_negative


def _zeros(param: Tensor) -> Tensor:
    return torch.zeros_like(param, memory_format=torch.preserve_format)


def _scale_(tensors: list[Tensor], scales: Any) -> None:
    """``tensors[i] *= scales[i]`` for per-step scalars (skipped when every one is 1)."""
    if isinstance(scales, list) and all(isinstance(s, float) and s == 1.0 for s in scales):
        return
    torch._foreach_mul_(tensors, unstack(scales))


class ScaleByAdan(GradientTransformation):
    r"""The update of Adan (Xie et al., arXiv 2208.06677, Alg. 1), in the authors' code's betas.

    With :math:`d_t = u_t - u_{t-1}` the change of the gradient (:math:`d_1 = 0`: the step
    before the first is taken to have the same gradient):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t,\quad
        n_t = \beta_3 n_{t-1} + (1-\beta_3) (u_t + \beta_2 d_t)^2

    .. math::
        u_t \leftarrow \frac{m_t + \beta_2 v_t}{\sqrt{n_t} + \epsilon}

    started as Algorithm 1 starts them: :math:`m_1 = u_1`, :math:`n_1 = u_1^2`,
    :math:`v_1 = 0` and :math:`v_2 = d_2` (each average starts at its first sample, so none
    needs a bias correction).

    The betas are those of the authors' code (``(0.98, 0.92, 0.99)``), which are one minus
    the paper's (0.02, 0.08, 0.01): the paper writes :math:`m_k = (1-\beta_1) m_{k-1} +
    \beta_1 g_k`. Where implementations differ: the authors' code, timm's and
    pytorch_optimizer's ``Adan`` and optax's start the averages at zero and divide each by
    its bias correction :math:`1-\beta^t` instead, which gives the same first step and
    different ones after it (their :math:`v_2` is :math:`d_2 / (1+\beta_2)`); optax also
    adds ``eps_root`` under the root.

    Reads ``betas`` (three), ``eps``. State: ``exp_avg`` (:math:`m`), ``exp_avg_diff``
    (:math:`v`), ``exp_avg_sq`` (:math:`n`), ``prev_grad`` (:math:`u_{t-1}`).
    """

    name = "scale_by_adan"
    guard_free = True

    def __init__(
        self, betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8
    ) -> None:
        super().__init__([Hyper("betas", betas, beta_triple), Hyper("eps", eps, non_negative)])

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        for key in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"):
            state[key] = _zeros(param)

    def scalars(self, bucket: Bucket) -> dict[str, Any]:
        """Each average's weights at this step: all on the new sample where it starts."""
        beta1, beta2, beta3 = bucket.value("betas")
        keep_m = bucket.per_step(lambda t: beta1 * (t > 1))
        keep_v = bucket.per_step(lambda t: beta2 * (t > 2))
        keep_n = bucket.per_step(lambda t: beta3 * (t > 1))
        return {
            "difference": bucket.per_step(lambda t: 1.0 * (t > 1)),
            "keep_m": keep_m,
            "take_m": bucket.per_step(lambda t: 1 - beta1 * (t > 1)),
            "keep_v": keep_v,
            "take_v": bucket.per_step(lambda t: 1 - beta2 * (t > 2)),
            "keep_n": keep_n,
            "take_n": bucket.per_step(lambda t: 1 - beta3 * (t > 1)),
        }

    def apply(self, bucket: Bucket) -> None:
        _, beta2, _ = bucket.value("betas")
        scalars = bucket.step_scalars(self)
        grads = bucket.updates
        states = bucket.states
        previous = [state["prev_grad"] for state in states]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_diffs = [state["exp_avg_diff"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]

        differences = torch._foreach_sub(grads, previous)
        _scale_(differences, scalars["difference"])
        torch._foreach_copy_(previous, grads)
        _scale_(exp_avgs, scalars["keep_m"])
        add_scaled_(exp_avgs, grads, unstack(scalars["take_m"]))
        _scale_(exp_avg_diffs, scalars["keep_v"])
        add_scaled_(exp_avg_diffs, differences, unstack(scalars["take_v"]))
        # The differences are no longer needed: reuse them for (u + beta2 d)^2.
        torch._foreach_mul_(differences, beta2)
        torch._foreach_add_(differences, grads)
        torch._foreach_mul_(differences, differences)
        _scale_(exp_avg_sqs, scalars["keep_n"])
        add_scaled_(exp_avg_sqs, differences, unstack(scalars["take_n"]))

        denom = torch._foreach_sqrt(exp_avg_sqs)
        add_scalar_(denom, bucket.value("eps"))
        torch._foreach_copy_(grads, exp_avgs)
        add_scaled_(grads, exp_avg_diffs, beta2)
        torch._foreach_div_(grads, denom)


def scale_by_adan(
    betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8
) -> ScaleByAdan:
    r"""Adan: :math:`(m_t + \beta_2 v_t) / (\sqrt{n_t} + \epsilon)`, Nesterov momentum from
    the change of the gradient."""
    return ScaleByAdan(betas, eps)


class ScaleByProximalDecay(GradientTransformation):
    r"""Divide the step by :math:`1 + \eta\lambda`: weight decay as a proximal step.

    After :func:`add_decayed_weights` and :func:`scale_by_learning_rate` the step is
    :math:`-\eta(u + \lambda\theta)`; divided by :math:`1 + \eta\lambda` the parameter becomes

    .. math::
        \theta + \frac{-\eta(u + \lambda\theta)}{1 + \eta\lambda}
        = \frac{\theta - \eta u}{1 + \eta\lambda}

    the proximal step of :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` after the step
    :math:`-\eta u` (Adan's Algorithm 1, arXiv 2208.06677). Without it the same chain is
    decoupled decay, :math:`\theta(1-\eta\lambda) - \eta u`.

    Reads ``lr`` (:math:`\eta`), ``weight_decay`` (:math:`\lambda`).
    """

    name = "scale_by_proximal_decay"
    guard_free = True

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__(
            [Hyper("lr", lr, non_negative), Hyper("weight_decay", weight_decay, non_negative)]
        )

    def apply(self, bucket: Bucket) -> None:
        if bucket.is_off("weight_decay"):
            return
        torch._foreach_div_(bucket.updates, 1 + bucket.value("lr") * bucket.value("weight_decay"))


def scale_by_proximal_decay(lr: float = 1e-3, weight_decay: float = 0.0) -> ScaleByProximalDecay:
    r"""The last step of a proximal decay: :math:`u \leftarrow u / (1 + \eta\lambda)`."""
    return ScaleByProximalDecay(lr, weight_decay)
