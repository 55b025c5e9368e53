"""The tuning protocol: bad [tuning] specs, the edge-widening rule, the tuning/report seed
split, and a tuned study run end to end (tune, widen, report) and resumed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from gradkit.studies import SpecError, load_spec, parse_spec, run_study, write_report
from gradkit.studies._definitions import SearchAxis
from gradkit.studies._protocol import EDGE, TUNED, TUNING, current_plans, tune_cells, widen
from gradkit.studies._store import RunRecord

TUNED_SPEC = """
[study]
title = "Tuned"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
target_accuracy = 0.3

[tuning]
budget = 3
seeds = [100]
{tuning}

[base]
data = {{ name = "mnist1d", validation_fraction = 0.2, options = {{ num_samples = 600 }} }}
model = {{ name = "logistic" }}
optim = {{ name = "sgd", lr = 0.1, weight_decay = 0.0 }}
schedule = {{ lr = "constant()" }}
train = {{ steps = 4, batch_size = 32, eval_every = 2, threads = 1, device = "cpu" }}

[[arms]]
name = "sgd"
search = {{ "optim.lr" = {{ low = 0.01, high = 1.0 }} }}

[[arms]]
name = "momentum"
set = {{ "optim.name" = "momentum" }}
search = {{ "optim.lr" = {{ low = 0.001, high = 0.1 }} }}

[[claims]]
text = "momentum beats sgd"
arm = "momentum"
baseline = "sgd"
metric = "test_accuracy"
"""


def _spec(tuning: str = "", **replace: str) -> str:
    text = TUNED_SPEC.format(tuning=tuning)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'search = { "optim.lr" = { low = 0.001, high = 0.1 } }',
            "",
            "arm 'momentum': needs search (its search space, e.g. search = { \"optim.lr\" = "
            "{ low = 1e-4, high = 1e-1 } }): the study has a [tuning] budget of 3 trials per arm",
        ),
        (
            "seeds = [100]",
            "seeds = [100, 3]",
            "[tuning] seeds [3] are also report seeds ([study] seeds); a setting is reported "
            "on fresh seeds only, so the two lists must be disjoint",
        ),
        (
            "budget = 3",
            "budget = 0",
            "[tuning] budget must be an integer >= 1 (trials per arm), got 0",
        ),
        (
            "seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
            "seeds = [0, 1, 2]",
            "[study] seeds has 3 report seeds, a tuned study needs at least 10",
        ),
        (
            "{ low = 0.001, high = 0.1 } }",
            "[0.001, 0.01] }",
            "arm 'momentum' search has 2 = 2 trials, [tuning] budget = 3; every arm gets the "
            "budget, no more, no less",
        ),
        (
            "{ low = 0.001, high = 0.1 } }",
            "{ low = 0.1, high = 0.001 } }",
            "arm 'momentum' search 'optim.lr': a log grid needs 0 < low < high, got low=0.1, "
            "high=0.001",
        ),
        (
            "budget = 3",
            "budget = 3\nwiden = 0",
            "[tuning] widen must be an integer >= 1 (log-grid steps), got 0",
        ),
    ],
)
def test_bad_tuned_specs_name_the_key(
    spec_error: Callable[[str], str], old: str, new: str, message: str
) -> None:
    text = _spec()
    assert old in text
    assert spec_error(text.replace(old, new, 1)) == message


def test_a_search_without_a_budget_is_refused(spec_error: Callable[[str], str]) -> None:
    text = _spec().replace("[tuning]\nbudget = 3\nseeds = [100]\n", "")
    assert spec_error(text) == (
        "arm 'sgd': search needs a tuning budget; add [tuning] with budget and seeds"
    )


def test_the_budget_sets_the_log_grid_and_every_arm_gets_it(
    write_spec: Callable[..., Path],
) -> None:
    spec = load_spec(write_spec(_spec()))
    sgd, momentum = spec.arms
    assert sgd.search == (SearchAxis("optim.lr", (0.01, 0.1, 1.0), log=True),)
    assert momentum.search[0].values == (0.001, 0.01, 0.1)
    assert spec.tuning is not None and spec.tuning.budget == 3
    assert (spec.tuning.widen, spec.tuning.max_widenings) == (1, 2)


def test_widen_adds_whole_steps_beyond_the_end_only() -> None:
    axis = SearchAxis("optim.lr", (0.001, 0.01, 0.1), log=True)
    assert widen(axis, 0.001, 1).values == (0.0001, 0.001, 0.01, 0.1)
    assert widen(axis, 0.1, 2).values == (0.001, 0.01, 0.1, 1.0, 10.0)
    assert widen(axis, 0.01, 1) == axis  # inside: unchanged
    choices = SearchAxis("optim.momentum", (0.9, 0.99))
    assert widen(choices, 0.99, 1) == choices  # a list of choices is never widened
    batches = SearchAxis("train.batch_size", (2, 4, 8), log=True, integer=True)
    assert widen(batches, 2, 2).values == (1, 2, 4, 8)  # not below 1, no repeats


def _records(plans: list, value: Callable[[dict], float]) -> dict[str, RunRecord]:
    """Finished records of ``plans`` with ``val_accuracy = value(sweep point)``."""
    return {
        p.run_id: RunRecord(
            p.run_id,
            "t",
            p.arm,
            dict(p.grid),
            dict(p.sweep),
            p.seed,
            dict(p.config),
            "done",
            {"val_accuracy": value(dict(p.sweep))},
            None,
            0.0,
            1.0,
            1.0,
            4,
        )
        for p in plans
    }


def test_an_edge_selection_widens_then_tunes_or_reports_the_edge(
    write_spec: Callable[..., Path],
) -> None:
    spec = load_spec(write_spec(_spec()))
    # validation accuracy grows with the rate for ever: the best is always the top end
    records: dict[str, RunRecord] = {}
    rounds = 0
    while True:
        plans = current_plans(spec, records)
        new = [p for p in plans if p.run_id not in records]
        if not new:
            break
        records.update(_records(new, lambda point: math.log10(point["optim.lr"])))
        rounds += 1
    cells = {c.arm: c for c in tune_cells(spec, records)}
    sgd = cells["sgd"]
    assert sgd.status == EDGE and sgd.edges == ("optim.lr",)
    assert sgd.axes[0].values == (0.01, 0.1, 1.0, 10.0, 100.0)  # widened twice, one step each
    assert sgd.widenings == 2 and sgd.selected == {"optim.lr": 100.0}
    assert rounds == 4  # the budget, two widenings, then the report runs
    # a peak at 10^0.4: 1.0 (the top end) wins the budget, then 1.0 beats the new 10.0
    records = {}
    while True:
        new = [p for p in current_plans(spec, records) if p.run_id not in records]
        if not new:
            break
        records.update(_records(new, lambda point: -abs(math.log10(point["optim.lr"]) - 0.4)))
    sgd = {c.arm: c for c in tune_cells(spec, records)}["sgd"]
    assert sgd.status == TUNED and sgd.selected == {"optim.lr": 1.0}
    assert sgd.widenings == 1 and sgd.trials == 4


def test_report_runs_use_the_report_seeds_only_and_wait_for_the_selection(
    write_spec: Callable[..., Path],
) -> None:
    spec = load_spec(write_spec(_spec()))
    first = current_plans(spec, {})
    assert {p.seed for p in first} == {100}  # tuning only, nothing reported yet
    assert all(c.status == TUNING for c in tune_cells(spec, {}))
    # each arm's middle rate is its best: tuned at once, then reported
    records = {
        **_records([p for p in first if p.arm == "sgd"], lambda q: -abs(q["optim.lr"] - 0.1)),
        **_records([p for p in first if p.arm == "momentum"], lambda q: -abs(q["optim.lr"] - 0.01)),
    }
    cells = tune_cells(spec, records)
    for cell in cells:
        assert cell.status == TUNED
        report_seeds = {p.seed for p in cell.report_plans}
        assert report_seeds == set(range(10))
        assert not report_seeds & {p.seed for p in cell.tuning_plans}
        assert {tuple(p.sweep.items()) for p in cell.report_plans} == {tuple(cell.selected.items())}
    # paired by seed: the same seed gives the same train.seed in both arms
    sgd, momentum = (c.report_plans for c in cells)
    assert [p.config["train"]["seed"] for p in sgd] == [p.config["train"]["seed"] for p in momentum]


def test_a_tuned_study_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    spec = tmp_path / "tuned.toml"
    spec.write_text(_spec(), encoding="utf-8")
    outcome = run_study(spec, tmp_path / "out", threads=1, progress=False)
    assert outcome.failed == {}
    numbers = json.loads(json.dumps(outcome.total))
    assert numbers >= 2 * (3 + 10)
    again = run_study(spec, tmp_path / "out", threads=1, progress=False)
    assert again.ran == () and again.skipped == outcome.total
    write_report(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    for cell in report["cells"]:
        assert cell["seeds"] == list(range(10))
        assert cell["tuning"]["status"] in (TUNED, EDGE)
        assert cell["tuning"]["trials"] == 3 + cell["tuning"]["widenings"]
    verdict = report["verdicts"][0]
    assert verdict["margin"] == 0.0
    if verdict["outcome"] == "inconclusive":
        assert verdict["detectable"] is not None and verdict["detectable"] > 0
    assert "steps" in report["performance"]
    markdown = (tmp_path / "out" / "REPORT.md").read_text(encoding="utf-8")
    assert "## Tuning" in markdown and "Protocol: every arm tunes 3 trials" in markdown


def test_parse_spec_with_the_quick_preset_shrinks_seeds() -> None:
    import tomllib

    values = tomllib.loads(_spec())
    values["presets"] = {"quick": {"base": {"train": {"steps": 2}}}}
    spec = parse_spec(values, preset="quick")
    assert spec.seeds == (0, 1) and spec.tuning is not None
    assert spec.tuning.seeds == (100,) and spec.tuning.max_widenings == 0
    assert spec.base["train"]["steps"] == 2 and spec.base["train"]["batch_size"] == 32
    with pytest.raises(SpecError, match="unknown preset 'slow'"):
        parse_spec(values, preset="slow")


def test_a_sweep_beside_tuning_and_a_bad_preset_are_refused(
    spec_error: Callable[[str], str], write_spec: Callable[..., Path]
) -> None:
    text = _spec().replace("[base]", '[sweep]\n"optim.lr" = [0.1, 0.2]\n\n[base]', 1)
    assert spec_error(text) == (
        "[sweep] and [tuning] both choose settings; a tuned study gives each arm a search "
        "space ([[arms]] search) instead"
    )
    path = write_spec(_spec() + '\n[presets.quick]\narms = ["adam"]\n')
    with pytest.raises(SpecError) as raised:
        load_spec(path, preset="quick")
    assert str(raised.value) == (
        f"{path}: [presets.quick] arms must be a non-empty list of arm names (arms: sgd, "
        "momentum), got ['adam']"
    )
