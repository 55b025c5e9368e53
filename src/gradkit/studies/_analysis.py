"""From the store to the numbers of a report: cells, best sweep points, curves, verdicts.

A *cell* is an arm at one grid point. Within a cell, each sweep point is scored by the mean of
the study's ``select_metric`` (a validation metric) over its finished seeds, and the best point
is the cell's result: its metrics, per seed, are what the table, the curves and the claims use.
The test split never takes part in the selection.

Derived per-run metrics: ``seconds`` (training time), ``steps`` (optimizer steps);
``steps_to_target`` and
``seconds_to_target``, the first evaluation at which ``val_accuracy`` (``test_accuracy`` in a
study without a validation split) reached the study's ``target_accuracy`` (a run that never
reached it counts at its full length: censored, and ``target_missed`` is 1).
With a target, ``Analysis.performance`` is AlgoPerf's performance profile
(:func:`gradkit.studies.performance_profile`) with each grid point a workload: an arm's time
on a workload is the median over its seeds of the steps (and seconds) to the target, ``inf``
for a seed that missed it.
Profiles (the per-block signal propagation of each selected run) and interpolations (the
curve between the selected runs of two arms, per seed, see :mod:`gradkit.studies._interpolation`)
are gathered for the report's plots and tables.
The claim metric ``good_region`` is, per seed, the fraction of an arm's sweep points whose
``select_metric`` is within 0.01 of the best value of any arm at that seed and grid point
(how wide the good region of hyperparameters is).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gradkit.studies._definitions import Claim, Interpolation, StudySpec
from gradkit.studies._expand import format_point
from gradkit.studies._performance import performance_profile
from gradkit.studies._protocol import CellTuning, current_plans, tune_cells
from gradkit.studies._stats import Verdict, mean_ci, verdict
from gradkit.studies._store import RunRecord, Store

__all__ = [
    "GOOD_REGION_TOLERANCE",
    "Analysis",
    "Cell",
    "InterpolationResult",
    "analyze",
    "key_of",
]

GOOD_REGION_TOLERANCE = 0.01
"""How close to the best a sweep point's validation metric must be to count as good."""


def key_of(point: Mapping[str, Any]) -> str:
    """A hashable, order-independent text for a grid or sweep point."""
    return repr(sorted(point.items()))


@dataclass
class Cell:
    """An arm at one grid point, with its best sweep point's runs.

    Attributes:
        runs: the finished runs at the selected sweep point, by seed.
        sweep_scores: ``[(sweep point, mean select_metric, seeds)]`` of every sweep point.
        failed: the failed runs of this cell (any sweep point), with their errors.
        unfinished: runs of this cell the store has not finished.
        tuning: in a tuned study, the cell's protocol (status, trials, widenings, edges);
            ``sweep_runs`` then holds the tuning runs and ``runs`` the report runs only.
    """

    arm: str
    grid: dict[str, Any]
    selected: dict[str, Any] = field(default_factory=dict)
    runs: dict[int, RunRecord] = field(default_factory=dict)
    sweep_scores: list[tuple[dict[str, Any], float, int]] = field(default_factory=list)
    sweep_runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    failed: list[RunRecord] = field(default_factory=list)
    unfinished: int = 0
    tuning: CellTuning | None = None
    report_runs: dict[str, list[RunRecord]] = field(default_factory=dict)

    def values(self, metric: str) -> dict[int, float]:
        """``{seed: value}`` of ``metric`` at the selected sweep point."""
        return {
            seed: float(run.metrics[metric])
            for seed, run in self.runs.items()
            if isinstance(run.metrics.get(metric), (int, float))
        }

    def summary(self, metric: str) -> tuple[float, float, int]:
        """``(mean, 95% half-width, seeds)`` of ``metric`` at the selected sweep point."""
        values = list(self.values(metric).values())
        mean, half = mean_ci(values)
        return mean, half, len(values)


@dataclass
class InterpolationResult:
    """One interpolation at one grid point, between the two arms' selected runs.

    Attributes:
        curves: ``{seed: {"alpha": [...], "train_loss": [...], ...}}`` of the computed pairs.
        failed: ``{seed: error}`` of the pairs whose interpolation failed.
        missing: seeds with both runs finished but no interpolation stored yet.
    """

    interpolation: Interpolation
    grid: dict[str, Any]
    curves: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


@dataclass
class Analysis:
    """Everything a report shows, computed from a spec and its store.

    ``profiles`` is ``{(arm, grid key, profile name): {seed: values by block}}`` at the
    selected sweep points.
    """

    spec: StudySpec
    cells: list[Cell]
    verdicts: list[tuple[Claim, Verdict]]
    curves: dict[tuple[str, str, str], dict[int, list[tuple[int, float]]]]
    total_runs: int
    finished_runs: int
    profiles: dict[tuple[str, str, str], dict[int, list[float]]] = field(default_factory=dict)
    interpolations: list[InterpolationResult] = field(default_factory=list)
    performance: dict[str, Any] = field(default_factory=dict)

    def cell(self, arm: str, grid: Mapping[str, Any]) -> Cell:
        """The cell of ``arm`` at the grid point that matches ``grid`` on its keys."""
        matches = [
            c for c in self.cells if c.arm == arm and all(c.grid[k] == v for k, v in grid.items())
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} cells of arm {arm!r} match {dict(grid)!r}")
        return matches[0]


def _score(value: Any, higher: bool) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return -math.inf  # a diverged or missing run is the worst score
    return float(value) if higher else -float(value)


def _add_derived(run: RunRecord, store: Store, target: float | None) -> None:
    run.metrics.setdefault("seconds", run.seconds)
    run.metrics.setdefault("steps", run.steps)
    if target is None:
        return
    # the target is a validation one when the run has a validation split (the protocol's
    # time-to-target), else on test
    accuracy = store.curve(run.run_id, "eval", "val_accuracy") or store.curve(
        run.run_id, "eval", "test_accuracy"
    )
    times = dict(store.curve(run.run_id, "eval", "time"))
    reached = [(step, times.get(step)) for step, value in accuracy if value >= target]
    if reached:
        run.metrics["steps_to_target"] = reached[0][0]
        run.metrics["seconds_to_target"] = reached[0][1]
    else:  # censored at the run's length
        run.metrics["steps_to_target"] = run.steps
        run.metrics["seconds_to_target"] = run.seconds
        run.metrics["target_missed"] = 1


def analyze(spec: StudySpec, store: Store) -> Analysis:
    """Select, aggregate and decide: the numbers of the report of ``spec``."""
    records = {run.run_id: run for run in store.runs()}
    plans = current_plans(spec, records)
    protocol = (
        {(c.arm, key_of(c.grid)): c for c in tune_cells(spec, records)} if spec.tuning else {}
    )
    tuning_seeds = set(spec.tuning.seeds) if spec.tuning else set()
    higher = "loss" not in spec.select_metric
    cells: dict[tuple[str, str], Cell] = {}
    finished = 0
    for plan in plans:
        key = (plan.arm, key_of(plan.grid))
        cell = cells.setdefault(key, Cell(plan.arm, dict(plan.grid), tuning=protocol.get(key)))
        run = records.get(plan.run_id)
        if run is None or run.status == "running":
            cell.unfinished += 1
        elif run.status == "failed":
            cell.failed.append(run)
        else:
            finished += 1
            _add_derived(run, store, spec.target_accuracy)
            if spec.tuning is not None and plan.seed not in tuning_seeds:
                cell.report_runs.setdefault(key_of(plan.sweep), []).append(run)
            else:
                cell.sweep_runs.setdefault(key_of(plan.sweep), []).append(run)
    for cell in cells.values():
        if cell.tuning is not None:
            seeds = len(spec.tuning.seeds) if spec.tuning else 0
            cell.sweep_scores = [(point, score, seeds) for point, score in cell.tuning.scores]
            cell.selected = dict(cell.tuning.selected)
            selected = cell.report_runs.get(key_of(cell.selected), [])
            cell.runs = {r.seed: r for r in selected}
            continue
        arm = spec.arm(cell.arm)
        best: tuple[float, str] | None = None
        for point in _sweep_points(arm.sweep):
            runs = cell.sweep_runs.get(key_of(point), [])
            if not runs:
                continue
            scores = [_score(r.metrics.get(spec.select_metric), higher) for r in runs]
            mean = sum(scores) / len(scores)
            signed = mean if higher else -mean
            cell.sweep_scores.append((point, signed, len(runs)))
            if best is None or mean > best[0]:
                best = (mean, key_of(point))
                cell.selected = point
        if best is not None:
            cell.runs = {r.seed: r for r in cell.sweep_runs[best[1]]}
    ordered = list(cells.values())
    analysis = Analysis(spec, ordered, [], {}, len(plans), finished)
    analysis.curves = _curves(ordered, store)
    analysis.profiles = _profiles(ordered, store) if "signal_propagation" in spec.measures else {}
    analysis.interpolations = _interpolations(spec, ordered, store)
    analysis.verdicts = [(claim, _decide(claim, analysis)) for claim in spec.claims]
    if spec.target_accuracy is not None:
        analysis.performance = _performance(ordered)
    return analysis


PROFILE_TAUS = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)
"""The factors of the fastest at which the performance profile is read."""


def _performance(cells: list[Cell]) -> dict[str, Any]:
    """Per grid point (workload) and arm the median time to target, and the profiles."""
    result: dict[str, Any] = {"taus": list(PROFILE_TAUS)}
    for unit in ("steps", "seconds"):
        times: dict[str, dict[str, float]] = {}
        for cell in cells:
            values = [
                math.inf
                if run.metrics.get("target_missed")
                else float(run.metrics.get(f"{unit}_to_target") or math.inf)
                for run in cell.runs.values()
            ]
            workload = format_point(cell.grid) or "default"
            times.setdefault(workload, {})[cell.arm] = (
                statistics.median(values) if values else math.inf
            )
        if not times or any(len(t) != len(next(iter(times.values()))) for t in times.values()):
            continue
        # a zero time (reached at the first evaluation) cannot be a ratio's denominator
        times = {w: {a: max(t, 1e-9) for a, t in by.items()} for w, by in times.items()}
        result[unit] = {"times": times, "profile": performance_profile(times, PROFILE_TAUS)}
    return result


def _sweep_points(axes: Mapping[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    import itertools

    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def _curves(
    cells: list[Cell], store: Store
) -> dict[tuple[str, str, str], dict[int, list[tuple[int, float]]]]:
    """``{(arm, grid key, curve name): {seed: [(step, value)]}}`` at the selected points."""
    curves: dict[tuple[str, str, str], dict[int, list[tuple[int, float]]]] = defaultdict(dict)
    for cell in cells:
        for seed, run in cell.runs.items():
            for kind, name in (
                ("eval", "test_accuracy"),
                ("eval", "val_accuracy"),
                ("step", "loss"),
            ):
                points = store.curve(run.run_id, kind, name)
                if points:
                    curves[(cell.arm, key_of(cell.grid), name)][seed] = points
    return dict(curves)


def _profiles(
    cells: list[Cell], store: Store
) -> dict[tuple[str, str, str], dict[int, list[float]]]:
    """The signal propagation profiles of the selected runs."""
    from gradkit.studies._measures import SIGNAL_PROFILES

    profiles: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(dict)
    for cell in cells:
        for seed, run in cell.runs.items():
            for name in SIGNAL_PROFILES:
                values = store.profile(run.run_id, name)
                if values:
                    profiles[(cell.arm, key_of(cell.grid), name)][seed] = values
    return dict(profiles)


def _interpolations(spec: StudySpec, cells: list[Cell], store: Store) -> list[InterpolationResult]:
    """Per interpolation and grid point, the stored curves between the selected runs."""
    if not spec.interpolations:
        return []
    stored = {(r.name, r.from_run, r.to_run): r for r in store.interpolations()}
    results = []
    for interpolation in spec.interpolations:
        for start in (c for c in cells if c.arm == interpolation.from_arm):
            end = next(c for c in cells if c.arm == interpolation.to_arm and c.grid == start.grid)
            result = InterpolationResult(interpolation, dict(start.grid))
            for seed in sorted(set(start.runs) & set(end.runs)):
                key = (interpolation.name, start.runs[seed].run_id, end.runs[seed].run_id)
                record = stored.get(key)
                if record is None or tuple(record.alphas) != interpolation.alphas:
                    result.missing.append(seed)
                elif record.status == "failed":
                    result.failed[seed] = (record.error or "").splitlines()[0]
                else:
                    result.curves[seed] = record.curve
            results.append(result)
    return results


def _good_region(cell: Cell, others: list[Cell], spec: StudySpec) -> dict[int, float]:
    """Per seed: the fraction of the cell's sweep points within tolerance of the best of all."""
    higher = "loss" not in spec.select_metric
    best: dict[int, float] = {}
    for other in others:
        for runs in other.sweep_runs.values():
            for run in runs:
                score = _score(run.metrics.get(spec.select_metric), higher)
                best[run.seed] = max(best.get(run.seed, -math.inf), score)
    trials = cell.tuning.trials if cell.tuning else len(_sweep_points(spec.arm(cell.arm).sweep))
    points = max(1, trials)
    good: dict[int, float] = {}
    for seed, top in best.items():
        count = sum(
            1
            for runs in cell.sweep_runs.values()
            for run in runs
            if run.seed == seed
            and _score(run.metrics.get(spec.select_metric), higher) >= top - GOOD_REGION_TOLERANCE
        )
        good[seed] = count / points
    return good


def _decide(claim: Claim, analysis: Analysis) -> Verdict:
    arm = analysis.cell(claim.arm, claim.at)
    baseline = analysis.cell(claim.baseline, claim.at)
    if claim.metric == "good_region":
        same_point = [c for c in analysis.cells if c.grid == arm.grid]
        ours, theirs = (_good_region(c, same_point, analysis.spec) for c in (arm, baseline))
    else:
        ours = arm.values(claim.metric)
        theirs = baseline.values(claim.baseline_metric or claim.metric)
    seeds = sorted(set(ours) & set(theirs))
    return verdict(
        [ours[s] for s in seeds],
        [theirs[s] for s in seeds],
        higher_is_better=claim.higher_is_better,
        test=claim.test,
        margin=claim.margin,
        smallest_effect=claim.smallest_effect,
    )
