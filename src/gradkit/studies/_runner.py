"""Run a study: expand it, skip what the store holds, run the rest on an executor.

The output directory holds ``study.toml`` (the spec as run), ``study.db`` (the store),
``runner.lock`` and, while a run trains on the local executor, its attempt's own folder
``runs/<run_id>.<random>/`` (removed when the run is recorded; with ``keep_runs`` it becomes
``runs/<run_id>/``). A folder private to each attempt means that two processes training the
same run never delete each other's files.

This module is the driver, and the store's only writer: it marks the runs it hands out as
``running``, and writes each record an executor hands back (:class:`RunOutcome`, made by
:func:`gradkit.studies._worker.train_plan` wherever the run trained). The executors are this
process (``workers=1``), a local pool of ``workers`` processes (:mod:`gradkit.studies._executor`)
or a Dask cluster (``scheduler=``, :mod:`gradkit.studies._dask`). A run is recorded ``done``
only with its curves (:meth:`Store.finish` refuses a run without any); one whose metrics files
came back empty is recorded ``failed``.

One study has one runner at a time: :func:`run_study` holds the lock of the output directory
(:class:`gradkit.studies._lock.StudyLock`) from start to end, and a second runner raises
:class:`StudyLockedError` at once. Local worker processes die with it
(:mod:`gradkit.studies._lifeline`), so a runner started after a crash is alone with the study.

Resuming is running again: finished runs are skipped (failed ones too, unless
``retry_failed``); a run that was interrupted (its row still says ``running``) starts over, and
so does a finished run whose weights an interpolation needs but the store lacks. Once the runs
are done, the interpolations the store lacks are computed in this process
(:mod:`gradkit.studies._interpolation`). A failing run is recorded with its error and the
others go on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.studies._executor import run_in_processes
from gradkit.studies._expand import RunPlan
from gradkit.studies._interpolation import compute_interpolations
from gradkit.studies._lock import StudyLock, StudyLockedError
from gradkit.studies._protocol import current_plans
from gradkit.studies._spec import StudySpec, load_spec
from gradkit.studies._store import Store
from gradkit.studies._worker import RunOutcome, failed_outcome, train_plan

__all__ = [
    "SPEC_NAME",
    "STORE_NAME",
    "StudyLockedError",
    "StudyOutcome",
    "record_outcome",
    "run_plan",
    "run_study",
]

STORE_NAME = "study.db"
PRESET_NAME = "preset.txt"
"""The preset a study directory was run with (absent: the full study)."""
"""The store's file name in a study's output directory."""
SPEC_NAME = "study.toml"
"""The copy of the spec in a study's output directory (what ``gradkit study report`` reads)."""


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
    scheduler: Any = None,
    connect_timeout: float = 10.0,
    preset: str = "",
) -> StudyOutcome:
    """Run every run of ``spec`` that ``out_dir``'s store does not hold yet.

    Args:
        spec: a study file or a parsed :class:`StudySpec` (a file is copied to
            ``out_dir/study.toml``; a parsed spec must have been read from a file).
        workers: local processes training in parallel (1: in this process).
        threads: intra-op threads; locally in all (default: the CPU count), shared by the
            workers; on a Dask cluster per run (default 1).
        retry_failed: run again the runs (and interpolations) that failed before.
        keep_runs: keep each run's directory (config, metrics files, final checkpoint);
            local executors only.
        progress: show one progress bar for the study (on stderr).
        scheduler: train on a Dask cluster instead (:mod:`gradkit.studies._dask`): its address
            (``tcp://host:8786``), a ``distributed.Client`` or a cluster object such as
            ``dask_jobqueue.SLURMCluster``. ``workers`` is then ignored.
        connect_timeout: seconds to wait for the scheduler to answer.
        preset: run the study shrunk (``"quick"``: see :mod:`gradkit.studies._tuning_spec`);
            recorded in ``out_dir/preset.txt`` so that its report reads the spec the same way.

    Raises:
        StudyLockedError: another runner holds ``out_dir`` (nothing is written then).
        SchedulerError: the scheduler does not answer or its workers cannot run gradkit
            (nothing is written then), or it was lost midway (what finished is stored).
        ValueError: invalid ``workers`` or ``threads``, or ``keep_runs`` with a scheduler.
    """
    for name, value in (("workers", workers), ("threads", threads)):
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if value is not None and not valid:
            raise ValueError(f"run_study: invalid {name}={value!r}; expected an integer >= 1")
    if scheduler is not None and keep_runs:
        raise ValueError(
            "run_study: keep_runs=True needs a local executor (on a Dask cluster each run "
            "trains in its worker's temporary directory); drop keep_runs or the scheduler"
        )
    started = time.perf_counter()
    parsed = spec if isinstance(spec, StudySpec) else load_spec(spec, preset=preset)
    with contextlib.ExitStack() as stack:
        client = None
        if scheduler is not None:
            from gradkit.studies._dask import connect

            client = stack.enter_context(connect(scheduler, connect_timeout))
        stack.enter_context(StudyLock(out_dir))
        return _run_locked(
            parsed,
            Path(out_dir),
            started,
            workers=workers,
            threads=threads,
            retry_failed=retry_failed,
            keep_runs=keep_runs,
            progress=progress,
            client=client,
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
    client: Any,
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
    ran: list[str] = []
    failed: dict[str, str] = {}
    attempted: set[str] = set()
    bar: Any = None
    skipped: int | None = None
    plans: Sequence[RunPlan] = ()
    with Store(out / STORE_NAME) as store:

        def record(outcome: RunOutcome) -> None:
            error = record_outcome(store, outcome)
            ran.append(outcome.run_id)
            if error is not None:
                failed[outcome.run_id] = error
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=len(failed), refresh=False)

        try:
            # A tuned study unfolds in rounds (tune, widen, report: see _protocol); the plain
            # study is one round. Each round runs what the store lacks of the plans known now,
            # each run at most once per call (so a failing one cannot loop).
            while True:
                plans = current_plans(parsed, {run.run_id: run for run in store.runs()})
                todo = [p for p in _todo(plans, store, retry_failed) if p.run_id not in attempted]
                if skipped is None:
                    skipped = len(plans) - len(todo)
                    bar = _progress_bar(len(plans), skipped, parsed.name, progress)
                elif bar is not None and todo:
                    bar.total = len(plans)  # later rounds add widened trials and report runs
                    bar.refresh()
                if not todo:
                    break
                attempted.update(plan.run_id for plan in todo)
                for plan in todo:  # handed out: a run still 'running' after a crash runs again
                    store.start(plan, parsed.name)
                _execute(
                    todo, out / "runs", parsed.name, record, client, workers, threads, keep_runs
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


def _todo(plans: Sequence[RunPlan], store: Store, retry_failed: bool) -> list[RunPlan]:
    """The plans to run: not finished (nor failed, unless ``retry_failed``), or finished
    without the weights an interpolation needs."""
    statuses, with_weights = store.statuses(), store.with_weights()
    skip = {"done"} if retry_failed else {"done", "failed"}
    return [
        plan
        for plan in plans
        if statuses.get(plan.run_id) not in skip
        or (
            plan.keep_weights
            and statuses[plan.run_id] == "done"
            and plan.run_id not in with_weights
        )
    ]


def _execute(
    todo: Sequence[RunPlan],
    run_root: Path,
    study: str,
    record: Any,
    client: Any,
    workers: int,
    threads: int | None,
    keep_runs: bool,
) -> None:
    """Train ``todo`` on the chosen executor, calling ``record`` with each outcome."""
    if client is not None:
        from gradkit.studies._dask import run_on_dask

        run_on_dask(
            client,
            train_plan,
            todo,
            (None, threads or 1, False),
            study=study,
            record=record,
            lost=lambda plan, error: failed_outcome(plan.run_id, error),
        )
        return
    per_worker = max(1, (threads or os.cpu_count() or 1) // workers)
    arguments = (str(run_root), per_worker, keep_runs)
    if workers == 1 or len(todo) <= 1:
        for plan in todo:
            record(train_plan(plan, *arguments))
    else:
        run_in_processes(
            train_plan, todo, arguments, workers=workers, threads=per_worker, record=record
        )


def record_outcome(store: Store, outcome: RunOutcome) -> str | None:
    """Write one run's outcome to ``store``; returns its error (``None`` when it is done).

    A run that trained but has no curves is recorded failed (:meth:`Store.finish` refuses it).
    """
    if outcome.error is None:
        try:
            store.finish(
                outcome.run_id,
                metrics=outcome.metrics,
                seconds=outcome.seconds,
                steps=outcome.steps,
                curves=outcome.curves,
                profiles=outcome.profiles,
                weights=outcome.weights,
                worker=outcome.worker or None,
            )
            return None
        except ValueError as error:
            outcome = failed_outcome(outcome.run_id, error, outcome.seconds)
    assert outcome.error is not None
    store.fail(
        outcome.run_id, outcome.details, seconds=outcome.seconds, worker=outcome.worker or None
    )
    return outcome.error


def _progress_bar(total: int, initial: int, name: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="run", dynamic_ncols=True)


def run_plan(
    plan: RunPlan, store_path: str, study: str, run_root: str, threads: int, keep_run: bool
) -> tuple[str, str | None]:
    """Train one run in this process and record it; returns ``(run_id, error or None)``.

    An exception is recorded as the run's failure and returned, never raised; an interrupt
    (``KeyboardInterrupt``) leaves the run unfinished, so the next call runs it again. The run
    trains in a folder of its own under ``run_root`` (``<run_id>.<random>``), which no other
    attempt of it uses; ``keep_run`` keeps it as ``run_root/<run_id>``.
    """
    with Store(store_path) as store:
        store.start(plan, study)
        return plan.run_id, record_outcome(store, train_plan(plan, run_root, threads, keep_run))


def read_preset(out_dir: str | os.PathLike[str]) -> str:
    """The preset the study in ``out_dir`` was run with ("" for the full study)."""
    path = Path(out_dir) / PRESET_NAME
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""
