"""The study store: one SQLite file, one row per run, its curves, profiles and final weights.

The study's driver writes it (:mod:`gradkit.studies._runner`) while ``gradkit study report``
may read it; several processes may also write to one store at once (a driver, and a user's own
script through this class). Each connection uses write-ahead logging
(readers never block the writer), waits up to ``timeout`` seconds for the write lock instead of
failing, and makes each write one ``BEGIN IMMEDIATE`` transaction: a run's result and its
curves land together or not at all, so a crash leaves a run either finished or unfinished,
never half-written.

Tables::

    runs(run_id PRIMARY KEY, study, arm, grid, sweep, seed, config, status, metrics, error,
         started, finished, seconds, steps, worker)
    curves(run_id, kind, step, name, value)    -- kind: 'step' (training) or 'eval'
    profiles(run_id, name, position, value)    -- a measure's per-block profile at one time
    weights(run_id, state)                     -- the final state_dict (torch.save bytes)
    interpolations(name, from_run, to_run, status, alphas, curve, error, seconds, finished)

A run's curves, profiles and weights are written in the same transaction as its result, and
removed when it starts again (with the interpolations that used it). Weights are kept only for
the runs that an interpolation needs (:mod:`gradkit.studies._interpolation`). An interpolation's
``curve`` is JSON: ``{"alpha": [...], "train_loss": [...], "train_accuracy": [...],
"test_loss": [...], "test_accuracy": [...]}``; a failed one has ``error`` and no curve.

``status`` is ``running`` (started and not finished: its process was killed, or is still
working), ``done`` (always with curves: :meth:`Store.finish` refuses a run without any) or
``failed`` (``error`` holds the exception and the end of its traceback).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradkit.studies._expand import RunPlan

__all__ = ["InterpolationRecord", "RunRecord", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    arm TEXT NOT NULL,
    grid TEXT NOT NULL,
    sweep TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    metrics TEXT,
    error TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    steps INTEGER,
    worker TEXT
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('step', 'eval')),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS curves_by_run ON curves(run_id, kind, name, step);
CREATE TABLE IF NOT EXISTS profiles (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, name, position)
);
CREATE TABLE IF NOT EXISTS weights (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS interpolations (
    name TEXT NOT NULL,
    from_run TEXT NOT NULL,
    to_run TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    alphas TEXT NOT NULL,
    curve TEXT,
    error TEXT,
    seconds REAL,
    finished REAL,
    PRIMARY KEY (name, from_run, to_run)
);
"""


def _number(value: Any) -> Any:
    # JSON has no NaN/inf: store them as strings and read them back as floats.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _unnumber(value: Any) -> Any:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _real(value: float) -> float | None:
    # SQLite stores NaN as NULL; say so explicitly.
    return None if value is None or math.isnan(value) else float(value)


def _forget_results(connection: sqlite3.Connection, run_id: str) -> None:
    """Remove what a run recorded before, and the interpolations that used it."""
    for table in ("curves", "profiles", "weights"):
        connection.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    connection.execute(
        "DELETE FROM interpolations WHERE from_run = ? OR to_run = ?", (run_id, run_id)
    )


@dataclass(frozen=True)
class InterpolationRecord:
    """One row of ``interpolations``, decoded (``curve`` is empty for a failed one)."""

    name: str
    from_run: str
    to_run: str
    status: str
    alphas: tuple[float, ...]
    curve: dict[str, list[float]]
    error: str | None
    seconds: float | None


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``, decoded."""

    run_id: str
    study: str
    arm: str
    grid: dict[str, Any]
    sweep: dict[str, Any]
    seed: int
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    error: str | None
    started: float | None
    finished: float | None
    seconds: float | None
    steps: int | None


class Store:
    """A study's SQLite file; open one per process (connections are not shared).

    Example:
        >>> store = Store("out/study.db")
        >>> [r.metrics["test_accuracy"] for r in store.runs(status="done")]
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are exactly the BEGIN ... COMMIT written here.
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        self._connection.execute("PRAGMA foreign_keys = ON")
        with self._transaction() as connection:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at its start (waits up to timeout)."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # ---------------------------------------------------------------- writes

    def start(self, plan: RunPlan, study: str, *, worker: str | None = None) -> None:
        """Record that ``plan`` started, or was handed to an executor (replacing an unfinished
        or failed attempt); ``worker`` names where it trains (``host:pid``) when known."""
        with self._transaction() as connection:
            _forget_results(connection, plan.run_id)
            connection.execute(
                "INSERT OR REPLACE INTO runs (run_id, study, arm, grid, sweep, seed, config, "
                "status, started, worker) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    plan.run_id,
                    study,
                    plan.arm,
                    json.dumps(dict(plan.grid)),
                    json.dumps(dict(plan.sweep)),
                    plan.seed,
                    json.dumps(plan.config),
                    time.time(),
                    worker,
                ),
            )

    def finish(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, Any],
        seconds: float,
        steps: int,
        curves: Iterable[tuple[str, int, str, float | None]] = (),
        profiles: Mapping[str, Sequence[float]] | None = None,
        weights: bytes | None = None,
        worker: str | None = None,
    ) -> None:
        """Record a finished run: its metrics, timings, curves, profiles and weights (and the
        ``worker`` that trained it), in one transaction.

        ``curves`` holds ``(kind, step, name, value)`` rows, kind ``"step"`` or ``"eval"``;
        ``profiles`` maps a name to its values by position (e.g. per residual block);
        ``weights`` is the final ``state_dict`` as written by ``torch.save``.

        Raises:
            ValueError: ``curves`` is empty (a run is never ``done`` without its curves; the
                caller records it failed instead), and nothing is written.
        """
        curves = list(curves)
        if not curves:
            raise ValueError(
                f"store: run {run_id!r} has no curves (its metrics files were missing or empty), "
                "so it is not recorded as done"
            )
        metrics_text = json.dumps({k: _number(v) for k, v in metrics.items()})
        with self._transaction() as connection:
            _forget_results(connection, run_id)
            connection.executemany(
                "INSERT INTO curves (run_id, kind, step, name, value) VALUES (?, ?, ?, ?, ?)",
                ((run_id, kind, step, name, value) for kind, step, name, value in curves),
            )
            connection.executemany(
                "INSERT INTO profiles (run_id, name, position, value) VALUES (?, ?, ?, ?)",
                (
                    (run_id, name, position, _real(value))
                    for name, values in (profiles or {}).items()
                    for position, value in enumerate(values)
                ),
            )
            if weights is not None:
                connection.execute(
                    "INSERT INTO weights (run_id, state) VALUES (?, ?)", (run_id, weights)
                )
            cursor = connection.execute(
                "UPDATE runs SET status = 'done', metrics = ?, error = NULL, finished = ?, "
                "seconds = ?, steps = ?, worker = COALESCE(?, worker) WHERE run_id = ?",
                (metrics_text, time.time(), seconds, steps, worker, run_id),
            )
            if cursor.rowcount != 1:
                raise KeyError(f"store: run {run_id!r} was never started")

    def fail(
        self, run_id: str, error: str, *, seconds: float | None = None, worker: str | None = None
    ) -> None:
        """Record that a run failed with ``error`` (on ``worker``, when known)."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished = ?, seconds = ?, "
                "worker = COALESCE(?, worker) WHERE run_id = ?",
                (error, time.time(), seconds, worker, run_id),
            )

    def record_interpolation(
        self,
        name: str,
        from_run: str,
        to_run: str,
        *,
        alphas: Sequence[float],
        curve: Mapping[str, Sequence[float]] | None = None,
        error: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Record one interpolation between two runs: its ``curve`` or, if it failed, ``error``
        (replacing an earlier attempt)."""
        if (curve is None) == (error is None):
            raise ValueError("record_interpolation: give exactly one of curve and error")
        curve_text = None
        if curve is not None:
            curve_text = json.dumps({k: [_number(float(v)) for v in vs] for k, vs in curve.items()})
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO interpolations (name, from_run, to_run, status, alphas, "
                "curve, error, seconds, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    from_run,
                    to_run,
                    "failed" if error is not None else "done",
                    json.dumps([float(a) for a in alphas]),
                    curve_text,
                    error,
                    seconds,
                    time.time(),
                ),
            )

    # ---------------------------------------------------------------- reads

    def statuses(self) -> dict[str, str]:
        """``{run_id: status}`` of every stored run."""
        return dict(self._connection.execute("SELECT run_id, status FROM runs").fetchall())

    def runs(self, *, status: str | None = None) -> list[RunRecord]:
        """The stored runs (all, or those with ``status``), in insertion order."""
        query = (
            "SELECT run_id, study, arm, grid, sweep, seed, config, status, metrics, error, "
            "started, finished, seconds, steps FROM runs"
        )
        rows = (
            self._connection.execute(query + " WHERE status = ? ORDER BY rowid", (status,))
            if status is not None
            else self._connection.execute(query + " ORDER BY rowid")
        ).fetchall()
        return [
            RunRecord(
                run_id=row[0],
                study=row[1],
                arm=row[2],
                grid=json.loads(row[3]),
                sweep=json.loads(row[4]),
                seed=row[5],
                config=json.loads(row[6]),
                status=row[7],
                metrics={k: _unnumber(v) for k, v in json.loads(row[8] or "{}").items()},
                error=row[9],
                started=row[10],
                finished=row[11],
                seconds=row[12],
                steps=row[13],
            )
            for row in rows
        ]

    def profile(self, run_id: str, name: str) -> list[float]:
        """The values of one profile of one run, by position (empty if it has none)."""
        rows = self._connection.execute(
            "SELECT value FROM profiles WHERE run_id = ? AND name = ? ORDER BY position",
            (run_id, name),
        ).fetchall()
        return [float("nan") if value is None else float(value) for (value,) in rows]

    def with_weights(self) -> set[str]:
        """The ids of the runs whose final weights are stored."""
        return {row[0] for row in self._connection.execute("SELECT run_id FROM weights")}

    def weights(self, run_id: str) -> bytes | None:
        """The stored final ``state_dict`` of a run (``torch.save`` bytes), or ``None``."""
        row = self._connection.execute(
            "SELECT state FROM weights WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def interpolations(self) -> list[InterpolationRecord]:
        """Every stored interpolation, in the order they were recorded."""
        rows = self._connection.execute(
            "SELECT name, from_run, to_run, status, alphas, curve, error, seconds "
            "FROM interpolations ORDER BY rowid"
        ).fetchall()
        return [
            InterpolationRecord(
                name=row[0],
                from_run=row[1],
                to_run=row[2],
                status=row[3],
                alphas=tuple(json.loads(row[4])),
                curve={
                    key: [float(_unnumber(v)) for v in values]
                    for key, values in json.loads(row[5] or "{}").items()
                },
                error=row[6],
                seconds=row[7],
            )
            for row in rows
        ]

    def curve(self, run_id: str, kind: str, name: str) -> list[tuple[int, float]]:
        """``[(step, value), ...]`` of one curve of one run, by step."""
        rows = self._connection.execute(
            "SELECT step, value FROM curves WHERE run_id = ? AND kind = ? AND name = ? "
            "ORDER BY step",
            (run_id, kind, name),
        ).fetchall()
        return [
            (int(step), float("nan") if value is None else float(value)) for step, value in rows
        ]
