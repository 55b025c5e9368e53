"""One factory for the normalization layers of torch.nn, for 1-D and 2-D feature maps."""

from __future__ import annotations

from torch import nn

from gradkit._checks import check_choice, check_integer
from gradkit.nn._cross_process_batchnorm import CrossProcessBatchNorm

NORM_KINDS: tuple[str, ...] = (
    "batch",
    "cross_process_batch",
    "group",
    "instance",
    "layer",
    "none",
)
"""The kinds :func:`make_norm` builds."""


def make_norm(kind: str, channels: int, dims: int, *, groups: int = 8) -> nn.Module:
    r"""A normalization layer for feature maps of shape ``(batch, channels, *spatial)``.

    Each kind normalizes :math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}` over a different
    set of axes, then applies a per-channel affine :math:`\gamma \hat x + \beta`:

    - ``"batch"``: over batch and space, per channel (``nn.BatchNorm1d``/``2d``,
      arXiv 1502.03167);
    - ``"cross_process_batch"``: the same, with the batch spanning every process of a
      data-parallel job (:class:`CrossProcessBatchNorm`);
    - ``"group"``: over space and the channels of each of ``groups`` groups, per sample
      (``nn.GroupNorm``, arXiv 1803.08494);
    - ``"layer"``: over all channels and space, per sample: ``nn.GroupNorm(1, channels)``,
      layer norm as Wu & He define it for convolutional maps (``nn.LayerNorm`` would need the
      spatial size and give every position its own affine);
    - ``"instance"``: over space, per sample and channel (``nn.InstanceNorm1d``/``2d`` with a
      learnable affine, arXiv 1607.08022);
    - ``"none"``: ``nn.Identity()``.

    Args:
        kind: one of :data:`NORM_KINDS`.
        channels: the number of channels.
        dims: the number of spatial dimensions, 1 or 2.
        groups: the number of groups of ``"group"`` (must divide ``channels``). Wu & He use 32
            on wide networks; the default 8 divides every width of gradkit's small models.
    """
    check_choice("make_norm", "kind", kind, NORM_KINDS)
    check_integer("make_norm", "channels", channels, 1)
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ValueError(f"make_norm: invalid dims={dims!r}; expected 1 or 2 (spatial dimensions)")
    if kind == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if kind == "cross_process_batch":
        return CrossProcessBatchNorm(channels)
    if kind == "group":
        check_integer("make_norm", "groups", groups, 1)
        if channels % groups:
            raise ValueError(
                f"make_norm: groups={groups} does not divide channels={channels}; "
                f"expected a divisor of {channels}"
            )
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        instance = nn.InstanceNorm1d if dims == 1 else nn.InstanceNorm2d
        return instance(channels, affine=True)
    return nn.Identity()
