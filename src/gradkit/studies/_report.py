"""Write a study's report: ``REPORT.md`` (plots beside it in ``plots/``), ``report.html`` (the
same Markdown rendered by the ``markdown`` package, the plots embedded: one self-contained
file) and ``report.json`` (every number).

Numbers are means over seeds with the half-width of the 95% t interval (``0.8123 ± 0.0100``),
at each arm's sweep point that was best on validation. A study with interpolations gets their
table (the ends and the barrier on the training split) and plot; one that measures signal
propagation gets its per-block plot.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.studies._analysis import Analysis, InterpolationResult, analyze
from gradkit.studies._expand import format_point
from gradkit.studies._html import markdown_page
from gradkit.studies._measure_plots import plot_interpolations, plot_signal_propagation
from gradkit.studies._outcome_plots import (
    plot_performance_profile,
    plot_time_to_target,
    plot_verdicts,
    verdict_rows,
)
from gradkit.studies._plots import LOSS_SMOOTHING_SPAN, plot_axis, plot_curves, plot_heatmaps
from gradkit.studies._protocol_report import json_performance, performance_tables, tuning_table
from gradkit.studies._runner import SPEC_NAME, STORE_NAME, read_preset
from gradkit.studies._spec import load_spec
from gradkit.studies._stats import mean_ci
from gradkit.studies._store import Store

__all__ = ["format_estimate", "write_report"]


def format_estimate(mean: float, half: float) -> str:
    """``"0.8123 ± 0.01"``; a single seed has no interval (``"0.8123"``); none: ``"—"``."""
    if math.isnan(mean):
        return "—"
    return f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def _columns(analysis: Analysis) -> list[str]:
    columns = list(analysis.spec.metrics)
    if analysis.spec.target_accuracy is not None:
        columns += ["steps_to_target", "seconds_to_target"]
    return [*columns, "seconds"]


def _tables(analysis: Analysis) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables as header and rows of text (shared by Markdown and HTML)."""
    spec = analysis.spec
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    if analysis.verdicts:
        tables["Verdicts"] = (
            [
                "claim",
                "arm vs baseline",
                "metric",
                "verdict",
                "difference (95% CI)",
                "margin",
                "detectable (80% power)",
                "rule",
            ],
            [
                [
                    claim.text,
                    f"{claim.arm} vs {claim.baseline}"
                    + (f" at {format_point(claim.at)}" if claim.at else ""),
                    claim.metric,
                    f"**{v.outcome}**",
                    f"{v.difference:.4g} [{v.low:.4g}, {v.high:.4g}]",
                    f"{claim.margin:g}"
                    + (
                        f" (+{claim.smallest_effect:g} smallest effect)"
                        if claim.smallest_effect
                        else ""
                    ),
                    "—" if v.detectable is None else f"{v.detectable:.4g}",
                    v.rule,
                ]
                for claim, v in analysis.verdicts
            ],
        )
    columns = _columns(analysis)
    header = [
        "arm",
        *[key.rsplit(".", 1)[-1] for key in spec.grid],
        "best on validation",
        "seeds",
        *columns,
    ]
    rows = []
    for cell in analysis.cells:
        row = [cell.arm, *[str(cell.grid[key]) for key in spec.grid]]
        row.append(format_point(cell.selected) if cell.selected else "—")
        row.append(f"{len(cell.runs)}" + (f" ({len(cell.failed)} failed)" if cell.failed else ""))
        row += [format_estimate(*cell.summary(metric)[:2]) for metric in columns]
        rows.append(row)
    tables["Arms"] = (header, rows)
    if spec.tuning is not None:
        tables["Tuning"] = tuning_table(analysis)
    if analysis.performance:
        tables.update(performance_tables(analysis))
    failures = [
        [
            run.arm,
            format_point({**run.grid, **run.sweep}) or "—",
            str(run.seed),
            (run.error or "").splitlines()[0],
        ]
        for cell in analysis.cells
        for run in cell.failed
    ]
    if failures:
        tables["Failed runs"] = (["arm", "point", "seed", "error"], failures)
    if analysis.interpolations:
        tables["Interpolations"] = _interpolation_table(analysis.interpolations)
    failed = [
        [r.interpolation.name, format_point(r.grid) or "—", str(seed), error]
        for r in analysis.interpolations
        for seed, error in r.failed.items()
    ]
    if failed:
        tables["Failed interpolations"] = (["interpolation", "point", "seed", "error"], failed)
    return tables


def interpolation_summary(result: InterpolationResult) -> dict[str, list[float]]:
    """Per seed (in seed order): the train loss at alpha 0 and 1, the highest train loss for
    alpha in [0, 1] and where it is, and the test accuracy at alpha 0 and 1."""
    summary: dict[str, list[float]] = {}
    for _, curve in sorted(result.curves.items()):
        alphas = curve["alpha"]
        inside = [i for i, a in enumerate(alphas) if 0 <= a <= 1]
        peak = max(inside, key=lambda i: curve["train_loss"][i])
        values = {
            "train_loss_at_0": curve["train_loss"][alphas.index(0.0)],
            "train_loss_at_1": curve["train_loss"][alphas.index(1.0)],
            "highest_train_loss": curve["train_loss"][peak],
            "alpha_of_highest": alphas[peak],
            "test_accuracy_at_0": curve["test_accuracy"][alphas.index(0.0)],
            "test_accuracy_at_1": curve["test_accuracy"][alphas.index(1.0)],
        }
        for name, value in values.items():
            summary.setdefault(name, []).append(value)
    return summary


def _interpolation_table(
    results: list[InterpolationResult],
) -> tuple[list[str], list[list[str]]]:
    header = [
        "interpolation",
        "alpha 0 → 1",
        "point",
        "seeds",
        "train loss at 0",
        "train loss at 1",
        "highest train loss in [0, 1]",
        "at alpha",
        "test accuracy at 0",
        "test accuracy at 1",
    ]
    rows = []
    for result in results:
        summary = interpolation_summary(result)
        seeds = f"{len(result.curves)}" + (
            f" ({len(result.failed)} failed)" if result.failed else ""
        )
        if result.missing:
            seeds += f" ({len(result.missing)} not computed)"
        names = [
            "train_loss_at_0",
            "train_loss_at_1",
            "highest_train_loss",
            "alpha_of_highest",
            "test_accuracy_at_0",
            "test_accuracy_at_1",
        ]
        rows.append(
            [
                result.interpolation.name,
                f"{result.interpolation.from_arm} → {result.interpolation.to_arm}",
                format_point(result.grid) or "—",
                seeds,
                *[format_estimate(*mean_ci(summary.get(name, []))) for name in names],
            ]
        )
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [line(header), "| " + " | ".join("---" for _ in header) + " |", *map(line, rows)]


def _numbers(analysis: Analysis) -> dict[str, Any]:
    """Every number of the report, for machines (``report.json``)."""

    def clean(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "study": analysis.spec.name,
        "runs": {"total": analysis.total_runs, "finished": analysis.finished_runs},
        "cells": [
            {
                "arm": cell.arm,
                "grid": cell.grid,
                "selected": cell.selected,
                "seeds": sorted(cell.runs),
                "tuning": None
                if cell.tuning is None
                else {
                    "status": cell.tuning.status,
                    "trials": cell.tuning.trials,
                    "widenings": cell.tuning.widenings,
                    "edges": list(cell.tuning.edges),
                    "searched": {a.key: list(a.values) for a in cell.tuning.axes},
                    "scores": [
                        {"trial": trial, "score": clean(score)}
                        for trial, score in cell.tuning.scores
                    ],
                },
                "failed": len(cell.failed),
                "metrics": {
                    metric: {"mean": clean(mean), "half_width": clean(half), "n": n}
                    for metric in _columns(analysis)
                    for mean, half, n in [cell.summary(metric)]
                },
            }
            for cell in analysis.cells
        ],
        "verdicts": [
            {
                "claim": claim.text,
                "outcome": v.outcome,
                "difference": clean(v.difference),
                "low": clean(v.low),
                "high": clean(v.high),
                "seeds": v.seeds,
                "margin": claim.margin,
                "smallest_effect": claim.smallest_effect,
                "detectable": None if v.detectable is None else clean(v.detectable),
                "rule": v.rule,
            }
            for claim, v in analysis.verdicts
        ],
        "performance": json_performance(analysis.performance),
        "interpolations": [
            {
                "name": result.interpolation.name,
                "from": result.interpolation.from_arm,
                "to": result.interpolation.to_arm,
                "grid": result.grid,
                "seeds": sorted(result.curves),
                "failed": {str(seed): error for seed, error in result.failed.items()},
                "per_seed": interpolation_summary(result),
                "curves": {str(seed): curve for seed, curve in sorted(result.curves.items())},
            }
            for result in analysis.interpolations
        ],
    }


def _performance_plot(analysis: Analysis, path: Path) -> Path | None:
    """The performance profile in steps, where the study has a target and several workloads."""
    steps = analysis.performance.get("steps")
    if not steps or len(steps["times"]) < 2:
        return None
    if not any(f > 0 for fractions in steps["profile"].values() for f in fractions):
        return None  # no arm reached the target anywhere: the table says so
    return plot_performance_profile(steps["profile"], analysis.performance["taus"], path)


def write_report(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report of the study in ``out_dir`` (its ``study.toml`` and ``study.db``).

    Returns the paths written: ``markdown``, ``html``, ``json`` and one per plot.
    """
    out = Path(out_dir)
    spec_path, store_path = out / SPEC_NAME, out / STORE_NAME
    for needed in (spec_path, store_path):
        if not needed.exists():
            raise FileNotFoundError(f"study report: {out} has no {needed.name}; is it a study?")
    spec = load_spec(spec_path, preset=read_preset(out))
    with Store(store_path) as store:
        names = {run.study for run in store.runs()}
        if len(names) == 1 and spec.name == spec_path.stem:  # the copy's stem is no name
            spec = dataclasses.replace(spec, name=names.pop())
        analysis = analyze(spec, store)
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    metric = spec.metrics[0]
    plots = {
        "verdicts: each claim's paired difference with its 95% interval, the margin of its "
        "test shaded": plot_verdicts(verdict_rows(analysis), plots_dir / "verdicts.png"),
        "learning curves (mean, 95% band over seeds; the training loss smoothed by an "
        f"exponential moving average of its logarithm over {LOSS_SMOOTHING_SPAN} logged "
        "points)": plot_curves(analysis, plots_dir / "curves.png"),
        f"{metric} against the grid": plot_axis(analysis, plots_dir / "axis.png", metric),
        f"heatmap of {metric}": plot_heatmaps(analysis, plots_dir / "heatmap.png", metric),
        "time to accuracy (k/n: seeds that reached it; hatched: not every seed did)": (
            plot_time_to_target(analysis, plots_dir / "time_to_target.png")
        ),
        "performance profile (AlgoPerf): for each arm, the fraction of workloads (grid points) "
        "on which it reached the target within a factor tau of the fastest arm's steps": (
            _performance_plot(analysis, plots_dir / "performance_profile.png")
        ),
        "interpolation between the solutions (train solid, test dashed; mean, 95% band over "
        "seeds)": plot_interpolations(analysis, plots_dir / "interpolation.png"),
        "signal propagation at initialisation (mean, 95% band over seeds)": (
            plot_signal_propagation(analysis, plots_dir / "signal_propagation.png")
        ),
    }
    shown = {title: path for title, path in plots.items() if path is not None}
    tables = _tables(analysis)
    title = spec.title or spec.name
    intro = [
        f"Study `{spec.name}`" + (f" ({spec.paper})" if spec.paper else "") + ".",
        spec.description,
        f"Runs finished: {analysis.finished_runs} of {analysis.total_runs}; seeds "
        f"{', '.join(map(str, spec.seeds))}. Each arm's sweep point is chosen by the mean "
        f"`{spec.select_metric}` over seeds (validation split, never test); numbers are means "
        "over seeds ± the half-width of the 95% t interval.",
    ]
    if spec.tuning is not None:
        intro[-1] = (
            f"Runs finished: {analysis.finished_runs} of {analysis.total_runs}. Protocol: "
            f"every arm tunes {spec.tuning.budget} trials on tuning seeds "
            f"{', '.join(map(str, spec.tuning.seeds))} (validation split, `{spec.select_metric}`"
            f"), a best value at an end of a log range widens it by {spec.tuning.widen} step(s) "
            f"(at most {spec.tuning.max_widenings} times); the selected setting is rerun on "
            f"report seeds {', '.join(map(str, spec.seeds))}, paired by seed, and only those "
            "are reported (on test). Numbers are means over the report seeds ± the half-width "
            "of the 95% t interval."
        )
    if spec.preset:
        intro.insert(
            0,
            f"**Preset `{spec.preset}`: a tiny smoke run of the study; its numbers and verdicts "
            "decide nothing.**",
        )
    markdown = [f"# {title}", "", *[line for line in intro if line]]
    for name, (header, rows) in tables.items():
        markdown += ["", f"## {name}", "", *_markdown_table(header, rows)]
    if shown:
        markdown += ["", "## Plots"]
        for caption, path in shown.items():
            markdown += ["", f"{caption}:", "", f"![{caption}](plots/{path.name})"]
    written: dict[str, Path] = {}
    with atomic_output(out / "REPORT.md") as temporary:
        temporary.write_text("\n".join(markdown) + "\n", encoding="utf-8")
    written["markdown"] = out / "REPORT.md"
    with atomic_output(out / "report.html") as temporary:
        page = markdown_page(title, "\n".join(markdown), base=out, embed_images=True)
        temporary.write_text(page, encoding="utf-8")
    written["html"] = out / "report.html"
    with atomic_output(out / "report.json") as temporary:
        temporary.write_text(json.dumps(_numbers(analysis), indent=2) + "\n", encoding="utf-8")
    written["json"] = out / "report.json"
    written.update({path.stem: path for path in shown.values()})
    return written
