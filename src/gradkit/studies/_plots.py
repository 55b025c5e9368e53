"""The report's figures (matplotlib, Agg): curves with bands, heatmaps, axis plots, time-to-target,
interpolations between two arms' solutions and signal propagation profiles.

Each function writes one PNG and returns its path, or ``None`` when the study has nothing to
show in it. Bands are the 95% t interval over seeds at each step (none for a single seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradkit.studies._analysis import Analysis, Cell, key_of
from gradkit.studies._expand import format_point
from gradkit.studies._stats import mean_ci

__all__ = [
    "plot_axis",
    "plot_curves",
    "plot_heatmaps",
    "plot_interpolations",
    "plot_signal_propagation",
    "plot_time_to_target",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


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


def _grid_points(analysis: Analysis) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for cell in analysis.cells:
        seen.setdefault(key_of(cell.grid), cell.grid)
    return list(seen.values())


def plot_curves(analysis: Analysis, path: Path) -> Path | None:
    """Test accuracy and training loss against steps, one column per grid point."""
    points = _grid_points(analysis)
    if not analysis.curves:
        return None
    plt = _pyplot()
    columns = len(points)
    figure, axes = plt.subplots(
        2, columns, figsize=(4.2 * columns + 1, 6.5), squeeze=False, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for column, point in enumerate(points):
        for row, (name, label) in enumerate(
            (("test_accuracy", "test accuracy"), ("loss", "training loss"))
        ):
            axis = axes[row][column]
            for number, arm in enumerate(analysis.spec.arms):
                per_seed = analysis.curves.get((arm.name, key_of(point), name))
                if not per_seed:
                    continue
                steps, means, lows, highs = _band(per_seed)
                color = colors[number % len(colors)]
                axis.plot(steps, means, color=color, label=arm.name, linewidth=1.4)
                axis.fill_between(steps, lows, highs, color=color, alpha=0.2, linewidth=0)
            axis.set_xlabel("step")
            axis.set_ylabel(label)
            if name == "loss":
                axis.set_yscale("log")
            if row == 0:
                axis.set_title(format_point(point) or analysis.spec.name, fontsize=9)
                axis.legend(fontsize=7)
            axis.grid(alpha=0.3)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _matrix(
    cell_values: Mapping[tuple[Any, Any], float], xs: list[Any], ys: list[Any]
) -> list[list[float]]:
    return [[cell_values.get((x, y), math.nan) for x in xs] for y in ys]


def plot_heatmaps(analysis: Analysis, path: Path, metric: str) -> Path | None:
    """Mean ``metric`` over seeds on a two-axis grid, or on each arm's two-axis sweep."""
    spec = analysis.spec
    panels: list[tuple[str, str, str, list[Any], list[Any], dict[tuple[Any, Any], float]]] = []
    if len(spec.grid) == 2:
        x_key, y_key = spec.grid
        for arm in spec.arms:
            values = {
                (c.grid[x_key], c.grid[y_key]): c.summary(metric)[0]
                for c in analysis.cells
                if c.arm == arm.name
            }
            panels.append(
                (arm.name, x_key, y_key, list(spec.grid[x_key]), list(spec.grid[y_key]), values)
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
            panels.append((title, x_key, y_key, list(sweep[x_key]), list(sweep[y_key]), values))
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
    for axis, (title, x_key, y_key, xs, ys, values) in zip(axes[0], panels, strict=True):
        matrix = _matrix(values, xs, ys)
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
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


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
    for arm in spec.arms:
        cells: list[Cell] = [c for c in analysis.cells if c.arm == arm.name]
        xs, means, errors = [], [], []
        for cell in cells:
            mean, half, _ = cell.summary(metric)
            if math.isfinite(mean):
                xs.append(cell.grid[key])
                means.append(mean)
                errors.append(0.0 if math.isnan(half) else half)
        if xs:
            axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=arm.name)
    axis.set_xscale("log", base=2)
    axis.set_xlabel(key)
    axis.set_ylabel(f"{metric} (mean, 95% CI)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_time_to_target(analysis: Analysis, path: Path) -> Path | None:
    """Steps and seconds to the target accuracy per cell (mean and 95% interval)."""
    if analysis.spec.target_accuracy is None:
        return None
    rows = []
    for cell in analysis.cells:
        steps, steps_half, n = cell.summary("steps_to_target")
        seconds, seconds_half, _ = cell.summary("seconds_to_target")
        if n:
            label = f"{cell.arm} {format_point(cell.grid)}".strip()
            rows.append((label, steps, steps_half, seconds, seconds_half))
    if not rows:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 0.35 * len(rows) + 1.5), constrained_layout=True)
    labels = [row[0] for row in rows]
    for axis, (value, half, unit) in zip(axes, ((1, 2, "steps"), (3, 4, "seconds")), strict=True):
        errors = [0.0 if math.isnan(row[half]) else row[half] for row in rows]
        axis.barh(labels, [row[value] for row in rows], xerr=errors, capsize=3, color="#4c72b0")
        axis.set_xlabel(f"{unit} to test accuracy {analysis.spec.target_accuracy:g}")
        axis.invert_yaxis()
        axis.tick_params(axis="y", labelsize=7)
        axis.grid(alpha=0.3, axis="x")
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _mean_band(rows: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """Mean, low and high over equally long rows (one per seed), position by position."""
    means, lows, highs = [], [], []
    for values in zip(*rows, strict=True):
        finite = [v for v in values if math.isfinite(v)]
        mean, half = mean_ci(finite) if finite else (math.nan, math.nan)
        half = 0.0 if math.isnan(half) else half
        means.append(mean)
        lows.append(mean - half)
        highs.append(mean + half)
    return means, lows, highs


def plot_interpolations(analysis: Analysis, path: Path) -> Path | None:
    """Loss (left axis) and accuracy (right axis) against alpha, as arXiv 1609.04836, Fig. 3:
    training split solid, test split dashed, mean over seeds with the 95% band; one panel per
    interpolation and grid point."""
    results = [r for r in analysis.interpolations if r.curves]
    if not results:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(results), figsize=(6.2 * len(results), 4.2), squeeze=False, constrained_layout=True
    )
    for axis, result in zip(axes[0], results, strict=True):
        curves = list(result.curves.values())
        alphas = curves[0]["alpha"]
        twin = axis.twinx()
        for target, quantity, color in ((axis, "loss", "C0"), (twin, "accuracy", "C3")):
            for split, style in (("train", "-"), ("test", "--")):
                rows = [c[f"{split}_{quantity}"] for c in curves]
                means, lows, highs = _mean_band(rows)
                target.plot(
                    alphas, means, style, color=color, linewidth=1.5, label=f"{split} {quantity}"
                )
                target.fill_between(alphas, lows, highs, color=color, alpha=0.15, linewidth=0)
        losses = [v for c in curves for k in ("train_loss", "test_loss") for v in c[k]]
        positive = [v for v in losses if math.isfinite(v) and v > 0]
        if positive and max(positive) / min(positive) > 100:
            axis.set_yscale("log")
        interpolation = result.interpolation
        for position, arm in ((0, interpolation.from_arm), (1, interpolation.to_arm)):
            axis.axvline(position, color="grey", linewidth=0.6, linestyle=":")
            axis.annotate(
                arm,
                (position, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                ha="center",
                va="bottom",
            )
        axis.set_xlabel("alpha")
        axis.set_ylabel("cross-entropy loss", color="C0")
        twin.set_ylabel("accuracy", color="C3")
        twin.set_ylim(0.0, 1.0)
        title = f"{interpolation.name} {format_point(result.grid)}".strip()
        axis.set_title(f"{title} ({len(curves)} seeds)", fontsize=9, pad=14)
        lines = axis.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        axis.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center left")
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


_SIGNAL_PANELS = (
    ("spp_squared_mean", "average squared channel mean"),
    ("spp_variance", "average channel variance"),
    ("spp_residual_variance", "residual variance"),
)


def plot_signal_propagation(analysis: Analysis, path: Path) -> Path | None:
    """Signal propagation at initialisation against block depth, one line per arm (and grid
    point), mean over seeds with the 95% band: arXiv 2101.08692, Fig. 1.

    Arms that differ only in training (e.g. AGC or not) share their initial network, so their
    lines coincide; each arm has its own line style so that both stay visible. On a log axis
    the band's low end is kept at or above the smallest seed's value.
    """
    if not analysis.profiles:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("-", "--", ":", "-.")
    for axis, (name, label) in zip(axes, _SIGNAL_PANELS, strict=True):
        series = []
        for number, cell in enumerate(analysis.cells):
            per_seed = analysis.profiles.get((cell.arm, key_of(cell.grid), name))
            if per_seed:
                rows = list(per_seed.values())
                series.append((number, cell, rows, *_mean_band(rows)))
        shown = [v for *_, means, _, _ in series for v in means if math.isfinite(v)]
        positive = [v for v in shown if v > 0]
        log = bool(positive) and len(positive) == len(shown) and max(positive) / min(positive) > 100
        depth: list[int] = []
        for number, cell, rows, means, lows, highs in series:
            depth = list(range(1, len(means) + 1))
            if log:
                smallest = [min(column) for column in zip(*rows, strict=True)]
                lows = [max(low, floor) for low, floor in zip(lows, smallest, strict=True)]
            color = colors[number % len(colors)]
            axis.plot(
                depth,
                means,
                styles[number % len(styles)],
                marker="o",
                markersize=max(2.0, 6.0 - number),
                linewidth=max(1.0, 3.5 - 0.6 * number),  # later lines thinner, on top
                color=color,
                label=f"{cell.arm} {format_point(cell.grid)}".strip(),
            )
            axis.fill_between(depth, lows, highs, color=color, alpha=0.15, linewidth=0)
        if log:
            axis.set_yscale("log")
        else:
            axis.set_ylim(bottom=0.0)
        axis.set_xticks(depth)
        axis.set_xlabel("residual block")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
