"""The report's figures of the outcomes (matplotlib, Agg): the verdicts as a forest plot, time
to the target accuracy and performance profiles.

Each function writes one PNG (atomically) and returns its path, or ``None`` when there is
nothing to show.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gradkit.studies._analysis import Analysis
from gradkit.studies._expand import format_point
from gradkit.studies._plots import _pyplot, arm_style, save_figure
from gradkit.studies._stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

__all__ = [
    "VERDICT_COLORS",
    "VerdictRow",
    "plot_performance_profile",
    "plot_time_to_target",
    "plot_verdicts",
    "target_rows",
    "verdict_rows",
]

VERDICT_COLORS = {REPRODUCED: "#009E73", NOT_REPRODUCED: "#D55E00", INCONCLUSIVE: "#7F7F7F"}
"""Okabe-Ito green and vermillion, and grey: told apart by colour-blind readers too."""


@dataclass(frozen=True)
class VerdictRow:
    """One claim on the forest plot: its paired difference (``> 0``: the arm is better) with
    the 95% interval, the margin of its test, and the smallest difference the design could
    have detected (``None`` when not computed)."""

    label: str
    metric: str
    outcome: str
    difference: float
    low: float
    high: float
    test: str = "superior"
    margin: float = 0.0
    detectable: float | None = None
    smallest_effect: float = 0.0


def verdict_rows(analysis: Analysis) -> list[VerdictRow]:
    """The claims of a study, for :func:`plot_verdicts`."""
    return [
        VerdictRow(
            label=claim.text,
            metric=claim.metric,
            outcome=v.outcome,
            difference=v.difference,
            low=v.low,
            high=v.high,
            test=claim.test,
            margin=claim.margin,
            detectable=v.detectable,
            smallest_effect=claim.smallest_effect,
        )
        for claim, v in analysis.verdicts
    ]


def plot_verdicts(rows: Sequence[VerdictRow], path: Path) -> Path | None:
    """A forest plot of the claims: one panel per metric (their differences share a unit),
    one line per claim with its mean paired difference and 95% interval, coloured by verdict.

    Shaded: the margin of the claim's test, ``(-m, m)`` for an equivalence test and ``[0, m]``
    for a superiority test (a dotted line at ``m``; ``m = 0`` is the zero line); hatched, a
    superiority claim's smallest effect of interest ``[m, m + delta]``. An inconclusive
    claim with a smallest detectable difference ``d`` gets a diamond at ``d`` (and at ``-d``
    for an equivalence test): an effect smaller than that could not have been told from none.
    """
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    metrics = list(dict.fromkeys(row.metric for row in rows))
    groups = [[row for row in rows if row.metric == metric] for metric in metrics]
    heights = [len(group) + 1.2 for group in groups]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(10, 0.45 * sum(heights) + 1.2),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
        constrained_layout=True,
    )
    for axis, metric, group in zip(axes[:, 0], metrics, groups, strict=True):
        for y, row in enumerate(group):
            color = VERDICT_COLORS.get(row.outcome, "#7F7F7F")
            span, edges = {
                "equivalent": ((-row.margin, row.margin), (-row.margin, row.margin)),
                "noninferior": ((-row.margin, 0.0), (-row.margin,)),
            }.get(row.test, ((0.0, row.margin), (row.margin,)))
            if row.margin > 0:
                axis.fill_betweenx([y - 0.4, y + 0.4], *span, color="#56B4E9", alpha=0.25, lw=0)
                for edge in edges:
                    axis.plot([edge] * 2, [y - 0.4, y + 0.4], ":", color="#0072B2", lw=1)
            if row.test == "superior" and row.smallest_effect > 0:
                axis.fill_betweenx(
                    [y - 0.4, y + 0.4],
                    row.margin,
                    row.margin + row.smallest_effect,
                    facecolor="none",
                    edgecolor="#0072B2",
                    hatch="///",
                    lw=0,
                )
            if math.isfinite(row.low) and math.isfinite(row.high):
                axis.plot([row.low, row.high], [y, y], color=color, lw=2.5, solid_capstyle="butt")
                axis.plot([row.low, row.high], [y, y], "|", color=color, markersize=10)
            if math.isfinite(row.difference):
                axis.plot(row.difference, y, "o", color=color, markersize=7)
            else:
                axis.annotate("no interval", (0, y), fontsize=7, color=color, va="center")
            if row.outcome == INCONCLUSIVE and row.detectable is not None:
                marks = {
                    "equivalent": [row.detectable, -row.detectable],
                    "noninferior": [-row.detectable],
                }.get(row.test, [row.detectable])
                axis.plot(marks, [y] * len(marks), "D", mfc="white", mec="black", markersize=6)
        axis.axvline(0.0, color="black", lw=0.8)
        axis.set_yticks(
            range(len(group)), [textwrap.fill(row.label, 48) for row in group], fontsize=7
        )
        axis.set_ylim(len(group) - 0.5, -0.7)
        axis.set_xlabel(f"paired difference in {metric} (> 0: the arm is better), 95% CI")
        axis.grid(alpha=0.3, axis="x")
    legend = [
        Line2D([], [], color=color, marker="o", lw=2.5, label=outcome)
        for outcome, color in VERDICT_COLORS.items()
    ]
    legend.append(Patch(color="#56B4E9", alpha=0.25, label="margin of the test"))
    if any(r.test == "superior" and r.smallest_effect > 0 for r in rows):
        legend.append(
            Patch(facecolor="none", edgecolor="#0072B2", hatch="///", label="smallest effect")
        )
    if any(r.outcome == INCONCLUSIVE and r.detectable is not None for r in rows):
        legend.append(
            Line2D([], [], ls="", marker="D", mfc="white", mec="black", label="detectable")
        )
    figure.legend(handles=legend, loc="outside lower center", ncol=len(legend), fontsize=8)
    return save_figure(figure, path)


@dataclass(frozen=True)
class TargetRow:
    """One cell's time to the target: mean and half-width of steps and seconds (a seed that
    never reached it counted at its run's length) and how many of its seeds reached it."""

    label: str
    steps: float
    steps_half: float
    seconds: float
    seconds_half: float
    reached: int
    seeds: int


def target_rows(analysis: Analysis) -> list[TargetRow]:
    """The rows of :func:`plot_time_to_target`, one per cell that has finished seeds."""
    rows = []
    for cell in analysis.cells:
        steps, steps_half, n = cell.summary("steps_to_target")
        seconds, seconds_half, _ = cell.summary("seconds_to_target")
        if n:
            missed = len(cell.values("target_missed"))
            label = f"{cell.arm} {format_point(cell.grid)}".strip()
            rows.append(TargetRow(label, steps, steps_half, seconds, seconds_half, n - missed, n))
    return rows


def plot_time_to_target(analysis: Analysis, path: Path) -> Path | None:
    """Steps and seconds to the target accuracy per cell (mean and 95% interval), with how
    many seeds reached it; a cell where some seed never reached it is hatched (its bar counts
    those seeds at their full length, a lower bound), one where none did is drawn hollow."""
    if analysis.spec.target_accuracy is None:
        return None
    rows = target_rows(analysis)
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(1, 2, figsize=(11, 0.38 * len(rows) + 2.0), constrained_layout=True)
    labels = [f"{row.label}  [{row.reached}/{row.seeds}]" for row in rows]
    blue = "#0072B2"
    for axis, unit in zip(axes, ("steps", "seconds"), strict=True):
        values = [getattr(row, unit) for row in rows]
        errors = [getattr(row, f"{unit}_half") for row in rows]
        errors = [0.0 if math.isnan(e) else e for e in errors]
        bars = axis.barh(labels, values, xerr=errors, capsize=3, color=blue, edgecolor=blue)
        for bar, row in zip(bars, rows, strict=True):
            if row.reached == 0:
                bar.set_facecolor("white")
                bar.set_hatch("///")
                axis.annotate(
                    "not reached",
                    (bar.get_width() / 2, bar.get_y() + bar.get_height() / 2),
                    ha="center",
                    va="center",
                    fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
                )
            elif row.reached < row.seeds:
                bar.set_hatch("///")
                bar.set_facecolor("#56B4E9")
        axis.set_xlabel(f"{unit} to test accuracy {analysis.spec.target_accuracy:g}")
        axis.set_xlim(left=0.0)  # a wide interval of a few seeds may not make time negative
        axis.invert_yaxis()
        axis.tick_params(axis="y", labelsize=7)
        axis.grid(alpha=0.3, axis="x")
    legend = [
        Patch(facecolor=blue, edgecolor=blue, label="every seed reached it"),
        Patch(
            facecolor="#56B4E9",
            edgecolor=blue,
            hatch="///",
            label="some seeds did not (counted at the run's length)",
        ),
        Patch(facecolor="white", edgecolor=blue, hatch="///", label="no seed reached it"),
    ]
    figure.legend(
        handles=legend,
        loc="outside lower center",
        ncol=3,
        fontsize=8,
        title="[k/n]: k of the n seeds reached the target",
        title_fontsize=8,
    )
    return save_figure(figure, path)


def plot_performance_profile(
    profile: Mapping[str, Sequence[float]], taus: Sequence[float], path: Path
) -> Path:
    """A performance profile (Dolan & Moré, 2002): for each arm, the fraction of workloads it
    finished within a factor ``tau`` of the fastest arm on that workload, against ``tau``.

    ``profile`` maps each arm to its fractions at ``taus`` (computed elsewhere); ``taus`` are
    increasing and at least 1. A step line per arm, the arms' looks those of every figure.
    """
    if not profile:
        raise ValueError("plot_performance_profile: profile is empty; expected at least one arm")
    if not taus or any(t < 1 for t in taus) or any(b <= a for a, b in itertools.pairwise(taus)):
        raise ValueError(
            f"plot_performance_profile: invalid taus={list(taus)!r}; expected increasing "
            "values >= 1"
        )
    for arm, fractions in profile.items():
        if len(fractions) != len(taus):
            raise ValueError(
                f"plot_performance_profile: arm {arm!r} has {len(fractions)} fractions for "
                f"{len(taus)} taus"
            )
        if any(not 0 <= f <= 1 for f in fractions):
            raise ValueError(
                f"plot_performance_profile: arm {arm!r} has fractions {list(fractions)!r}; "
                "expected values in [0, 1]"
            )
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.0), constrained_layout=True)
    for number, (arm, fractions) in enumerate(profile.items()):
        style = arm_style(number)
        axis.step(
            list(taus),
            list(fractions),
            where="post",
            label=arm,
            linewidth=1.6,
            markevery=max(1, len(taus) // 8),
            markersize=4,
            **style,
        )
    if taus[-1] / taus[0] > 10:
        axis.set_xscale("log")
    axis.set_xlim(taus[0], taus[-1])
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("tau: within this factor of the fastest arm")
    axis.set_ylabel("fraction of workloads")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return save_figure(figure, path)
