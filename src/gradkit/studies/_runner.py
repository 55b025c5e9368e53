"""Run a study: expand it, skip what the store holds, run the rest in worker processes.

The output directory holds ``study.toml`` (the spec as run), ``study.db`` (the store),
``runner.lock`` and, while a run trains, its attempt's own folder ``runs/<run_id>.<random>/``
(removed when the run is recorded; with ``keep_runs`` it becomes ``runs/<run_id>/``). A folder
private to each attempt means that two processes training the same run never delete each
other's files.

One study has one runner at a time: :func:`run_study` holds the lock of the output directory
(:class:`gradkit.studies._lock.StudyLock`) from start to end, and a second runner raises
:class:`StudyLockedError` at once. Its worker processes die with it
(:mod:`gradkit.studies._lifeline`), so a runner started after a crash is alone with the study.
A run is recorded ``done`` only with its curves (:meth:`Store.finish` refuses a run without
any); one whose metrics files came back empty is recorded ``failed``.

Resuming is running again: finished runs are skipped (failed ones too, unless
``retry_failed``); a run that was interrupted (its row still says ``running``) starts over, and
so does a finished run whose weights an interpolation needs but the store lacks. Once the runs
are done, the interpolations the store lacks are computed in this process
(:mod:`gradkit.studies._interpolation`).
Each worker is a separate process pinned to ``threads // workers`` intra-op threads; where the
workers live is the executor's business (:mod:`gradkit.studies._executor`), this module is the
driver. A failing run is recorded with its error and the others go on.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradkit._io import atomic_output
from gradkit.studies._executor import run_in_processes
from gradkit.studies._expand import RunPlan
from gradkit.studies._interpolation import compute_interpolations
from gradkit.studies._lock import StudyLock, StudyLockedError
from gradkit.studies._protocol import current_plans
from gradkit.studies._spec import StudySpec, load_spec
from gradkit.studies._store import Store

__all__ = [
    "SPEC_NAME",
    "STORE_NAME",
    "StudyLockedError",
    "StudyOutcome",
    "run_plan",
    "run_study",
]

STORE_NAME = "study.db"
PRESET_NAME = "preset.txt"
"""The preset a study directory was run with (absent: the full study)."""
"""The store's file name in a study's output directory."""
SPEC_NAME = "study.toml"
"""The copy of the spec in a study's output directory (what ``gradkit study report`` reads)."""
_CURVE_POINTS = 400  # the training-loss curve is stored as at most this many window means


@dataclass(frozen=True)
class StudyOutcome:
    """What one call of :func:`run_study` did.

    Attributes:
        out_dir: the study's output directory.
        total: runs in the study.
        skipped: runs the store already held (finished, or failed without ``retry_failed``).
        ran: ids of the runs this call ran, in the order they finished.
        failed: ``{run_id: error}`` of the runs that failed in this call.
        seconds: wall-clock time of this call.
        interpolated: ``(name, from_run, to_run)`` of the interpolations computed in this call.
        interpolation_failed: those of them that failed, with their errors.
    """

    out_dir: Path
    total: int
    skipped: int
    ran: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interpolated: tuple[tuple[str, str, str], ...] = ()
    interpolation_failed: dict[tuple[str, str, str], str] = field(default_factory=dict)


def run_study(
    spec: str | os.PathLike[str] | StudySpec,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    threads: int | None = None,
    retry_failed: bool = False,
    keep_runs: bool = False,
    progress: bool = True,
    preset: str = "",
) -> StudyOutcome:
    """Run every run of ``spec`` that ``out_dir``'s store does not hold yet.

    Args:
        spec: a study file or a parsed :class:`StudySpec` (a file is copied to
            ``out_dir/study.toml``; a parsed spec must have been read from a file).
        workers: processes training in parallel (1: in this process).
        threads: intra-op threads in all (default: the CPU count), shared by the workers.
        retry_failed: run again the runs (and interpolations) that failed before.
        keep_runs: keep each run's directory (config, metrics files, final checkpoint).
        progress: show one progress bar for the study (on stderr).
        preset: run the study shrunk (``"quick"``: see :mod:`gradkit.studies._tuning_spec`);
            recorded in ``out_dir/preset.txt`` so that its report reads the spec the same way.

    Raises:
        StudyLockedError: another runner holds ``out_dir`` (nothing is written then).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"run_study: invalid workers={workers!r}; expected an integer >= 1")
    started = time.perf_counter()
    parsed = spec if isinstance(spec, StudySpec) else load_spec(spec, preset=preset)
    with StudyLock(out_dir):
        return _run_locked(
            parsed,
            Path(out_dir),
            started,
            workers=workers,
            threads=threads,
            retry_failed=retry_failed,
            keep_runs=keep_runs,
            progress=progress,
        )


def _run_locked(
    parsed: StudySpec,
    out: Path,
    started: float,
    *,
    workers: int,
    threads: int | None,
    retry_failed: bool,
    keep_runs: bool,
    progress: bool,
) -> StudyOutcome:
    """:func:`run_study` once the study's lock is held: the driver (store, plans, report)."""
    source = Path(parsed.source)
    if source.is_file() and source.resolve() != (out / SPEC_NAME).resolve():
        with atomic_output(out / SPEC_NAME) as temporary:
            temporary.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    if parsed.preset:
        with atomic_output(out / PRESET_NAME) as temporary:
            temporary.write_text(parsed.preset + "\n", encoding="utf-8")
    else:
        (out / PRESET_NAME).unlink(missing_ok=True)
    threads = threads or os.cpu_count() or 1
    per_worker = max(1, threads // workers)
    skip = {"done"} if retry_failed else {"done", "failed"}
    ran: list[str] = []
    failed: dict[str, str] = {}
    attempted: set[str] = set()
    bar: Any = None
    skipped: int | None = None
    arguments = (str(out / STORE_NAME), parsed.name, str(out / "runs"), per_worker, keep_runs)

    def record(run_id: str, error: str | None) -> None:
        ran.append(run_id)
        if error is not None:
            failed[run_id] = error
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(failed), refresh=False)

    try:
        # A tuned study unfolds in rounds (tune, widen, report: see _protocol); the plain
        # study is one round. Each round runs what the store lacks of the plans known now.
        while True:
            with Store(out / STORE_NAME) as store:
                plans = current_plans(parsed, {run.run_id: run for run in store.runs()})
                statuses, with_weights = store.statuses(), store.with_weights()
            todo = [
                plan
                for plan in plans
                if plan.run_id not in attempted
                and (
                    statuses.get(plan.run_id) not in skip
                    or (
                        plan.keep_weights
                        and statuses[plan.run_id] == "done"
                        and plan.run_id not in with_weights
                    )
                )
            ]
            if skipped is None:
                skipped = len(plans) - len(todo)
                bar = _progress_bar(len(plans), skipped, parsed.name, progress)
            elif bar is not None and todo:
                bar.total = len(plans)  # later rounds add widened trials and report runs
                bar.refresh()
            if not todo:
                break
            attempted.update(plan.run_id for plan in todo)
            if workers == 1 or len(todo) <= 1:
                for plan in todo:
                    record(*run_plan(plan, *arguments))
            else:
                run_in_processes(
                    run_plan, todo, arguments, workers=workers, threads=per_worker, record=record
                )
    finally:
        if bar is not None:
            bar.close()
        with contextlib.suppress(OSError):
            (out / "runs").rmdir()  # only when empty: kept runs and crashed ones stay
    interpolated, interpolation_failed = compute_interpolations(
        parsed.interpolations, out / STORE_NAME, retry_failed=retry_failed
    )
    return StudyOutcome(
        out,
        len(plans),
        skipped or 0,
        tuple(ran),
        failed,
        time.perf_counter() - started,
        tuple(interpolated),
        interpolation_failed,
    )


def _progress_bar(total: int, initial: int, name: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="run", dynamic_ncols=True)


def run_plan(
    plan: RunPlan, store_path: str, study: str, run_root: str, threads: int, keep_run: bool
) -> tuple[str, str | None]:
    """Train one run and record it; returns ``(run_id, error or None)``.

    An exception is recorded as the run's failure and returned, never raised; an interrupt
    (``KeyboardInterrupt``) leaves the run unfinished, so the next call runs it again. The run
    trains in a folder of its own under ``run_root`` (``<run_id>.<random>``), which no other
    attempt of it uses; ``keep_run`` keeps it as ``run_root/<run_id>``.
    """
    from gradkit.train import config_from_dict, train

    torch.set_num_threads(threads)
    run_dir: Path | None = None
    with Store(store_path) as store:
        store.start(plan, study)
        started = time.perf_counter()
        try:
            config = config_from_dict(plan.config).updated(
                {
                    "log.root": run_root,
                    "log.name": plan.run_id,
                    "log.progress": "off",
                    "log.tensorboard": "off",
                    "train.threads": threads,
                    "checkpoint.every": 0,
                    "checkpoint.best": False,
                }
            )
            run_dir = _attempt_folder(Path(run_root), plan.run_id)
            measures = _measure_callbacks(plan, config)
            weights = FinalWeights() if plan.keep_weights else None
            callbacks = [*measures, *([weights] if weights is not None else [])]
            result = train(config, callbacks=callbacks, run_dir=run_dir)
            metrics, profiles = dict(result.metrics), {}
            for callback in measures:
                metrics.update(callback.finish())
                profiles.update(callback.profiles)
            store.finish(
                plan.run_id,
                metrics=metrics,
                seconds=result.seconds,
                steps=result.steps,
                curves=read_curves(run_dir),
                profiles=profiles,
                weights=None if weights is None else weights.data,
            )
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            tail = "".join(traceback.format_exception(error)[-3:])
            store.fail(plan.run_id, f"{text}\n{tail}", seconds=time.perf_counter() - started)
            return plan.run_id, text
        finally:
            if run_dir is not None:
                _settle(run_dir, Path(run_root) / plan.run_id if keep_run else None)
    return plan.run_id, None


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
    with contextlib.suppress(OSError):  # the run is recorded; a folder not kept must not undo it
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


def read_curves(run_dir: Path) -> list[tuple[str, int, str, float | None]]:
    """The ``(kind, step, name, value)`` rows of a run directory's metrics files.

    Every evaluation is kept; the training loss (and lr, batch size) is kept as the means of at
    most ``_CURVE_POINTS`` windows of consecutive steps, labelled by each window's last step.
    """
    from gradkit.train import read_jsonl

    rows: list[tuple[str, int, str, float | None]] = []
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


def read_preset(out_dir: str | os.PathLike[str]) -> str:
    """The preset the study in ``out_dir`` was run with ("" for the full study)."""
    path = Path(out_dir) / PRESET_NAME
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def pending(spec: StudySpec, out_dir: str | os.PathLike[str]) -> Sequence[RunPlan]:
    """The runs of ``spec`` that ``out_dir``'s store has not finished."""
    with Store(Path(out_dir) / STORE_NAME) as store:
        statuses = store.statuses()
        plans = current_plans(spec, {run.run_id: run for run in store.runs()})
    return [plan for plan in plans if statuses.get(plan.run_id) != "done"]
