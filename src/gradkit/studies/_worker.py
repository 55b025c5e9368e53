"""What a worker does with one run of a study: train it and hand back its record.

:func:`train_plan` trains one :class:`~gradkit.studies.RunPlan` in a folder of its own and
returns a :class:`RunOutcome` (metrics, timings, curves, profiles, final weights, or the error):
everything the store keeps of a run, as plain picklable values. It never touches the store, so
it runs the same in the driver's process, in a local worker process or on a Dask worker of
another machine; the driver alone writes what comes back (:mod:`gradkit.studies._runner`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradkit.studies._expand import RunPlan

__all__ = ["FinalWeights", "RunOutcome", "read_curves", "train_plan"]

_CURVE_POINTS = 400  # the training-loss curve is stored as at most this many window means

Curve = list[tuple[str, int, str, float | None]]


@dataclass(frozen=True)
class RunOutcome:
    """One attempt of a run, as the worker hands it to the driver.

    Attributes:
        run_id: the run.
        error: ``"Type: message"`` when it failed (then only ``details``, ``seconds`` and
            ``worker`` are meaningful), else ``None``.
        details: the error with the last frames of its traceback.
        metrics: final metrics (``test_accuracy``, ...) and the measures' results.
        seconds: wall-clock training time (until the failure, for a failed run).
        steps: optimizer steps taken.
        curves: ``(kind, step, name, value)`` rows (:func:`read_curves`).
        profiles: per-block measures, by name.
        weights: the final ``state_dict`` as ``torch.save`` bytes, when the plan keeps them.
        worker: ``host:pid`` of the process that trained it.
    """

    run_id: str
    error: str | None = None
    details: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    curves: Curve = field(default_factory=list)
    profiles: dict[str, list[float]] = field(default_factory=dict)
    weights: bytes | None = None
    worker: str = ""


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def train_plan(
    plan: RunPlan, run_root: str | None, threads: int, keep_run: bool = False
) -> RunOutcome:
    """Train one run; returns its :class:`RunOutcome` (an exception becomes its ``error``).

    An interrupt (``KeyboardInterrupt``) is raised, not returned: the run stays unfinished and
    the next runner trains it again. The run trains in a new folder ``<run_id>.<random>`` under
    ``run_root`` (or under this machine's temporary directory when ``run_root`` is ``None``, as
    on a Dask worker), which no other attempt of it uses; it is removed afterwards, or, with
    ``keep_run``, becomes ``run_root/<run_id>``.
    """
    from gradkit.train import config_from_dict, train

    torch.set_num_threads(threads)
    root = Path(run_root) if run_root is not None else Path(tempfile.gettempdir()) / "gradkit"
    run_dir: Path | None = None
    started = time.perf_counter()
    try:
        config = config_from_dict(plan.config).updated(
            {
                "log.root": str(root),
                "log.name": plan.run_id,
                "log.progress": "off",
                "log.tensorboard": "off",
                "train.threads": threads,
                "checkpoint.every": 0,
                "checkpoint.best": False,
            }
        )
        run_dir = _attempt_folder(root, plan.run_id)
        measures = _measure_callbacks(plan, config)
        weights = FinalWeights() if plan.keep_weights else None
        callbacks = [*measures, *([weights] if weights is not None else [])]
        result = train(config, callbacks=callbacks, run_dir=run_dir)
        metrics, profiles = dict(result.metrics), {}
        for callback in measures:
            metrics.update(callback.finish())
            profiles.update({k: list(v) for k, v in callback.profiles.items()})
        return RunOutcome(
            plan.run_id,
            metrics=metrics,
            seconds=result.seconds,
            steps=result.steps,
            curves=read_curves(run_dir),
            profiles=profiles,
            weights=None if weights is None else weights.data,
            worker=worker_name(),
        )
    except Exception as error:
        return failed_outcome(plan.run_id, error, time.perf_counter() - started)
    finally:
        if run_dir is not None:
            kept = root / plan.run_id if keep_run and run_root is not None else None
            _settle(run_dir, kept)


def failed_outcome(run_id: str, error: BaseException, seconds: float = 0.0) -> RunOutcome:
    """The outcome of a run that raised ``error``."""
    text = f"{type(error).__name__}: {error}"
    tail = "".join(traceback.format_exception(error)[-3:])
    return RunOutcome(run_id, text, f"{text}\n{tail}", seconds=seconds, worker=worker_name())


def _attempt_folder(run_root: Path, run_id: str) -> Path:
    """A new folder ``run_root/<run_id>.<random>`` for one attempt of a run, no one else's."""
    run_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{run_id}.", dir=run_root))
    # mkdtemp makes the folder private (0700); give it the mode a plain mkdir() would.
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    return folder


def _settle(attempt: Path, kept: Path | None) -> None:
    """Remove an attempt's folder, or make it ``kept`` (replacing an earlier attempt's)."""
    if kept is None:
        shutil.rmtree(attempt, ignore_errors=True)
        return
    shutil.rmtree(kept, ignore_errors=True)
    with contextlib.suppress(OSError):  # the run is trained; a folder not kept must not undo it
        os.replace(attempt, kept)


class FinalWeights:
    """A training callback that keeps the final ``state_dict`` as ``torch.save`` bytes."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def on_train_end(self, ctx: Any) -> None:
        """Serialise the model as it ended (on CPU, so any machine can load it)."""
        state = {k: v.detach().cpu() for k, v in ctx.model.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.data = buffer.getvalue()


def _measure_callbacks(plan: RunPlan, config: Any) -> list[Any]:
    if not plan.measures:
        return []
    from gradkit.data import load_dataset
    from gradkit.studies._measures import MeasureCallback

    splits = load_dataset(config.data.name, root=config.data.root, **config.data.options)
    inputs, labels = splits.train.tensors[:2]
    return [MeasureCallback(tuple(plan.measures), inputs, labels)]


def read_curves(run_dir: Path) -> Curve:
    """The ``(kind, step, name, value)`` rows of a run directory's metrics files.

    Every evaluation is kept; the training loss (and lr, batch size) is kept as the means of at
    most ``_CURVE_POINTS`` windows of consecutive steps, labelled by each window's last step.
    """
    from gradkit.train import read_jsonl

    rows: Curve = []
    evals = run_dir / "evals.jsonl"
    for record in read_jsonl(evals) if evals.exists() else []:
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float, str)):
                rows.append(("eval", int(record["step"]), name, _float(value)))
    steps_path = run_dir / "steps.jsonl"
    steps = read_jsonl(steps_path) if steps_path.exists() else []
    window = max(1, math.ceil(len(steps) / _CURVE_POINTS))
    for start in range(0, len(steps), window):
        chunk = steps[start : start + window]
        for name in ("loss", "lr", "batch_size", "time"):
            values = [_float(r.get(name)) for r in chunk if r.get(name) is not None]
            values = [v for v in values if v is not None]
            if values:
                value = values[-1] if name == "time" else sum(values) / len(values)
                rows.append(("step", int(chunk[-1]["step"]), name, value))
    return rows


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
