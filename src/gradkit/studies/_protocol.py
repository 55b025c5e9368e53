"""The tuning protocol's phases: tune, select, widen at an edge, then rerun on report seeds.

For a study with ``[tuning]`` (:mod:`gradkit.studies._tuning_spec`), each *cell* (an arm at a
grid point) goes through:

1. **tune**: every trial of its search space on every tuning seed;
2. **select**: the trial with the best mean ``select_metric`` (a validation metric) over the
   tuning seeds; a failed or diverged run scores worst;
3. **widen**: if the selected value of a log-grid axis is an end of its range, the range grows
   by ``widen`` steps of its ratio beyond that end and the new trials are tuned (back to 1),
   at most ``max_widenings`` times; still at an end after that, the cell is *not tuned: best
   at the edge* (the report says so, in red);
4. **report**: the selected setting on every report seed, paired by seed across arms (same
   initialisation and data order for the same seed). Only these runs are reported on test.

Everything is a pure function of the spec and the store's results: a run's id is the hash of
its config, so a resumed study recomputes the same phases and runs only what is missing.
:func:`current_plans` is what the runner executes, round after round, until it adds nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradkit.studies._definitions import Arm, SearchAxis, StudySpec
from gradkit.studies._expand import RunPlan, expand
from gradkit.studies._store import RunRecord

__all__ = [
    "EDGE",
    "TUNED",
    "TUNING",
    "CellTuning",
    "current_plans",
    "select",
    "tune_cells",
    "widen",
]

TUNED = "tuned"
EDGE = "not tuned: best at the edge"
TUNING = "tuning"


@dataclass
class CellTuning:
    """Where one cell stands in the protocol.

    Attributes:
        axes: the search space after ``widenings`` widenings.
        scores: ``[(trial, mean select_metric over the tuning seeds)]`` of every trial.
        selected: the best trial (empty while tuning runs are missing).
        edges: the log-grid keys whose selected value is an end of the (final) range.
        tuning_plans: every tuning run of the current space; ``report_plans``: the selected
            setting on the report seeds (empty until the selection is final).
    """

    arm: str
    grid: dict[str, Any]
    axes: tuple[SearchAxis, ...]
    widenings: int = 0
    status: str = TUNING
    scores: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    selected: dict[str, Any] = field(default_factory=dict)
    edges: tuple[str, ...] = ()
    tuning_plans: list[RunPlan] = field(default_factory=list)
    report_plans: list[RunPlan] = field(default_factory=list)

    @property
    def trials(self) -> int:
        """The trials tuned so far (the budget, plus those of the widenings)."""
        return math.prod(len(axis.values) for axis in self.axes)


def widen(axis: SearchAxis, value: Any, steps: int) -> SearchAxis:
    """``axis`` grown by ``steps`` ratios beyond the end that ``value`` is (unchanged if
    ``value`` is inside, or the axis is a list of choices)."""
    if not axis.log or value not in (axis.values[0], axis.values[-1]):
        return axis
    ratio = axis.ratio

    def rounded(number: float) -> Any:
        return round(number) if axis.integer else float(f"{number:.6g}")

    if value == axis.values[0]:
        below = [rounded(float(axis.values[0]) / ratio**k) for k in range(steps, 0, -1)]
        values = (*below, *axis.values)
    else:
        above = [rounded(float(axis.values[-1]) * ratio**k) for k in range(1, steps + 1)]
        values = (*axis.values, *above)
    if axis.integer:  # an integer grid cannot go below 1 nor repeat a value
        values = tuple(dict.fromkeys(v for v in values if v >= 1))
    return dataclasses.replace(axis, values=values)


def _score(value: Any, higher: bool) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return -math.inf  # a diverged, failed or missing run is the worst score
    return float(value) if higher else -float(value)


def select(
    scores: Sequence[tuple[Mapping[str, Any], Sequence[Any]]], *, higher_is_better: bool
) -> tuple[dict[str, Any], float]:
    """The trial with the best mean score, and that mean (in the metric's own sign).

    ``scores`` is ``[(trial, [metric value per tuning seed])]``; the first of equal trials wins.
    """
    best: tuple[float, dict[str, Any]] | None = None
    for trial, values in scores:
        signed = [_score(v, higher_is_better) for v in values]
        mean = sum(signed) / len(signed) if signed else -math.inf
        if best is None or mean > best[0]:
            best = (mean, dict(trial))
    if best is None:
        raise ValueError("select: no trials")
    return best[1], best[0] if higher_is_better else -best[0]


def _trials(axes: Sequence[SearchAxis]) -> list[dict[str, Any]]:
    return [
        dict(zip((a.key for a in axes), values, strict=True))
        for values in itertools.product(*(a.values for a in axes))
    ]


def _cell_plans(
    spec: StudySpec,
    arm: Arm,
    grid: Mapping[str, Any],
    sweep: Mapping[str, tuple[Any, ...]],
    seeds: tuple[int, ...],
) -> list[RunPlan]:
    """The runs of one arm at one grid point, over ``sweep`` and ``seeds``."""
    one = dataclasses.replace(
        spec,
        arms=(dataclasses.replace(arm, sweep=dict(sweep)),),
        grid={key: (value,) for key, value in grid.items()},
        seeds=seeds,
        tuning=None,
    )
    return expand(one)


def tune_cells(spec: StudySpec, records: Mapping[str, RunRecord]) -> list[CellTuning]:
    """Every cell's place in the protocol, given the store's ``records`` by run id."""
    tuning = spec.tuning
    if tuning is None:
        raise ValueError(f"tune_cells: study {spec.name!r} has no [tuning]")
    higher = "loss" not in spec.select_metric
    grid_points = [
        dict(zip(spec.grid, values, strict=True))
        for values in itertools.product(*spec.grid.values())
    ]
    cells = []
    for arm in spec.arms:
        for grid in grid_points:
            cell = CellTuning(arm.name, grid, arm.search)
            cells.append(cell)
            while True:
                sweep = {axis.key: axis.values for axis in cell.axes}
                cell.tuning_plans = _cell_plans(spec, arm, grid, sweep, tuning.seeds)
                results = {p.run_id: records.get(p.run_id) for p in cell.tuning_plans}
                if any(r is None or r.status == "running" for r in results.values()):
                    cell.status, cell.scores, cell.selected = TUNING, [], {}
                    break
                by_trial: dict[str, tuple[dict[str, Any], list[Any]]] = {}
                for plan in cell.tuning_plans:
                    record = results[plan.run_id]
                    value = record.metrics.get(spec.select_metric) if record else None
                    trial = by_trial.setdefault(repr(sorted(plan.sweep.items())), (plan.sweep, []))
                    trial[1].append(value if record and record.status == "done" else None)
                scored = list(by_trial.values())
                cell.selected, _ = select(scored, higher_is_better=higher)
                cell.scores = [
                    (dict(t), select([(t, v)], higher_is_better=higher)[1]) for t, v in scored
                ]
                edges = tuple(
                    axis.key
                    for axis in cell.axes
                    if axis.log and cell.selected[axis.key] in (axis.values[0], axis.values[-1])
                )
                if not edges:
                    cell.status = TUNED
                    break
                if cell.widenings >= tuning.max_widenings:
                    cell.status, cell.edges = EDGE, edges
                    break
                cell.axes = tuple(
                    widen(axis, cell.selected[axis.key], tuning.widen) for axis in cell.axes
                )
                cell.widenings += 1
            if cell.status != TUNING:
                chosen = {key: (value,) for key, value in cell.selected.items()}
                cell.report_plans = _cell_plans(spec, arm, grid, chosen, spec.seeds)
    return cells


def current_plans(spec: StudySpec, records: Mapping[str, RunRecord]) -> list[RunPlan]:
    """Every run the protocol asks for now: all tuning runs known so far, and the report runs
    of the cells whose selection is final. Without ``[tuning]``: :func:`expand`."""
    if spec.tuning is None:
        return expand(spec)
    plans: dict[str, RunPlan] = {}
    for cell in tune_cells(spec, records):
        for plan in (*cell.tuning_plans, *cell.report_plans):
            plans.setdefault(plan.run_id, plan)
    return list(plans.values())
