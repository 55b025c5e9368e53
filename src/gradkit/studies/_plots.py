"""The report's figures (matplotlib, Agg) of the runs: curves with bands, heatmaps and axis
plots, and what they share (the look of each arm, atomic PNG writing). The figures of the
outcomes (verdicts, time to target, performance profiles) are in
:mod:`gradkit.studies._outcome_plots`; those of the measures (interpolations, signal
propagation) in :mod:`gradkit.studies._measure_plots`.

Each function writes one PNG (atomically) and returns its path, or ``None`` when the study has
nothing to show in it. Bands are the 95% t interval over seeds at each step (none for a single
seed). Every arm keeps one look in every figure (:func:`arm_style`): a colour of the Okabe-Ito
palette, which colour-blind readers can tell apart, combined with a line style, so that no two
of up to 28 arms look alike (a marker tells further arms apart).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.studies._analysis import Analysis, Cell, key_of
from gradkit.studies._expand import format_point
from gradkit.studies._stats import mean_ci

__all__ = [
    "LOSS_SMOOTHING_SPAN",
    "MAX_BANDS",
    "CurvePanel",
    "arm_style",
    "curve_panels",
    "log_band",
    "plot_axis",
    "plot_curves",
    "plot_heatmaps",
    "save_figure",
]

# Okabe & Ito (2008), without its yellow, which vanishes on white.
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7")
LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("", "o", "s", "^", "v", "D", "x", "+")

MAX_BANDS = 8
"""Past this many arms the curves have no bands: a dozen overlapping bands hide the lines (the
intervals are in the report's table)."""

LOSS_SMOOTHING_SPAN = 10
"""The training loss's exponential moving average spans this many logged points."""


def arm_style(number: int) -> dict[str, Any]:
    """The colour, line style and marker of the ``number``-th arm (matplotlib keywords).

    Colour and style cycle with co-prime lengths (7 and 4), so neighbouring arms differ in both
    and the first 28 arms have distinct (colour, style) pairs; a marker separates further arms.
    """
    marker = _MARKERS[(number // (len(PALETTE) * len(LINE_STYLES))) % len(_MARKERS)]
    return {
        "color": PALETTE[number % len(PALETTE)],
        "linestyle": LINE_STYLES[number % len(LINE_STYLES)],
        "marker": marker or None,
    }


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically, and close it."""
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    _pyplot().close(figure)
    return path


def _band(
    per_seed: Mapping[int, list[tuple[int, float]]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, low and high over the seeds that have each step."""
    by_step: dict[int, list[float]] = {}
    for points in per_seed.values():
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    means, lows, highs = [], [], []
    for step in steps:
        mean, half = mean_ci(by_step[step])
        half = 0.0 if math.isnan(half) else half
        means.append(mean)
        lows.append(mean - half)
        highs.append(mean + half)
    return steps, means, lows, highs


def _smoothed_log(points: Sequence[tuple[int, float]], span: int) -> list[tuple[int, float]]:
    """The exponential moving average (weight ``2 / (span + 1)``) of ``log(value)``, started at
    the first value; it ends at the first value that is not finite and positive (divergence)."""
    weight = 2.0 / (span + 1)
    smoothed: list[tuple[int, float]] = []
    average = math.nan
    for step, value in points:
        if not (math.isfinite(value) and value > 0):
            break
        logarithm = math.log(value)
        average = logarithm if not smoothed else average + weight * (logarithm - average)
        smoothed.append((step, average))
    return smoothed


def log_band(
    per_seed: Mapping[int, Sequence[tuple[int, float]]], span: int = LOSS_SMOOTHING_SPAN
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, centre, low and high of a positive quantity (a loss) over seeds: each seed's
    curve smoothed by an EMA of its logarithm, then the mean and 95% t interval over seeds of
    the smoothed logarithms, exponentiated (a geometric mean with a multiplicative band, which
    stays positive and symmetric on a log axis)."""
    steps, means, lows, highs = _band({s: _smoothed_log(p, span) for s, p in per_seed.items()})
    return steps, *([math.exp(v) for v in values] for values in (means, lows, highs))


@dataclass
class CurvePanel:
    """One grid point's curves: per arm ``(label, style number, steps, centre, low, high)``."""

    title: str
    accuracy_label: str
    loss_label: str
    accuracy: list[tuple[str, int, list[int], list[float], list[float], list[float]]]
    loss: list[tuple[str, int, list[int], list[float], list[float], list[float]]]


def _grid_points(analysis: Analysis) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for cell in analysis.cells:
        seen.setdefault(key_of(cell.grid), cell.grid)
    return list(seen.values())


def curve_panels(analysis: Analysis) -> list[CurvePanel]:
    """The curves of :func:`plot_curves`, one panel per grid point.

    Accuracy is on the validation split (``val_accuracy``, the split that selected each arm's
    setting) where the store has it, else on test, and the label says which. The training loss
    is smoothed (:func:`log_band`). Each arm's label carries its selected sweep point.
    """
    cells = {(c.arm, key_of(c.grid)): c for c in analysis.cells}
    panels = []
    for point in _grid_points(analysis):
        key = key_of(point)
        split = (
            "val"
            if any((a.name, key, "val_accuracy") in analysis.curves for a in analysis.spec.arms)
            else "test"
        )
        accuracy, loss, spacing = [], [], []
        for number, arm in enumerate(analysis.spec.arms):
            cell = cells.get((arm.name, key))
            selected = format_point(cell.selected) if cell is not None else ""
            label = f"{arm.name} ({selected})" if selected else arm.name
            per_seed = analysis.curves.get((arm.name, key, f"{split}_accuracy"))
            if per_seed:
                accuracy.append((label, number, *_band(per_seed)))
            per_seed = analysis.curves.get((arm.name, key, "loss"))
            if per_seed:
                loss.append((label, number, *log_band(per_seed)))
                for points in per_seed.values():
                    steps = [step for step, _ in points]
                    spacing += [b - a for a, b in itertools.pairwise(steps)]
        every = sorted(spacing)[len(spacing) // 2] if spacing else 1
        panels.append(
            CurvePanel(
                title=format_point(point) or analysis.spec.name,
                accuracy_label="validation accuracy"
                if split == "val"
                else "test accuracy (no validation split)",
                loss_label=f"training loss (EMA of log, span {LOSS_SMOOTHING_SPAN * every} steps)",
                accuracy=accuracy,
                loss=loss,
            )
        )
    return panels


def plot_curves(analysis: Analysis, path: Path) -> Path | None:
    """Accuracy (validation where stored) and smoothed training loss against steps, one column
    per grid point, mean and 95% band over seeds (no bands past :data:`MAX_BANDS` arms); the
    legend, below each column, names each arm with its selected setting."""
    if not analysis.curves:
        return None
    panels = curve_panels(analysis)
    plt = _pyplot()
    arms = len(analysis.spec.arms)
    legend_rows = math.ceil(arms / 2)
    figure, axes = plt.subplots(
        2,
        len(panels),
        figsize=(max(7.0, 4.6 * len(panels) + 0.5), 6.0 + 0.22 * legend_rows),
        squeeze=False,
        constrained_layout=True,
    )
    for column, panel in enumerate(panels):
        for row, (series, label) in enumerate(
            ((panel.accuracy, panel.accuracy_label), (panel.loss, panel.loss_label))
        ):
            axis = axes[row][column]
            for name, number, steps, centre, lows, highs in series:
                style = arm_style(number)
                axis.plot(
                    steps, centre, label=name, linewidth=1.5, markevery=0.1, markersize=4, **style
                )
                if len(series) > MAX_BANDS:
                    continue
                if row == 0:  # an accuracy's interval ends at 0 and 1
                    lows, highs = [max(0.0, v) for v in lows], [min(1.0, v) for v in highs]
                axis.fill_between(steps, lows, highs, color=style["color"], alpha=0.15, lw=0)
            axis.set_xlabel("step")
            axis.set_ylabel(label, fontsize=8)
            if row == 1 and series:
                from matplotlib.ticker import FormatStrFormatter

                axis.set_yscale("log")
                # Plain numbers (2, 1.5), not 2 x 10^0, on a loss axis spanning a decade or two.
                axis.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
                axis.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
                axis.tick_params(axis="y", which="both", labelsize=7)
            if row == 0:
                bands = "" if len(series) <= MAX_BANDS else f" (no bands past {MAX_BANDS} arms)"
                axis.set_title(panel.title + bands, fontsize=9)
            axis.grid(alpha=0.3)
        handles, labels = axes[0][column].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1][column].get_legend_handles_labels()
        if handles:
            axes[1][column].legend(
                handles,
                labels,
                fontsize=7,
                ncol=2,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.22),
                frameon=False,
            )
    return save_figure(figure, path)


def _matrix(
    cell_values: Mapping[tuple[Any, Any], float], xs: list[Any], ys: list[Any]
) -> list[list[float]]:
    return [[cell_values.get((x, y), math.nan) for x in xs] for y in ys]


def plot_heatmaps(analysis: Analysis, path: Path, metric: str) -> Path | None:
    """Mean ``metric`` over seeds on a two-axis grid, or on each arm's two-axis sweep with the
    sweep point selected on validation outlined."""
    spec = analysis.spec
    panels: list[tuple[str, str, str, list[Any], list[Any], dict[tuple[Any, Any], float], Any]] = []
    if len(spec.grid) == 2:
        x_key, y_key = spec.grid
        for arm in spec.arms:
            values = {
                (c.grid[x_key], c.grid[y_key]): c.summary(metric)[0]
                for c in analysis.cells
                if c.arm == arm.name
            }
            panels.append(
                (
                    arm.name,
                    x_key,
                    y_key,
                    list(spec.grid[x_key]),
                    list(spec.grid[y_key]),
                    values,
                    None,  # each grid cell selects its own sweep point: no one point to mark
                )
            )
    else:
        for cell in analysis.cells:
            sweep = spec.arm(cell.arm).sweep
            if len(sweep) != 2:
                continue
            x_key, y_key = sweep
            values = {}
            for runs in cell.sweep_runs.values():
                numbers = [float(r.metrics[metric]) for r in runs if metric in r.metrics]
                if numbers:
                    values[(runs[0].sweep[x_key], runs[0].sweep[y_key])] = sum(numbers) / len(
                        numbers
                    )
            title = f"{cell.arm} {format_point(cell.grid)}".strip()
            selected = (cell.selected[x_key], cell.selected[y_key]) if cell.selected else None
            panels.append(
                (title, x_key, y_key, list(sweep[x_key]), list(sweep[y_key]), values, selected)
            )
    if not panels:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels) + 1, 3.8),
        squeeze=False,
        constrained_layout=True,
    )
    finite = [v for panel in panels for v in panel[5].values() if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    from matplotlib.patches import Rectangle

    for axis, (title, x_key, y_key, xs, ys, values, selected) in zip(axes[0], panels, strict=True):
        matrix = _matrix(values, xs, ys)
        if selected is not None and selected[0] in xs and selected[1] in ys:
            axis.add_patch(
                Rectangle(
                    (xs.index(selected[0]) - 0.5, ys.index(selected[1]) - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="#D55E00",
                    linewidth=2.5,
                )
            )
            title += "\n(outlined: selected on validation)"
        image = axis.imshow(
            matrix, origin="lower", cmap="viridis", vmin=low, vmax=high, aspect="auto"
        )
        for row, line in enumerate(matrix):
            for column, value in enumerate(line):
                if math.isfinite(value):
                    axis.text(
                        column,
                        row,
                        f"{value:.3g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value < (low + high) / 2 else "black",
                    )
        axis.set_xticks(
            range(len(xs)), [f"{x:g}" if isinstance(x, float) else str(x) for x in xs], fontsize=7
        )
        axis.set_yticks(
            range(len(ys)), [f"{y:g}" if isinstance(y, float) else str(y) for y in ys], fontsize=7
        )
        axis.set_xlabel(x_key)
        axis.set_ylabel(y_key)
        axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=list(axes[0]), label=f"mean {metric}")
    return save_figure(figure, path)


def plot_axis(analysis: Analysis, path: Path, metric: str) -> Path | None:
    """``metric`` (mean and 95% interval) against a one-axis numeric grid, one line per arm."""
    spec = analysis.spec
    if len(spec.grid) != 1:
        return None
    ((key, values),) = spec.grid.items()
    if len(values) < 2 or not all(isinstance(v, (int, float)) for v in values):
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    drawn = False
    for number, arm in enumerate(spec.arms):
        cells: list[Cell] = [c for c in analysis.cells if c.arm == arm.name]
        xs, means, errors = [], [], []
        for cell in cells:
            mean, half, _ = cell.summary(metric)
            if math.isfinite(mean):
                xs.append(cell.grid[key])
                means.append(mean)
                errors.append(0.0 if math.isnan(half) else half)
        if xs:
            style = {**arm_style(number), "marker": arm_style(number)["marker"] or "o"}
            axis.errorbar(xs, means, yerr=errors, capsize=3, label=arm.name, **style)
            drawn = True
    if not drawn:  # no run recorded the metric
        plt.close(figure)
        return None
    axis.set_xscale("log", base=2)
    axis.set_xlabel(key)
    axis.set_ylabel(f"{metric} (mean, 95% CI)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return save_figure(figure, path)
