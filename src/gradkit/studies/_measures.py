"""Measurements a study takes besides the training metrics, named in ``[study] measures``.

Each runs in the worker, on the run's model: at initialisation (``phase = "start"``) or on the
final model (``phase = "end"``), with the first :data:`MEASURE_SAMPLES` samples of the training
split. The numbers they return join the run's metrics in the store, so a claim can compare them;
the tuples they return are *profiles* (one value per position, e.g. per residual block), stored
in the store's ``profiles`` table and plotted by the report.

- ``sharpness``: ε-sharpness of the final model, ε = 1e-3 (arXiv 1609.04836), in percent.
- ``hessian``: the top eigenvalue of the Hessian of the final model's training loss (Lanczos).
- ``signal_propagation``: at initialisation, the squared mean and variance of the last residual
  block's output on N(0, 1) inputs (arXiv 2101.08692), and their growth over the blocks; and the
  whole per-block profile (:data:`SIGNAL_PROFILES`) for the report's signal propagation plot.
- ``weight_norm``: the L2 norm of all parameters of the final model.

The snapshot ensemble (arXiv 1704.00109) is measured by the training loop itself: set
``checkpoint.snapshot_ensemble`` and compare ``ensemble_test_accuracy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MEASURES", "MEASURE_SAMPLES", "SIGNAL_PROFILES", "Measure", "MeasureCallback"]

MEASURE_SAMPLES = 1000
"""How many training samples a measurement uses (the first ones of the training split)."""

SIGNAL_PROFILES = {
    "spp_squared_mean": "squared_mean",
    "spp_variance": "variance",
    "spp_residual_variance": "residual_variance",
}
"""The profiles of ``signal_propagation``: profile name -> column of
:class:`gradkit.diagnostics.SignalPropagation` (one value per residual block, in order)."""

Measurement = dict[str, float | tuple[float, ...]]
"""What a measure returns: metrics (numbers) and profiles (tuples of numbers)."""


@dataclass(frozen=True)
class Measure:
    """A named measurement: ``function(model, inputs, labels) -> {name: number or profile}``."""

    name: str
    phase: str
    function: Callable[[nn.Module, Tensor, Tensor], Measurement]
    summary: str


def _sharpness(model: nn.Module, inputs: Tensor, labels: Tensor) -> Measurement:
    from gradkit.diagnostics import sharpness

    result = sharpness(model, (inputs, labels), epsilon=1e-3, steps=10, restarts=2)
    return {"sharpness": result.sharpness}


def _hessian(model: nn.Module, inputs: Tensor, labels: Tensor) -> Measurement:
    from gradkit.diagnostics import hessian_eigenvalues

    result = hessian_eigenvalues(model, (inputs, labels), k=1, iterations=30)
    return {"hessian_top": result.eigenvalues[0]}


def _signal_propagation(model: nn.Module, inputs: Tensor, labels: Tensor) -> Measurement:
    from gradkit.diagnostics import signal_propagation

    result = signal_propagation(model, tuple(inputs.shape[1:]), batch_size=256)
    first, last = result.blocks[0], result.blocks[-1]
    measured: Measurement = {
        "spp_last_squared_mean": last.squared_mean,
        "spp_last_variance": last.variance,
        "spp_variance_growth": last.variance / max(first.variance, 1e-12),
    }
    for profile, column in SIGNAL_PROFILES.items():
        measured[profile] = tuple(float(v) for v in result.column(column))  # type: ignore[arg-type]
    return measured


def _weight_norm(model: nn.Module, inputs: Tensor, labels: Tensor) -> Measurement:
    squares = sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())
    return {"weight_norm": squares**0.5}


MEASURES: Mapping[str, Measure] = {
    m.name: m
    for m in (
        Measure("sharpness", "end", _sharpness, "ε-sharpness (percent) of the final model"),
        Measure("hessian", "end", _hessian, "top Hessian eigenvalue of the final model"),
        Measure("signal_propagation", "start", _signal_propagation, "signal propagation at init"),
        Measure("weight_norm", "end", _weight_norm, "parameter norm of the final model"),
    )
}
"""Every measurement a study may name."""


class MeasureCallback:
    """A training callback that takes ``names``' measurements; read them from ``results``."""

    def __init__(self, names: tuple[str, ...], inputs: Tensor, labels: Tensor) -> None:
        self.measures = [MEASURES[name] for name in names]
        self.inputs, self.labels = inputs[:MEASURE_SAMPLES], labels[:MEASURE_SAMPLES]
        self.results: dict[str, Any] = {}
        self.profiles: dict[str, tuple[float, ...]] = {}
        self.model: nn.Module | None = None

    def _take(self, phase: str, model: nn.Module) -> None:
        for measure in self.measures:
            if measure.phase == phase:
                with torch.random.fork_rng():  # measuring must not change the run
                    measured = measure.function(model, self.inputs, self.labels)
                for name, value in measured.items():
                    if isinstance(value, tuple):
                        self.profiles[name] = value
                    else:
                        self.results[name] = value

    def on_train_start(self, ctx: Any) -> None:
        """Measure the model at initialisation."""
        self._take("start", ctx.model)

    def on_train_end(self, ctx: Any) -> None:
        """Keep the final model (measured by :meth:`finish`, once training succeeded)."""
        self.model = ctx.model

    def finish(self) -> dict[str, Any]:
        """Measure the final model; returns the metrics taken (profiles are in ``profiles``)."""
        if self.model is not None:
            self._take("end", self.model)
        return self.results
