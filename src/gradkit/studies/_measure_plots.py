"""The report's figures of the measures: interpolations between two arms' solutions and signal
propagation profiles (matplotlib, Agg). Each function writes one PNG and returns its path, or
``None`` when the study has nothing to show in it.
"""

from __future__ import annotations

import math
from pathlib import Path

from gradkit.studies._analysis import Analysis, key_of
from gradkit.studies._expand import format_point
from gradkit.studies._plots import _pyplot, save_figure
from gradkit.studies._stats import mean_ci

__all__ = ["plot_interpolations", "plot_signal_propagation"]


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
    return save_figure(figure, path)


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
    return save_figure(figure, path)
