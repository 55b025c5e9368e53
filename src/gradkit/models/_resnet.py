r"""Pre-activation ResNets with any norm, and NF-ResNets, for 1-D and 2-D inputs.

Both have a 3x3 stem convolution to ``width`` channels, ``stages`` stages of ``depth`` residual
blocks (the width doubles and the resolution halves at each stage after the first), global
average pooling, dropout and a linear head (``.head``). The blocks are
:class:`gradkit.nn.PreActBlock` and :class:`gradkit.nn.NFBlock`; ``.blocks`` lists them in
order and each knows its ``stage``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from gradkit._checks import check_choice, check_integer, check_probability
from gradkit.nn import (
    ACTIVATIONS,
    NORM_KINDS,
    Activation,
    NFBlock,
    PreActBlock,
    ResidualBlock,
    ScaledWSConv1d,
    ScaledWSConv2d,
    make_norm,
)


def _check_common(
    owner: str,
    dims: int,
    *,
    activation: str,
    dropout: float,
    stochastic_depth: float,
    **sizes: int,
) -> None:
    """The arguments ResNet and NFResNet share."""
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ValueError(f"{owner}: invalid dims={dims!r}; expected 1 or 2")
    minimum = {"classes": 2}
    for name, value in sizes.items():
        check_integer(owner, name, value, minimum.get(name, 1))
    check_choice(owner, "activation", activation, ACTIVATIONS)
    check_probability(owner, "dropout", dropout)
    check_probability(owner, "stochastic_depth", stochastic_depth)


class _ResNetBase(nn.Module):
    """Stem, blocks, final activation, pooling, dropout, head."""

    stem: nn.Module
    blocks: nn.Sequential
    final: nn.Module
    dropout: nn.Dropout
    head: nn.Linear

    def _finish(self, dims: int, channels: int, classes: int, dropout: float) -> None:
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, classes)
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        if self.dims == 1 and x.dim() == 2:  # (batch, length): one channel
            x = x.unsqueeze(1)
        h = self.final(self.blocks(self.stem(x)))
        return self.head(self.dropout(self.pool(h).flatten(1)))


def _drop_rate(p: float, number: int, blocks: int) -> float:
    r"""The stochastic-depth rate of block ``number`` (from 0) of ``blocks``: :math:`p\,l/L`.

    The linear decay rule of Huang et al. (arXiv 1603.09382, Eq. 4), :math:`l` = ``number + 1``:
    the first block is dropped with :math:`p/L`, the last with :math:`p`. (timm
    uses :math:`p\,i/(L-1)` for :math:`i = 0 \ldots L-1`: its first block is never dropped.)
    """
    return p * ((number + 1) / blocks)  # the last is p exactly: (L / L) is 1.0


def _stage_plan(width: int, depth: int, stages: int) -> list[tuple[int, int, int, int]]:
    """``(stage, index in stage, out channels, stride)`` for every block, in order."""
    return [
        (stage, index, width * 2**stage, 2 if stage > 0 and index == 0 else 1)
        for stage in range(stages)
        for index in range(depth)
    ]


class ResNet(_ResNetBase):
    r"""A pre-activation ResNet (He et al., arXiv 1603.05027) with any norm, or none.

    Blocks are :class:`gradkit.nn.PreActBlock`; the network ends with norm and activation
    before pooling, as ResNet-V2 does. Stochastic depth drops the :math:`l`-th of :math:`L`
    blocks (from 1) with probability :math:`p\,l/L`, so the last block's is :math:`p`
    (see :func:`_drop_rate`).

    Args:
        dims: 1 (signals, ``(batch, channels, length)`` or ``(batch, length)``) or 2 (images).
        in_channels, classes: input channels and number of classes.
        width: channels of the first stage (doubled at each later stage).
        depth: residual blocks per stage.
        stages: number of stages.
        norm: a kind of :func:`gradkit.nn.make_norm` (``"none"``: unnormalized).
        groups: groups of ``norm="group"``.
        activation: a name in :data:`gradkit.nn.ACTIVATIONS`.
        dropout: dropout rate before the head.
        stochastic_depth: the drop probability :math:`p` of the last block.
    """

    def __init__(
        self,
        *,
        dims: int,
        in_channels: int,
        classes: int = 10,
        width: int = 16,
        depth: int = 2,
        stages: int = 3,
        norm: str = "batch",
        groups: int = 8,
        activation: str = "relu",
        dropout: float = 0.0,
        stochastic_depth: float = 0.0,
    ) -> None:
        super().__init__()
        owner = f"resnet{dims}d" if dims in (1, 2) else "resnet"
        _check_common(
            owner,
            dims,
            in_channels=in_channels,
            classes=classes,
            width=width,
            depth=depth,
            stages=stages,
            activation=activation,
            dropout=dropout,
            stochastic_depth=stochastic_depth,
        )
        check_choice(owner, "norm", norm, NORM_KINDS)
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.stem = conv(in_channels, width, 3, padding=1, bias=False)
        # The stem sees the raw input, not an activation: unit gain keeps unit variance.
        nn.init.kaiming_normal_(self.stem.weight, mode="fan_in", nonlinearity="linear")
        plan = _stage_plan(width, depth, stages)
        blocks: list[ResidualBlock] = []
        channels = width
        for number, (stage, _, out_channels, stride) in enumerate(plan):
            block = PreActBlock(
                channels,
                out_channels,
                dims,
                stride=stride,
                norm=norm,
                groups=groups,
                activation=activation,
                stochastic_depth=_drop_rate(stochastic_depth, number, len(plan)),
            )
            block.stage = stage
            blocks.append(block)
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(
            make_norm(norm, channels, dims, groups=groups), Activation(activation)
        )
        self._finish(dims, channels, classes, dropout)


class NFResNet(_ResNetBase):
    r"""A normalizer-free ResNet (Brock et al., arXiv 2101.08692; NFNets, arXiv 2102.06171).

    Blocks are :class:`gradkit.nn.NFBlock` with scaled weight-standardized convolutions and
    the :math:`\gamma` of the activation. The expected variance is tracked analytically: block
    :math:`i` gets :math:`\beta_i = 1/\sqrt{\operatorname{Var} h_i}`, and

    .. math:: \operatorname{Var} h_{i+1} = \operatorname{Var} h_i + \alpha^2,

    reset to :math:`1 + \alpha^2` after each stage's first block, whose convolutional shortcut
    sees the normalized input. So the :math:`k`-th block of a stage (from 0) outputs variance
    :math:`1 + (k+1)\alpha^2`. The skip gains start at ``skip_gain`` (0 in NFNets, which
    makes every block the identity at initialisation; 1 gives the variance growth above).

    Args: as :class:`ResNet`, without ``norm``/``groups``, plus ``alpha`` (default 0.2) and
    ``skip_gain``.
    """

    def __init__(
        self,
        *,
        dims: int,
        in_channels: int,
        classes: int = 10,
        width: int = 16,
        depth: int = 2,
        stages: int = 3,
        alpha: float = 0.2,
        activation: str = "relu",
        skip_gain: float = 0.0,
        dropout: float = 0.0,
        stochastic_depth: float = 0.0,
    ) -> None:
        super().__init__()
        owner = f"nf_resnet{dims}d" if dims in (1, 2) else "nf_resnet"
        _check_common(
            owner,
            dims,
            in_channels=in_channels,
            classes=classes,
            width=width,
            depth=depth,
            stages=stages,
            activation=activation,
            dropout=dropout,
            stochastic_depth=stochastic_depth,
        )
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"{owner}: invalid alpha={alpha!r}; expected a number > 0")
        if not (isinstance(skip_gain, int | float) and math.isfinite(skip_gain)):
            raise ValueError(f"{owner}: invalid skip_gain={skip_gain!r}; expected a finite number")
        conv = ScaledWSConv1d if dims == 1 else ScaledWSConv2d
        self.stem = conv(in_channels, width, 3, padding=1)  # gamma 1: the input is no activation
        plan = _stage_plan(width, depth, stages)
        blocks: list[ResidualBlock] = []
        channels, expected_variance = width, 1.0
        for number, (stage, _, out_channels, stride) in enumerate(plan):
            block = NFBlock(
                channels,
                out_channels,
                dims,
                stride=stride,
                alpha=alpha,
                beta=1.0 / math.sqrt(expected_variance),
                activation=activation,
                skip_gain=skip_gain,
                stochastic_depth=_drop_rate(stochastic_depth, number, len(plan)),
            )
            block.stage = stage
            blocks.append(block)
            channels, expected_variance = out_channels, block.expected_variance
        self.blocks = nn.Sequential(*blocks)
        self.final = Activation(activation, scaled=True)
        self._finish(dims, channels, classes, dropout)
