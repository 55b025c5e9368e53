r"""Signal propagation plots (Brock, De & Smith, arXiv 2101.08692, Sec. 3 and Fig. 1).

For a network at initialisation fed :math:`x \sim \mathcal N(0, 1)`, and a feature map
:math:`h` of shape ``(batch, channels, *spatial)``, let :math:`\mu_c` and :math:`\sigma_c^2` be
the mean and (biased) variance of channel :math:`c` over batch and space. At the output of each
residual block, and of its residual branch, the plot shows

- the average squared channel mean :math:`\frac1C \sum_c \mu_c^2` (mean shift),
- the average channel variance :math:`\frac1C \sum_c \sigma_c^2`,
- the residual variance: the average channel variance of the branch :math:`f(h)`, measured
  before any skip gain or :math:`\alpha`.

Batch norm layers run on batch statistics (training mode) and every other layer in evaluation
mode (no dropout, no stochastic depth); the model's modes and buffers are restored afterwards.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradkit._io import atomic_output
from gradkit.nn import ResidualBlock

COLUMNS = (
    "block",
    "name",
    "stage",
    "squared_mean",
    "variance",
    "residual_variance",
    "expected_variance",
)
"""The CSV columns, in order."""


@dataclass(frozen=True)
class BlockSignal:
    """The statistics at one residual block's output (see the module docstring)."""

    block: int
    name: str
    stage: int
    squared_mean: float
    variance: float
    residual_variance: float
    expected_variance: float | None


@dataclass(frozen=True)
class SignalPropagation:
    """Per-block statistics of one forward pass, in the order the blocks ran."""

    blocks: tuple[BlockSignal, ...]
    title: str = ""

    def column(self, name: str) -> list[float | None]:
        """One statistic over the blocks, e.g. ``column("variance")``."""
        if name not in COLUMNS:
            raise ValueError(f"column: unknown name={name!r}; expected one of {COLUMNS}")
        return [getattr(block, name) for block in self.blocks]


def _channel_statistics(h: Tensor) -> tuple[float, float]:
    """Average squared channel mean and average channel variance of ``(batch, channels, ...)``."""
    h = h.detach().double()
    dims = [0, *range(2, h.dim())]
    mean = h.mean(dim=dims)
    var = h.var(dim=dims, unbiased=False)
    return float((mean * mean).mean()), float(var.mean())


def signal_propagation(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    batch_size: int = 256,
    seed: int = 0,
    inputs: Tensor | None = None,
    title: str = "",
) -> SignalPropagation:
    """Measure the signal propagation of ``model`` at every :class:`gradkit.nn.ResidualBlock`.

    Args:
        model: the network (at initialisation, for the paper's plots).
        input_shape: the shape of one sample; the input is ``batch_size`` draws of
            :math:`N(0, 1)` from a generator seeded with ``seed``.
        inputs: the input batch itself, instead of ``input_shape``.
        title: a label carried into the plot.
    """
    if (inputs is None) == (input_shape is None):
        raise ValueError("signal_propagation: give exactly one of input_shape and inputs")
    if inputs is None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(
                f"signal_propagation: invalid batch_size={batch_size!r}; expected an integer >= 2"
            )
        generator = torch.Generator().manual_seed(seed)
        parameter = next(model.parameters(), None)
        dtype = parameter.dtype if parameter is not None else torch.float32
        inputs = torch.randn((batch_size, *input_shape), generator=generator, dtype=dtype)
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, ResidualBlock)]
    if not named:
        raise ValueError(
            f"signal_propagation: {type(model).__name__} has no residual blocks "
            "(gradkit.nn.ResidualBlock) to measure"
        )
    outputs: dict[int, Tensor] = {}
    branches: dict[int, Tensor] = {}
    order: list[int] = []
    handles = []
    for index, (_, block) in enumerate(named):

        def record_output(_m: nn.Module, _i: object, out: Tensor, index: int = index) -> None:
            outputs[index] = out
            order.append(index)

        def record_branch(_m: nn.Module, _i: object, out: Tensor, index: int = index) -> None:
            branches[index] = out

        handles.append(block.register_forward_hook(record_output))
        handles.append(block.branch.register_forward_hook(record_branch))
    modes = {module: module.training for module in model.modules()}
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    rows = []
    for position, index in enumerate(order):
        name, block = named[index]
        squared_mean, variance = _channel_statistics(outputs[index])
        _, residual_variance = _channel_statistics(branches[index])
        rows.append(
            BlockSignal(
                position,
                name,
                int(block.stage),
                squared_mean,
                variance,
                residual_variance,
                block.expected_variance,
            )
        )
    return SignalPropagation(tuple(rows), title)


def write_csv(result: SignalPropagation, path: str | os.PathLike[str]) -> None:
    """Write one row per block with the :data:`COLUMNS` (atomically)."""
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for block in result.blocks:
            row = [getattr(block, column) for column in COLUMNS]
            writer.writerow(["" if value is None else value for value in row])


def plot(result: SignalPropagation, path: str | os.PathLike[str], *, dpi: int = 120) -> None:
    """Plot the three statistics against block depth, as in arXiv 2101.08692, Fig. 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = [block.block + 1 for block in result.blocks]
    panels = (
        ("squared_mean", "average squared channel mean"),
        ("variance", "average channel variance"),
        ("residual_variance", "residual variance"),
    )
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for axis, (column, label) in zip(axes, panels, strict=True):
        values = [float(v) for v in result.column(column)]  # type: ignore[arg-type]
        axis.plot(depth, values, marker="o", markersize=3, linewidth=1.5, label="measured")
        if column == "variance" and all(b.expected_variance for b in result.blocks):
            expected = [float(b.expected_variance) for b in result.blocks]  # type: ignore[arg-type]
            axis.plot(depth, expected, linestyle="--", color="grey", label="expected")
            axis.legend(fontsize=8)
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100 and len(positive) == len(values):
            axis.set_yscale("log")
        else:
            axis.set_ylim(bottom=0.0)  # a linear axis from 0, so small wiggles look small
        for block in result.blocks[1:]:
            if block.stage != result.blocks[block.block - 1].stage:
                axis.axvline(block.block + 0.5, color="grey", linewidth=0.6, linestyle=":")
        axis.set_xlabel("residual block")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
    if result.title:
        figure.suptitle(result.title, fontsize=10)
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=dpi)
    plt.close(figure)
