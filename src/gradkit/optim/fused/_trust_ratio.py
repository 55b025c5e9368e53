"""The trust ratio as the fused step traces it: the same values, in the form inductor fuses.

:class:`~gradkit.optim._layerwise.ScaleByTrustRatio`'s rule stacks the norms into vectors and
computes every ratio in a handful of operations, which is what an eager step needs. Traced,
that form would make the compiled program gather 2 x 255 reductions into one buffer before any
ratio is known; one small expression per parameter lets inductor put each parameter's norms,
ratio and scaled update into the loops over that parameter. This module is that form, and the
fused backend runs it in place of the rule (:data:`LOWERINGS`, chosen by exact type).

LAMB holds the whole update between two passes (every update's norm is needed before any update
is scaled). A buffer that inductor allocates anew each step is returned to the system and
faulted in again at every step (10k page faults for 40 MB, which made fused LAMB move twice its
memory traffic), so the update is written into a workspace kept between steps
(``bucket.workspaces``, an input of the program; :func:`needs_workspace` says when).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from gradkit.optim._core import Chain, Conditional, GradientTransformation
from gradkit.optim._foreach import accumulation_dtype, norms
from gradkit.optim._layerwise import ScaleByTrustRatio, clamped_norms
from gradkit.optim.fused._bucket import FusedBucket


def guarded_ratios(
    weight_norms: list[Tensor],
    denominators: list[Tensor],
    numerators: list[Tensor] | None = None,
) -> list[Tensor]:
    """``numerator / denominator`` per parameter (numerator: the weight norm), or 1 where a
    norm is 0: :func:`~gradkit.optim._layerwise.stacked_ratios`, one parameter at a time."""
    if numerators is None:
        numerators = weight_norms
    ratios = []
    for weight_norm, denominator, numerator in zip(
        weight_norms, denominators, numerators, strict=True
    ):
        valid = (weight_norm > 0) & (denominator > 0)
        safe = torch.where(valid, denominator, 1.0)
        ratios.append(torch.where(valid, numerator / safe, 1.0))
    return ratios


def _tied_norms(updates: list[Tensor], weights: list[Tensor]) -> list[Tensor]:
    """The norm of each update, in a form that inductor computes in the loop writing it.

    The compiled LAMB step writes the update and reduces the weight's norm in one loop (both
    read the weight). Inductor's CPU scheduler fuses no consumer of a loop's stores into a
    loop that already holds a reduction, so a plain norm of the update became a loop of its
    own that read the whole update back (44 bytes per parameter instead of 40). Adding
    ``0 * weight`` to the squares makes the update's norm read the weight too: the two norms,
    both reductions over one shared array, fuse first, then join the loop that writes the
    update. The value is the plain norm wherever the weights are finite; where one is not, the
    norm is nan and the guard of :func:`guarded_ratios` makes the ratio 1 (a plain norm would
    make it inf or nan: the step is not finite either way).
    """
    dtype = accumulation_dtype(updates)
    return [
        torch.sqrt(torch.sum(update * update + 0.0 * weight, dtype=dtype))
        for update, weight in zip(updates, weights, strict=True)
    ]


def _lamb(bucket: FusedBucket) -> None:
    if not bucket.group["layer_adaptation"]:
        return
    weight_norms = norms(bucket.params)
    # phi clamps the weight norm; the zero guard still looks at the true norm.
    phi = None
    if not bucket.is_off("weight_norm_bounds"):
        phi = clamped_norms(weight_norms, bucket.value("weight_norm_bounds"))
    if bucket.workspaces is None:
        raise RuntimeError("fused LAMB: the step must give the bucket its workspaces first")
    # The update lives in the kept workspace, written once, read by the norm and by the scaled
    # update, which is computed out of place so that the workspace's final value is the update.
    torch._foreach_copy_(bucket.workspaces, bucket.updates)
    update_norms = _tied_norms(bucket.workspaces, bucket.params)
    ratios = guarded_ratios(weight_norms, update_norms, phi)
    bucket.updates = torch._foreach_mul(bucket.workspaces, ratios)


def _lars(bucket: FusedBucket) -> None:
    ratios = None
    if bucket.group["layer_adaptation"]:
        weight_decay, eps = bucket.value("weight_decay"), bucket.value("eps")
        weight_norms = norms(bucket.params)
        grad_norms = norms(bucket.updates)
        denominators = [
            grad_norm + weight_decay * weight_norm + eps
            for grad_norm, weight_norm in zip(grad_norms, weight_norms, strict=True)
        ]
        trust_coefficient = bucket.value("trust_coefficient")
        numerators = [trust_coefficient * norm for norm in weight_norms]
        ratios = guarded_ratios(weight_norms, denominators, numerators)
        if bucket.group["unit_ratio_on_zero_grad"]:
            ratios = [
                torch.where(grad_norm > 0, ratio, 1.0)
                for grad_norm, ratio in zip(grad_norms, ratios, strict=True)
            ]
    ScaleByTrustRatio.decay_and_scale(bucket, ratios)


def trust_ratio(transformation: GradientTransformation, buckets: Sequence[FusedBucket]) -> None:
    """:class:`~gradkit.optim._layerwise.ScaleByTrustRatio` traced by the fused step."""
    assert isinstance(transformation, ScaleByTrustRatio)
    for bucket in buckets:
        (_lamb if transformation.form == "lamb" else _lars)(bucket)


LOWERINGS: dict[type, Callable[[GradientTransformation, Sequence[FusedBucket]], None]] = {
    ScaleByTrustRatio: trust_ratio,
}
"""What the fused step traces instead of a transformation's ``update``, by exact type (a
subclass may compute something else, so it runs its own rule)."""


def needs_workspace(transformation: GradientTransformation) -> bool:
    """Whether any part of ``transformation`` is LAMB's trust ratio (see the module docstring)."""
    if isinstance(transformation, Chain):
        return any(map(needs_workspace, transformation.transformations))
    if isinstance(transformation, Conditional):
        return needs_workspace(transformation.inner)
    return type(transformation) is ScaleByTrustRatio and transformation.form == "lamb"
