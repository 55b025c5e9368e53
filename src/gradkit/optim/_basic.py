"""Momentum, weight decay and the learning rate: the transformations of SGD."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gradkit.optim._core import Bucket, GradientTransformation
from gradkit.optim._foreach import add_scaled_
from gradkit.optim._hyper import Hyper, boolean, closed_unit_interval, non_negative, unit_interval


class ScaleByLearningRate(GradientTransformation):
    r"""Turn a direction into a step: :math:`u \leftarrow -\eta\, u`.

    Reads ``lr`` (:math:`\eta`, a number or a one-element tensor).
    """

    name = "scale_by_learning_rate"
    guard_free = True

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__([Hyper("lr", lr, non_negative)])

    def apply(self, bucket: Bucket) -> None:
        torch._foreach_mul_(bucket.updates, -bucket.value("lr"))


def scale_by_learning_rate(lr: float = 1e-3) -> ScaleByLearningRate:
    r"""The last step of a chain: :math:`u \leftarrow -\eta\, u` with ``lr`` from the group."""
    return ScaleByLearningRate(lr)


class AddDecayedWeights(GradientTransformation):
    r"""Weight decay: :math:`u \leftarrow u + \lambda\,\theta`.

    Placed *before* an adaptive scaling it is the coupled L2 penalty (torch.optim's
    ``weight_decay``: the decay enters the moments); placed *after* it and before
    :func:`scale_by_learning_rate` it is decoupled weight decay (AdamW, arXiv 1711.05101), where
    the parameter shrinks by :math:`\eta\lambda\theta` per step whatever the gradient statistics.

    Reads ``weight_decay`` (:math:`\lambda`).
    """

    name = "add_decayed_weights"
    guard_free = True

    def __init__(self, weight_decay: float = 0.0) -> None:
        super().__init__([Hyper("weight_decay", weight_decay, non_negative)])

    def apply(self, bucket: Bucket) -> None:
        if not bucket.is_off("weight_decay"):
            add_scaled_(bucket.updates, bucket.params, bucket.value("weight_decay"))


def add_decayed_weights(weight_decay: float = 0.0) -> AddDecayedWeights:
    r"""Weight decay :math:`u \leftarrow u + \lambda\theta`, coupled or decoupled by position."""
    return AddDecayedWeights(weight_decay)


class Trace(GradientTransformation):
    r"""Heavy-ball or Nesterov momentum, in torch.optim's convention.

    .. math::
        b_1 = u_1,\qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, u_t,\qquad
        u_t \leftarrow \begin{cases} u_t + \mu\, b_t & \text{nesterov} \\
        b_t & \text{else}\end{cases}

    The learning rate stays outside the buffer (it is applied by a later
    :func:`scale_by_learning_rate`), and the first buffer is the raw update, with no dampening,
    exactly as ``torch.optim.SGD``. Placed *after* :func:`scale_by_learning_rate` it is the
    "learning rate inside the buffer" form of Sutskever et al. and of LARS (arXiv 1708.03888).
    With momentum 0 it does nothing and keeps no buffer. Nesterov momentum (Sutskever et al.,
    ICML 2013) requires momentum > 0 and dampening 0.

    Reads ``momentum`` (:math:`\mu`), ``dampening`` (:math:`\tau`), ``nesterov``.
    State: ``momentum_buffer``.
    """

    name = "trace"
    guard_free = True

    def __init__(self, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False):
        super().__init__(
            [
                Hyper("momentum", momentum, unit_interval),
                Hyper("dampening", dampening, closed_unit_interval),
                Hyper("nesterov", nesterov, boolean),
            ]
        )

    def validate(self, groups: Mapping[int, dict[str, Any]], owner: str) -> None:
        for index, group in groups.items():
            if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
                raise ValueError(
                    f"{owner}: invalid nesterov=True in param group {index} with "
                    f"momentum={group['momentum']!r} and dampening={group['dampening']!r}; "
                    f"Nesterov momentum requires momentum > 0 and dampening = 0"
                )

    def apply(self, bucket: Bucket) -> None:
        if bucket.is_off("momentum"):
            return
        momentum = bucket.value("momentum")
        fresh = [i for i, state in enumerate(bucket.states) if "momentum_buffer" not in state]
        for i in fresh:
            bucket.states[i]["momentum_buffer"] = bucket.updates[i].clone()
        if len(fresh) < len(bucket.states):
            taken = set(fresh)
            old = [i for i in range(len(bucket.states)) if i not in taken]
            buffers = [bucket.states[i]["momentum_buffer"] for i in old]
            if not bucket.group["nesterov"] and bucket.is_off("dampening"):
                # b = mu b + u as u += mu b, then b = u: two passes where scaling b, adding u
                # and copying b into u take three (the same sum, u + mu b). A fresh buffer
                # already equals its update.
                updates = [bucket.updates[i] for i in old]
                add_scaled_(updates, buffers, momentum)
                torch._foreach_copy_(buffers, updates)
                return
            torch._foreach_mul_(buffers, momentum)
            add_scaled_(buffers, [bucket.updates[i] for i in old], 1 - bucket.value("dampening"))
        buffers = [state["momentum_buffer"] for state in bucket.states]
        if bucket.group["nesterov"]:
            add_scaled_(bucket.updates, buffers, momentum)
        else:
            # Copy, never alias: later transformations rewrite the updates in place.
            torch._foreach_copy_(bucket.updates, buffers)


def trace(momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False) -> Trace:
    r"""Momentum :math:`b \leftarrow \mu b + (1-\tau)u` (Nesterov: :math:`u + \mu b`)."""
    return Trace(momentum, dampening, nesterov)
