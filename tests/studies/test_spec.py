"""Spec validation: each bad input and its exact message; expansion of a good spec."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradkit.studies import SpecError, expand, load_spec


def test_the_tiny_spec_expands_to_arms_x_sweep_x_seeds(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec())
    plans = expand(spec)
    assert len(plans) == 2 * 2 * 2
    assert len({plan.run_id for plan in plans}) == 8
    first = plans[0]
    assert (first.arm, dict(first.sweep), first.seed) == ("sgd", {"optim.lr": 0.03}, 0)
    assert first.config["optim"]["lr"] == 0.03
    assert plans[-1].config["optim"]["name"] == "momentum"
    # the ids are stable: the same spec expands to the same ids
    assert [p.run_id for p in expand(load_spec(write_spec()))] == [p.run_id for p in plans]


RECORDED = (
    "recorded: step, test_loss, test_accuracy, val_loss, val_accuracy, time, seconds, steps, "
    "steps_to_target, seconds_to_target, target_missed"
)
"""What each run of the tiny study records (it has a validation split and a target)."""

BAD = [
    # (replace this, with this, exact message after "<file>: ")
    (
        'metrics = ["test_accuracy", "test_loss"]',
        'metric = ["test_accuracy"]',
        "[study]: unknown key 'metric'; did you mean 'metrics'? (allowed: name, title, paper, "
        "description, seeds, metrics, select_metric, target_accuracy, measures)",
    ),
    (
        'set = { "optim.name" = "momentum" }',
        'set = { "optim.nme" = "momentum" }',
        "arm 'momentum' set: unknown key 'optim.nme'; did you mean 'optim.name'?",
    ),
    (
        '"optim.lr" = [0.03, 0.3]',
        '"optim.lr" = []',
        "[sweep]: axis 'optim.lr' must be a non-empty list, got []",
    ),
    (
        '"optim.lr" = [0.03, 0.3]',
        '"optim.lr" = 0.03',
        "[sweep]: axis 'optim.lr' must be a non-empty list, got 0.03",
    ),
    (
        '"optim.lr" = [0.03, 0.3]',
        '"optim.lr" = [0.03, 0.03]',
        "[sweep]: axis 'optim.lr' repeats a value: [0.03, 0.03]",
    ),
    (
        '"optim.lr" = [0.03, 0.3]',
        '"optim.lrr" = [0.03, 0.3]',
        "[sweep]: unknown key 'optim.lrr'; did you mean 'optim.lr'?",
    ),
    (
        "seeds = [0, 1]",
        "seeds = [0, 0]",
        "[study] seeds must be a non-empty list of distinct integers, got [0, 0]",
    ),
    (
        "target_accuracy = 0.25",
        'select_metric = "test_accuracy"',
        "[study] select_metric must be a validation metric (val_*), never a test one, got "
        "'test_accuracy'",
    ),
    (
        "validation_fraction = 0.25",
        "validation_fraction = 0.0",
        "a sweep selects on the validation split; set [base.data] validation_fraction > 0",
    ),
    (
        'baseline = "sgd"',
        'baseline = "sdg"',
        "claim 1: baseline 'sdg' is not an arm; did you mean 'sgd'? (arms: sgd, momentum)",
    ),
    (
        'set = { "optim.name" = "momentum" }',
        'set = { "optim.name" = "momentun" }',
        "arm 'momentum' at lr=0.03: config: optim.name: unknown optimizer 'momentun'; did you "
        "mean 'momentum'? (known: sgd, momentum, nag, sgdw, adagrad, rmsprop, adadelta, adam, "
        "amsgrad, adamax, nadam, adamw, radam, lars, lamb, lion, adan, "
        "schedule_free_sgd, schedule_free_adamw)",
    ),
    # a metric no run records would train every run and then decide nothing
    (
        'metric = "test_accuracy"',
        'metric = "test_acc"',
        "claim 1: metric 'test_acc' is not recorded by the runs of arm 'momentum'; did you mean "
        f"'test_accuracy'? ({RECORDED}, good_region)",
    ),
    (
        'metric = "test_accuracy"',
        'metric = "test_accuracy"\nbaseline_metric = "test_los"',
        "claim 1: baseline_metric 'test_los' is not recorded by the runs of arm 'sgd'; did you "
        f"mean 'test_loss'? ({RECORDED}, good_region)",
    ),
    (
        'metric = "test_accuracy"',
        'metric = "ensemble_test_accuracy"',
        "claim 1: metric 'ensemble_test_accuracy' is not recorded by the runs of arm 'momentum'; "
        f"it needs checkpoint.snapshot_ensemble > 0 ({RECORDED}, good_region)",
    ),
    (
        'metrics = ["test_accuracy", "test_loss"]',
        'metrics = ["test_accuracy", "sharpness"]',
        "[study] metrics: 'sharpness' is not recorded by any run; it needs [study] measures = "
        f'["sharpness"] ({RECORDED})',
    ),
    (
        'metric = "test_accuracy"',
        'metric = "test_accuracy"\ntest = "noninferior"',
        "claim 1: a 'noninferior' test needs a margin > 0",
    ),
    (
        'metric = "test_accuracy"',
        'metric = "test_accuracy"\ntest = "better"',
        "claim 1: test must be one of 'superior', 'equivalent', 'noninferior', got 'better'",
    ),
    (
        'metric = "test_accuracy"',
        'metric = "test_accuracy"\nsmallest_effect = -0.01',
        "claim 1: smallest_effect must be a number >= 0, got -0.01",
    ),
    (
        'metric = "test_accuracy"',
        'metric = "test_accuracy"\ntest = "equivalent"\nmargin = 0.01\nsmallest_effect = 0.01',
        "claim 1: smallest_effect = 0.01 applies to a 'superior' claim only; an 'equivalent' "
        "claim's margin already says which difference matters",
    ),
    (
        "target_accuracy = 0.25",
        'select_metric = "val_acc"',
        "[study]: select_metric 'val_acc' is not recorded by every run; did you mean "
        "'val_accuracy'? (recorded: val_loss, val_accuracy)",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD)
def test_bad_specs_are_errors_with_exact_messages(
    spec_error: Callable[[str], str],
    tiny_text: Callable[..., str],
    old: str,
    new: str,
    message: str,
) -> None:
    text = tiny_text()
    assert old in text
    assert spec_error(text.replace(old, new)) == message


def test_a_grid_axis_cannot_also_be_set_by_an_arm(
    write_spec: Callable[..., Path], tiny_text: Callable[..., str]
) -> None:
    text = tiny_text().replace("[sweep]", '[grid]\n"optim.name" = ["sgd", "adam"]\n\n[sweep]')
    path = write_spec(text)
    message = (
        f"{path}: arm 'momentum' sets 'optim.name', which is a [grid] axis; an axis key is "
        "set by the grid only"
    )
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(path)


def test_a_claim_on_a_grid_must_say_where(
    write_spec: Callable[..., Path], tiny_text: Callable[..., str]
) -> None:
    text = tiny_text().replace("[sweep]", '[grid]\n"train.batch_size" = [16, 32]\n\n[sweep]')
    path = write_spec(text)
    message = (
        f"{path}: claim 1: the study has a grid; say at which point, e.g. at = "
        "{'train.batch_size' = 16}"
    )
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(path)


def test_scale_keys_derive_steps_and_lr(
    write_spec: Callable[..., Path], tiny_text: Callable[..., str]
) -> None:
    text = (
        tiny_text()
        .replace(
            "[sweep]",
            '[grid]\n"train.batch_size" = [16, 64]\n\n[sweep]',
        )
        .replace(
            'set = { "optim.name" = "momentum" }',
            'set = { "optim.name" = "momentum", "scale.lr" = "linear", '
            '"scale.reference_batch" = 16,'
            ' "scale.epochs" = 2, "scale.train_samples" = 320, "schedule.lr" = '
            '"warmup({steps // 4}) >> cosine({steps - steps // 4})" }',
        )
        .replace(
            'metric = "test_accuracy"', 'metric = "test_accuracy"\nat = {"train.batch_size" = 64}'
        )
    )
    plans = [p for p in expand(load_spec(write_spec(text))) if p.arm == "momentum"]
    by_batch = {(p.grid["train.batch_size"], p.sweep["optim.lr"]): p.config for p in plans}
    assert by_batch[(64, 0.03)]["optim"]["lr"] == pytest.approx(0.12)
    assert by_batch[(64, 0.03)]["train"]["steps"] == 10
    assert by_batch[(16, 0.03)]["train"]["steps"] == 40
    assert by_batch[(16, 0.03)]["schedule"]["lr"] == "warmup(10) >> cosine(30)"


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=re.escape(f"study: no such file '{tmp_path}/x.toml'")):
        load_spec(tmp_path / "x.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\n", encoding="utf-8")
    with pytest.raises(SpecError, match=re.escape(f"{bad}: not valid TOML")):
        load_spec(bad)


def test_a_claim_on_the_snapshot_ensemble_needs_the_baselines_own_metric(
    write_spec: Callable[..., Path], tiny_text: Callable[..., str]
) -> None:
    text = (
        tiny_text()
        .replace(
            'set = { "optim.name" = "momentum" }',
            'set = { "optim.name" = "momentum", "schedule.lr" = "sgdr(10)", '
            '"checkpoint.snapshot_ensemble" = 2 }',
        )
        .replace('metric = "test_accuracy"', 'metric = "ensemble_test_accuracy"')
    )
    path = write_spec(text)
    message = (
        f"{path}: claim 1: metric 'ensemble_test_accuracy' is not recorded by the runs of arm "
        "'sgd'; it needs checkpoint.snapshot_ensemble > 0 ("
    )
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(path)
    fixed = text.replace(
        'metric = "ensemble_test_accuracy"',
        'metric = "ensemble_test_accuracy"\nbaseline_metric = "test_accuracy"',
    )
    (claim,) = load_spec(write_spec(fixed)).claims
    assert (claim.metric, claim.baseline_metric) == ("ensemble_test_accuracy", "test_accuracy")


def test_measure_metrics_name_what_each_measure_records() -> None:
    from gradkit.studies._measures import MEASURES
    from gradkit.studies._metrics import MEASURE_METRICS
    from gradkit.train import build_model, config_from_dict

    assert set(MEASURE_METRICS) == set(MEASURES)
    config = config_from_dict(
        {"model": {"name": "resnet1d", "options": {"width": 4, "stages": 2, "depth": 1}}}
    )
    model = build_model(config, (40,), 10)
    inputs, labels = torch.randn(64, 40), torch.randint(0, 10, (64,))
    for name, measure in MEASURES.items():
        measured = measure.function(model, inputs, labels)
        numbers = {key for key, value in measured.items() if not isinstance(value, tuple)}
        assert numbers == set(MEASURE_METRICS[name]), name


def test_every_shipped_study_and_its_stored_copy_load() -> None:
    studies = Path(__file__).parents[2] / "studies"
    paths = sorted([*studies.glob("*.toml"), *studies.glob("*/study.toml")])
    assert len(paths) >= 9
    for path in paths:
        load_spec(path)  # a SpecError names the file


def test_every_shipped_report_follows_the_protocol() -> None:
    """The goal of the studies: no committed arm selected at the edge of its range, at least 10
    report seeds everywhere, none of them a tuning seed, and the stored copy is the spec."""
    studies = Path(__file__).parents[2] / "studies"
    specs = sorted(studies.glob("*.toml"))
    assert len(specs) >= 10
    for path in specs:
        folder = studies / path.stem
        assert (folder / "study.toml").read_text() == path.read_text(), path.stem
        spec = load_spec(path)
        report = json.loads((folder / "report.json").read_text())
        assert report["cells"], path.stem
        for cell in report["cells"]:
            where = f"{path.stem}: {cell['arm']}"
            assert cell["tuning"]["status"] == "tuned", where
            assert len(cell["seeds"]) >= 10, where
            assert not set(cell["seeds"]) & set(spec.tuning.seeds), where
