r"""Layer-wise weight and gradient norms during training (You et al., arXiv 1708.03888, Table 1).

For every parameter tensor :math:`w_l` (a "layer" in the LARS paper's sense) the monitor records
:math:`\lVert w_l \rVert_2`, :math:`\lVert \nabla L(w_l) \rVert_2` and their ratio

.. math:: r_l = \frac{\lVert w_l \rVert}{\lVert \nabla L(w_l) \rVert},

which the LARS paper found to differ by orders of magnitude between layers (and between weights
and biases) — so that one global learning rate is too large for some layers and too small for
others, the observation that motivates LARS's layer-wise trust ratio. A zero gradient gives
:math:`r_l = \infty`.

:class:`LayerwiseMonitor` is a callback of the training engine (it records in
``after_backward``, when the gradients of the step exist, and writes ``layerwise.csv`` and
``layerwise.png`` to the run directory at ``on_train_end``); in a hand-written loop call
:meth:`LayerwiseMonitor.record` after ``backward()``. With a ``GradScaler`` the gradients are
still scaled at that point; unscale them first for true norms.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradkit._io import atomic_output
from gradkit.diagnostics._evaluation import check_positive_integer

LAYERWISE_COLUMNS = ("step", "name", "weight_norm", "grad_norm", "ratio")
"""The CSV columns, in order."""


@dataclass(frozen=True)
class LayerRecord:
    """The norms of one parameter tensor at one step."""

    step: int
    name: str
    weight_norm: float
    grad_norm: float
    ratio: float


class LayerwiseMonitor:
    """Record :math:`\\lVert w \\rVert`, :math:`\\lVert g \\rVert` and their ratio per parameter.

    Args:
        every: record every ``every``-th step (steps ``0, every, 2 every, ...``).
        names: only these parameter names (default: all with a gradient).
        write_files: at ``on_train_end``, write ``layerwise.csv`` and ``layerwise.png`` into the
            context's ``run_dir`` (when it has one).

    Example:
        >>> monitor = LayerwiseMonitor(every=10)
        >>> for step, (x, y) in enumerate(loader):
        ...     loss_fn(model(x), y).backward()
        ...     monitor.record(model, step)
        ...     optimizer.step(); optimizer.zero_grad()
        >>> monitor.plot("layerwise.png")
    """

    def __init__(
        self,
        *,
        every: int = 1,
        names: Sequence[str] | None = None,
        write_files: bool = True,
    ) -> None:
        self.every = check_positive_integer("LayerwiseMonitor", "every", every)
        self.names = None if names is None else tuple(names)
        self.write_files = write_files
        self.records: list[LayerRecord] = []

    # The training engine's callback interface.
    def on_train_start(self, ctx: Any) -> None:
        """Nothing to do at the start."""

    def after_backward(self, ctx: Any) -> None:
        """Record ``ctx.model`` at ``ctx.step`` when the step is a multiple of ``every``."""
        if int(ctx.step) % self.every == 0:
            self.record(ctx.model, int(ctx.step))

    def on_step_end(self, ctx: Any) -> None:
        """Nothing to do after a step."""

    def on_eval(self, ctx: Any, metrics: Any) -> None:
        """Nothing to do at an evaluation."""

    def on_train_end(self, ctx: Any) -> None:
        """Write ``layerwise.csv`` and ``layerwise.png`` into ``ctx.run_dir`` (if any)."""
        run_dir = getattr(ctx, "run_dir", None)
        if self.write_files and run_dir is not None and self.records:
            self.to_csv(Path(run_dir) / "layerwise.csv")
            self.plot(Path(run_dir) / "layerwise.png")

    def record(self, model: nn.Module, step: int) -> list[LayerRecord]:
        """Record every parameter of ``model`` that has a gradient; returns the new records."""
        new = []
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.grad is None or (self.names is not None and name not in self.names):
                    continue
                weight = float(parameter.detach().double().norm())
                grad = float(parameter.grad.detach().double().norm())
                ratio = weight / grad if grad > 0 else math.inf
                new.append(LayerRecord(int(step), name, weight, grad, ratio))
        self.records.extend(new)
        return new

    def series(self, column: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{name: (steps, values)}`` of one column (``weight_norm``, ``grad_norm`` or
        ``ratio``), in the order the parameters were first seen."""
        if column not in LAYERWISE_COLUMNS[2:]:
            raise ValueError(
                f"series: unknown column={column!r}; expected one of {LAYERWISE_COLUMNS[2:]}"
            )
        table: dict[str, tuple[list[int], list[float]]] = {}
        for record in self.records:
            steps, values = table.setdefault(record.name, ([], []))
            steps.append(record.step)
            values.append(getattr(record, column))
        return {name: (np.asarray(s), np.asarray(v)) for name, (s, v) in table.items()}

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per record with the :data:`LAYERWISE_COLUMNS` (atomically)."""
        with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(LAYERWISE_COLUMNS)
            for record in self.records:
                writer.writerow([getattr(record, column) for column in LAYERWISE_COLUMNS])

    def plot(self, path: str | os.PathLike[str], *, dpi: int = 120) -> None:
        """Plot ``||w||``, ``||g||`` and ``||w|| / ||g||`` against the step, one line per
        parameter, on log axes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.records:
            raise ValueError("LayerwiseMonitor.plot: nothing recorded yet")
        panels = (
            ("weight_norm", "||w||"),
            ("grad_norm", "||grad||"),
            ("ratio", "||w|| / ||grad||"),
        )
        figure, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
        for axis, (column, label) in zip(axes, panels, strict=True):
            for index, (name, (steps, values)) in enumerate(self.series(column).items()):
                shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
                style = "-" if name.endswith("weight") or shown.size == 0 else "--"
                axis.plot(steps, shown, style, color=f"C{index % 10}", linewidth=1.2, label=name)
            axis.set_yscale("log")
            axis.set_xlabel("step")
            axis.set_title(label, fontsize=10)
            axis.grid(alpha=0.3, which="both")
        axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format=suffix, dpi=dpi)
        plt.close(figure)
