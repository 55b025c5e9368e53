"""Gradient clipping: adaptive (unit-wise, AGC) and by global norm."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation, is_off
from gradkit.optim._foreach import norms
from gradkit.optim._hyper import Hyper, non_negative, optional_non_negative


def unitwise_norm(tensor: Tensor) -> Tensor:
    """The L2 norm per output unit in PyTorch's output-first layout (dim 0), kept broadcastable.

    A weight of shape ``(out, in)`` or ``(out, in, k, k)`` has one norm per row/filter; a bias,
    gain or scalar (at most one dimension) is a single unit.
    """
    if tensor.ndim <= 1:
        return torch.linalg.vector_norm(tensor)
    return torch.linalg.vector_norm(tensor, dim=tuple(range(1, tensor.ndim)), keepdim=True)


def agc_clip_(update: Tensor, param: Tensor, clipping: Any, eps: Any) -> None:
    r"""Clip ``update`` in place, unit-wise, to ``clipping`` times the parameter's norm."""
    max_norm = torch.clamp_min(unitwise_norm(param), eps) * clipping
    update_norm = unitwise_norm(update)
    clip = update_norm > max_norm
    # Exactly Eq. 3: where a unit is clipped its norm exceeds max_norm >= 0, so it is > 0 (no
    # 1e-6 floor on the divisor as in common implementations, which under-clips tiny units).
    scale = max_norm / torch.where(clip, update_norm, 1.0)
    update.mul_(torch.where(clip, scale, 1.0).to(update.dtype))


class ClipByAgc(GradientTransformation):
    r"""Adaptive gradient clipping (Brock et al., arXiv 2102.06171, Eq. 3), per output unit.

    .. math::
        u_i \leftarrow \begin{cases}
        \lambda \dfrac{\lVert\theta_i\rVert^\star}{\lVert u_i\rVert}\, u_i &
        \dfrac{\lVert u_i\rVert}{\lVert\theta_i\rVert^\star} > \lambda \\ u_i & \text{else}
        \end{cases},\qquad \lVert\theta_i\rVert^\star = \max(\lVert\theta_i\rVert, \epsilon)

    where :math:`i` runs over the output units (rows of a linear weight, filters of a
    convolution; a bias is one unit). Put it first in a chain, on the raw gradient. The paper
    does not clip the classifier head: give the head's param group ``agc_clipping=None``
    (:func:`gradkit.optim.param_groups` does, with ``head=``).

    Reads ``agc_clipping`` (:math:`\lambda`; ``None`` or 0 turns it off) and ``agc_eps``.
    """

    name = "clip_by_agc"
    guard_free = True

    def __init__(self, clipping: float | None = 0.01, eps: float = 1e-3) -> None:
        super().__init__(
            [
                Hyper("agc_clipping", clipping, optional_non_negative),
                Hyper("agc_eps", eps, non_negative),
            ]
        )

    def apply(self, bucket: Bucket) -> None:
        if bucket.is_off("agc_clipping"):
            return
        clipping, eps = bucket.value("agc_clipping"), bucket.value("agc_eps")
        for update, param in zip(bucket.updates, bucket.params, strict=True):
            agc_clip_(update, param, clipping, eps)


def clip_by_agc(clipping: float | None = 0.01, eps: float = 1e-3) -> ClipByAgc:
    r"""Adaptive gradient clipping: :math:`\lVert u_i\rVert \le \lambda\lVert\theta_i\rVert`."""
    return ClipByAgc(clipping, eps)


@torch.no_grad()
def adaptive_clip_grad_(
    parameters: Iterable[Tensor] | Tensor, clipping: float = 0.01, eps: float = 1e-3
) -> None:
    r"""Apply adaptive gradient clipping to ``p.grad`` in place (arXiv 2102.06171, Eq. 3).

    The standalone form of :func:`clip_by_agc`, for a hand-written loop, used like
    ``torch.nn.utils.clip_grad_norm_``: call it between ``backward()`` and ``step()``, on every
    parameter but the classifier head's.
    """
    if not clipping >= 0:
        raise ValueError(f"adaptive_clip_grad_: invalid clipping={clipping!r}; expected >= 0")
    if not eps >= 0:
        raise ValueError(f"adaptive_clip_grad_: invalid eps={eps!r}; expected >= 0")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    for param in parameters:
        if param.grad is not None and clipping:
            agc_clip_(param.grad, param, clipping, eps)


class ClipByGlobalNorm(GradientTransformation):
    r"""Clip all updates together to a maximum global L2 norm, as ``clip_grad_norm_``.

    .. math::
        u \leftarrow u \cdot \min\!\left(1, \frac{c}{\lVert u\rVert_2 + 10^{-6}}\right),\qquad
        \lVert u\rVert_2 = \sqrt{\textstyle\sum_{\text{all params}} \lVert u_j\rVert^2}

    The norm runs over every parameter of the optimizer, across param groups; groups with
    ``max_grad_norm=None`` (or 0) are left out, and the others must agree on
    ``max_grad_norm``.

    Reads ``max_grad_norm`` (:math:`c`; ``None`` or 0 turns it off).
    """

    name = "clip_by_global_norm"
    guard_free = True

    def __init__(self, max_grad_norm: float | None = 1.0) -> None:
        super().__init__([Hyper("max_grad_norm", max_grad_norm, optional_non_negative)])

    def validate(self, groups: Mapping[int, dict[str, Any]], owner: str) -> None:
        limits = {
            float(g["max_grad_norm"]) for g in groups.values() if not is_off(g["max_grad_norm"])
        }
        if len(limits) > 1:
            raise ValueError(
                f"{owner}: max_grad_norm differs between param groups "
                f"({sorted(limits)}); a global norm needs one limit"
            )

    def update(self, buckets: Sequence[Bucket]) -> None:
        chosen = [b for b in buckets if not b.is_off("max_grad_norm")]
        if not chosen:
            return
        # The optimizer checked that the groups agree (validate) before the step.
        limit = chosen[0].value("max_grad_norm")
        all_norms = [norm.double() for b in chosen for norm in norms(b.updates)]
        if not all_norms:
            return
        total = torch.linalg.vector_norm(torch.stack(all_norms))
        coefficient = torch.clamp(limit / (total + 1e-6), max=1.0)
        for bucket in chosen:
            torch._foreach_mul_(bucket.updates, coefficient.to(bucket.updates[0].dtype))


def clip_by_global_norm(max_grad_norm: float | None = 1.0) -> ClipByGlobalNorm:
    r"""Clip the global norm of all updates to ``max_grad_norm``."""
    return ClipByGlobalNorm(max_grad_norm)
