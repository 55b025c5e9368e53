"""The report's tables of the tuning protocol and of time-to-target across workloads.

Kept apart from :mod:`gradkit.studies._report` (which lays the report out) so the numbers of
:mod:`gradkit.studies._protocol` and :func:`gradkit.studies.performance_profile` have one home;
a plot of the profile reads the same ``Analysis.performance``.
"""

from __future__ import annotations

import math
from typing import Any

from gradkit.studies._analysis import Analysis
from gradkit.studies._expand import format_point

__all__ = ["json_performance", "performance_tables", "tuning_table"]

_RED = "🟥 {}"  # red in Markdown, HTML and a terminal alike


def tuning_table(analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    """Per cell: the protocol's status, trials, widenings and the searched ranges."""
    spec = analysis.spec
    rows = []
    for cell in analysis.cells:
        tuning = cell.tuning
        if tuning is None:
            continue
        status = tuning.status
        if status != "tuned":
            edges = f" ({', '.join(tuning.edges)})" if tuning.edges else ""
            status = _RED.format(status + edges) if tuning.edges else status
        ranges = "; ".join(
            f"{axis.key.rsplit('.', 1)[-1]} "
            + (
                f"{axis.values[0]:g}..{axis.values[-1]:g} ({len(axis.values)} log points)"
                if axis.log
                else "{" + ", ".join(map(str, axis.values)) + "}"
            )
            for axis in tuning.axes
        )
        rows.append(
            [
                cell.arm,
                *[str(cell.grid[key]) for key in spec.grid],
                status,
                format_point(tuning.selected) if tuning.selected else "—",
                str(tuning.trials),
                str(tuning.widenings),
                ranges,
            ]
        )
    header = [
        "arm",
        *[key.rsplit(".", 1)[-1] for key in spec.grid],
        "status",
        "selected",
        "trials",
        "widenings",
        "searched",
    ]
    return header, rows


def performance_tables(analysis: Analysis) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The median time to target per workload, and the performance profile (AlgoPerf)."""
    performance = analysis.performance
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    taus = performance["taus"]
    for unit in ("steps", "seconds"):
        if unit not in performance:
            continue
        times = performance[unit]["times"]
        workloads = list(times)
        arms = sorted(performance[unit]["profile"])
        tables[f"Median {unit} to the target"] = (
            ["arm", *workloads],
            [[arm, *[_time(times[w][arm]) for w in workloads]] for arm in arms],
        )
        if len(workloads) > 1:
            tables[
                f"Performance profile ({unit}): fraction of workloads within tau of the fastest"
            ] = (
                ["arm", *[f"tau={tau:g}" for tau in taus]],
                [[arm, *[f"{f:.2f}" for f in performance[unit]["profile"][arm]]] for arm in arms],
            )
    return tables


def _time(value: float) -> str:
    return "not reached" if not math.isfinite(value) else f"{value:.4g}"


def json_performance(performance: dict[str, Any]) -> dict[str, Any]:
    """The performance numbers with ``inf`` (target not reached) as ``null``."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value if not isinstance(value, float) or math.isfinite(value) else None

    return clean(performance)
