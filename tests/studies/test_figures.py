"""The report's figures: what each draws, read back from the matplotlib calls that draw it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from gradkit.studies._outcome_plots import (
    VerdictRow,
    plot_performance_profile,
    plot_time_to_target,
    plot_verdicts,
    target_rows,
)
from gradkit.studies._plots import (
    LOSS_SMOOTHING_SPAN,
    PALETTE,
    arm_style,
    curve_panels,
    log_band,
    plot_heatmaps,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[tuple[tuple, dict, Any]]]:
    """``record("plot")``: every later call of ``Axes.plot`` as (args, kwargs, result)."""
    from matplotlib.axes import Axes

    def start(name: str) -> list[tuple[tuple, dict, Any]]:
        calls: list[tuple[tuple, dict, Any]] = []
        original = getattr(Axes, name)

        def wrapper(self: Axes, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            calls.append((args, kwargs, result))
            return result

        monkeypatch.setattr(Axes, name, wrapper)
        return calls

    return start


def _analysis(out: Path) -> Any:
    from gradkit.studies import load_spec
    from gradkit.studies._analysis import analyze
    from gradkit.studies._store import Store

    with Store(out / "study.db") as store:
        return analyze(load_spec(out / "study.toml"), store)


def test_thirteen_arms_get_thirteen_looks_from_the_colour_blind_palette() -> None:
    looks = [(arm_style(n)["color"], arm_style(n)["linestyle"]) for n in range(13)]
    assert len(set(looks)) == 13
    assert {color for color, _ in looks} <= set(PALETTE)
    assert len({(arm_style(n)["color"], arm_style(n)["linestyle"]) for n in range(28)}) == 28
    everything = {tuple(sorted(arm_style(n).items(), key=str)) for n in range(60)}
    assert len(everything) == 60  # past 28 arms a marker keeps them apart


def test_the_loss_band_is_taken_over_seeds_on_smoothed_log_values() -> None:
    # Constant losses 1e-3 and 1e-1: the centre is their geometric mean, not 0.0505.
    steps, centre, low, high = log_band({0: [(1, 1e-3), (2, 1e-3)], 1: [(1, 1e-1), (2, 1e-1)]})
    assert steps == [1, 2] and centre == pytest.approx([1e-2, 1e-2])
    half = stats.t.ppf(0.975, 1) * statistics.stdev([math.log(1e-3), math.log(1e-1)]) / math.sqrt(2)
    assert low[0] == pytest.approx(1e-2 * math.exp(-half)) and 0 < low[0] < 1e-3
    assert high[0] == pytest.approx(1e-2 * math.exp(half))
    # One seed: the EMA of log(e^0, e^1, e^2) with weight 2 / (span + 1); no band.
    weight = 2 / (LOSS_SMOOTHING_SPAN + 1)
    _, centre, low, high = log_band({0: [(1, 1.0), (2, math.e), (3, math.e**2)]})
    expected = [0.0, weight, weight + weight * (2 - weight)]
    assert [math.log(c) for c in centre] == pytest.approx(expected)
    assert low == centre == high
    # A diverged seed's curve ends at its first non-finite loss.
    steps, *_ = log_band({0: [(1, 1.0), (2, math.inf), (3, 1.0)]})
    assert steps == [1]


def test_curves_are_on_validation_with_the_selected_setting_in_the_legend(
    finished_study: Path,
) -> None:
    analysis = _analysis(finished_study)
    (panel,) = curve_panels(analysis)
    assert panel.accuracy_label == "validation accuracy"
    assert "EMA" in panel.loss_label and f"span {LOSS_SMOOTHING_SPAN} steps" in panel.loss_label
    cells = {cell.arm: cell for cell in analysis.cells}
    for label, number, steps, centre, _, _ in panel.accuracy:
        arm = analysis.spec.arms[number].name
        assert label == f"{arm} (lr={cells[arm].selected['optim.lr']:g})"
        per_seed = next(
            v for k, v in analysis.curves.items() if k[0] == arm and k[2] == "val_accuracy"
        )
        first = statistics.mean(points[0][1] for points in per_seed.values())
        assert steps[0] == 5 and centre[0] == pytest.approx(first)


def test_time_to_target_counts_the_seeds_that_reached_it_and_hatches_the_rest(
    finished_study: Path, record: Callable[[str], list[Any]], tmp_path: Path
) -> None:
    analysis = _analysis(finished_study)
    target = analysis.spec.target_accuracy
    rows = {row.label: row for row in target_rows(analysis)}
    for cell in analysis.cells:
        per_seed = next(
            v for k, v in analysis.curves.items() if k[0] == cell.arm and k[2] == "test_accuracy"
        )
        reached = sum(any(v >= target for _, v in points) for points in per_seed.values())
        assert (rows[cell.arm].reached, rows[cell.arm].seeds) == (reached, 2)
    calls = record("barh")
    assert plot_time_to_target(analysis, tmp_path / "t.png") == tmp_path / "t.png"
    labels = calls[0][0][0]
    assert labels == [f"{r.label}  [{r.reached}/{r.seeds}]" for r in rows.values()]
    for bar, row in zip(calls[0][2], rows.values(), strict=True):
        assert (bar.get_hatch() == "///") == (row.reached < row.seeds)


def test_verdict_forest_marks_the_detectable_difference_of_inconclusive_claims_only(
    record: Callable[[str], list[Any]], tmp_path: Path
) -> None:
    rows = [
        VerdictRow("a", "test_accuracy", "inconclusive", 0.01, -0.02, 0.04, detectable=0.05),
        VerdictRow(
            "b", "test_accuracy", "inconclusive", 0.0, -0.01, 0.01, "equivalent", 0.02, 0.03
        ),
        VerdictRow("c", "test_accuracy", "reproduced", 0.1, 0.05, 0.15, detectable=0.02),
        VerdictRow("d", "steps", "inconclusive", 5.0, -3.0, 13.0),
        VerdictRow("e", "steps", "inconclusive", math.nan, math.nan, math.nan),
    ]
    calls = record("plot")
    fills = record("fill_betweenx")
    assert plot_verdicts(rows, tmp_path / "v.png") == tmp_path / "v.png"
    assert (tmp_path / "v.png").read_bytes().startswith(PNG)
    diamonds = [args for args, _, _ in calls if len(args) == 3 and args[2] == "D"]
    assert [list(args[0]) for args in diamonds] == [[0.05], [0.03, -0.03]]
    # Shaded margins: (-m, m) for the equivalence test; none where the margin is 0.
    assert [args[1:] for args, _, _ in fills] == [(-0.02, 0.02)]
    points = [args for args, _, _ in calls if len(args) == 3 and args[2] == "o"]
    assert [args[0] for args in points] == [0.01, 0.0, 0.1, 5.0]
    assert plot_verdicts([], tmp_path / "none.png") is None


def test_performance_profile_draws_each_arm_as_given(
    record: Callable[[str], list[Any]], tmp_path: Path
) -> None:
    profile = {"adam": [0.5, 1.0, 1.0], "sgd": [0.25, 0.5, 1.0], "lamb": [0.0, 0.75, 1.0]}
    taus = [1.0, 2.0, 4.0]
    calls = record("step")
    assert plot_performance_profile(profile, taus, tmp_path / "p.png") == tmp_path / "p.png"
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)
    drawn = {kwargs["label"]: (args[0], args[1], kwargs["color"]) for args, kwargs, _ in calls}
    assert drawn == {
        arm: (taus, fractions, arm_style(n)["color"])
        for n, (arm, fractions) in enumerate(profile.items())
    }
    assert all(kwargs["where"] == "post" for _, kwargs, _ in calls)


@pytest.mark.parametrize(
    ("profile", "taus", "message"),
    [
        ({}, [1.0], "profile is empty"),
        ({"a": [0.5]}, [0.5], "invalid taus=[0.5]"),
        ({"a": [0.5, 0.6]}, [2.0, 1.0], "invalid taus=[2.0, 1.0]"),
        ({"a": [0.5]}, [1.0, 2.0], "arm 'a' has 1 fractions for 2 taus"),
        ({"a": [0.5, 1.5]}, [1.0, 2.0], "arm 'a' has fractions [0.5, 1.5]"),
    ],
)
def test_performance_profile_bad_input(
    profile: dict[str, list[float]], taus: list[float], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plot_performance_profile(profile, taus, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_heatmap_outlines_the_point_selected_on_validation(
    tiny_text: Callable[..., str], tmp_path: Path, record: Callable[[str], list[Any]]
) -> None:
    from gradkit.studies import run_study

    text = tiny_text(steps=5).replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace(
        '"optim.lr" = [0.03, 0.3]', '"optim.lr" = [0.03, 0.3]\n"optim.weight_decay" = [0.0, 0.01]'
    )
    (tmp_path / "tiny.toml").write_text(text, encoding="utf-8")
    run_study(tmp_path / "tiny.toml", tmp_path / "out", threads=1, progress=False)
    analysis = _analysis(tmp_path / "out")
    patches = record("add_patch")
    assert plot_heatmaps(analysis, tmp_path / "h.png", "test_accuracy") == tmp_path / "h.png"
    outlined = [args[0].get_xy() for args, _, _ in patches]
    expected = [
        (
            [0.03, 0.3].index(cell.selected["optim.lr"]) - 0.5,
            [0.0, 0.01].index(cell.selected["optim.weight_decay"]) - 0.5,
        )
        for cell in analysis.cells
    ]
    assert outlined == expected and len(expected) == 2
