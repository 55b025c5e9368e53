"""Cross-run interpolations: exact ends, resuming, failures, spec errors and the report."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradkit.data import load_dataset
from gradkit.diagnostics._evaluation import dataset_loss
from gradkit.studies import STORE_NAME, Store, load_spec, run_study, write_report
from gradkit.studies._measures import MEASURE_SAMPLES
from gradkit.train import build_model, config_from_dict, load_checkpoint


def _final_model(out: Path, run_id: str, config: dict) -> torch.nn.Module:
    """The run's final model, from its own last checkpoint (not from the store's weights)."""
    parsed = config_from_dict(config)
    splits = load_dataset(parsed.data.name, **parsed.data.options)
    model = build_model(parsed, tuple(splits.train.tensors[0].shape[1:]), 10)
    model.load_state_dict(
        load_checkpoint(out / "runs" / run_id / "checkpoints" / "last.pt")["model"]
    )
    return model.eval()


def test_the_ends_are_the_two_runs_own_final_models(interpolated_study: Path) -> None:
    with Store(interpolated_study / STORE_NAME) as store:
        runs = {run.run_id: run for run in store.runs()}
        lines = store.interpolations()
    assert len(lines) == 8 and all(line.status == "done" for line in lines)
    first = runs[lines[0].from_run]
    parsed = config_from_dict(first.config)
    splits = load_dataset(parsed.data.name, **parsed.data.options)
    train = tuple(t[:MEASURE_SAMPLES] for t in splits.train.tensors[:2])
    test = tuple(splits.test.tensors[:2])
    for line in lines:
        start, end = runs[line.from_run], runs[line.to_run]
        assert (start.arm, end.arm) == ("sgd", "momentum")
        assert start.seed == end.seed
        alphas = line.curve["alpha"]
        assert alphas == [-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
        for run, alpha in ((start, 0.0), (end, 1.0)):
            at = alphas.index(alpha)
            # the training loop's own final evaluation on the test split
            assert line.curve["test_loss"][at] == pytest.approx(run.metrics["test_loss"], rel=1e-6)
            assert line.curve["test_accuracy"][at] == run.metrics["test_accuracy"]
            model = _final_model(interpolated_study, run.run_id, run.config)
            for split, data in (("train", train), ("test", test)):
                loss, accuracy = dataset_loss(model, data, accuracy=True)
                assert line.curve[f"{split}_loss"][at] == pytest.approx(loss, rel=1e-6)
                assert line.curve[f"{split}_accuracy"][at] == accuracy
        # between the ends the line is not either end
        assert line.curve["train_loss"][alphas.index(0.5)] not in (
            line.curve["train_loss"][alphas.index(0.0)],
            line.curve["train_loss"][alphas.index(1.0)],
        )


def test_a_resumed_runner_does_not_recompute_stored_interpolations(
    interpolated_study: Path,
) -> None:
    with Store(interpolated_study / STORE_NAME) as store:
        before = {(r.name, r.from_run, r.to_run): r for r in store.interpolations()}
    connection = sqlite3.connect(interpolated_study / STORE_NAME)
    finished = dict(
        connection.execute("SELECT from_run || to_run, finished FROM interpolations").fetchall()
    )
    removed = next(iter(before))
    with connection:
        connection.execute(
            "DELETE FROM interpolations WHERE from_run = ? AND to_run = ?", removed[1:]
        )
    outcome = run_study(
        interpolated_study / "study.toml", interpolated_study, threads=1, progress=False
    )
    assert outcome.ran == ()
    assert outcome.interpolated == (removed,)  # only the missing one
    after = dict(
        connection.execute("SELECT from_run || to_run, finished FROM interpolations").fetchall()
    )
    connection.close()
    for key, value in finished.items():
        if key != removed[1] + removed[2]:
            assert after[key] == value
    with Store(interpolated_study / STORE_NAME) as store:
        again = {(r.name, r.from_run, r.to_run): r for r in store.interpolations()}
    assert again[removed].curve == before[removed].curve


def test_the_report_shows_the_interpolations(interpolated_study: Path) -> None:
    markdown = (interpolated_study / "REPORT.md").read_text(encoding="utf-8")
    html = (interpolated_study / "report.html").read_text(encoding="utf-8")
    numbers = json.loads((interpolated_study / "report.json").read_text(encoding="utf-8"))
    assert "## Interpolations" in markdown and "<h2>Interpolations</h2>" in html
    assert "![interpolation between the solutions" in markdown
    assert (interpolated_study / "plots" / "interpolation.png").stat().st_size > 0
    assert html.count("data:image/png;base64,") == markdown.count("![")
    (line,) = numbers["interpolations"]
    assert line["seeds"] == [0, 1]
    cells = {cell["arm"]: cell for cell in numbers["cells"]}
    # the report's line joins the runs selected on validation, and its ends are theirs
    for arm, at in (("sgd", "0"), ("momentum", "1")):
        mean = cells[arm]["metrics"]["test_accuracy"]["mean"]
        per_seed = line["per_seed"][f"test_accuracy_at_{at}"]
        assert sum(per_seed) / len(per_seed) == pytest.approx(mean, rel=1e-12)
    row = next(r for r in markdown.splitlines() if r.startswith("| sgd_to_momentum |"))
    assert "| sgd → momentum | — | 2 |" in row


def test_a_failed_interpolation_is_recorded_and_the_runs_are_kept(
    write_spec: Callable[..., Path],
    tiny_text: Callable[..., str],
    interpolation: str,
    tmp_path: Path,
) -> None:
    # the two arms' models differ, so the line between them cannot be drawn
    text = tiny_text(extra=interpolation).replace(
        'set = { "optim.name" = "momentum" }',
        'set = { "optim.name" = "momentum", "model.name" = "mlp" }',
    )
    spec_path, out = write_spec(text), tmp_path / "out"
    outcome = run_study(spec_path, out, threads=1, progress=False)
    assert outcome.failed == {}
    assert len(outcome.interpolation_failed) == 8
    assert all(
        e.startswith("ValueError: interpolation_curve: end is not a state_dict of the model (")
        for e in outcome.interpolation_failed.values()
    )
    with Store(out / STORE_NAME) as store:
        assert all(run.status == "done" for run in store.runs())
        lines = store.interpolations()
    assert all(
        line.status == "failed" and "_interpolation.py" in (line.error or "") for line in lines
    )
    assert run_study(spec_path, out, threads=1, progress=False).interpolated == ()
    again = run_study(spec_path, out, threads=1, progress=False, retry_failed=True)
    assert set(again.interpolated) == set(outcome.interpolation_failed) and again.ran == ()
    markdown = write_report(out)["markdown"].read_text(encoding="utf-8")
    assert "## Failed interpolations" in markdown
    assert "| sgd_to_momentum | sgd → momentum | — | 0 (2 failed) | — |" in markdown


def test_only_the_ends_of_an_interpolation_keep_their_weights(
    write_spec: Callable[..., Path],
    tiny_text: Callable[..., str],
    interpolation: str,
    broken_arm: str,
) -> None:
    spec = load_spec(write_spec(tiny_text(extra=interpolation + broken_arm)))
    from gradkit.studies import expand

    keep = {plan.arm: plan.keep_weights for plan in expand(spec)}
    assert keep == {"sgd": True, "momentum": True, "broken": False}
    plain = load_spec(write_spec(tiny_text(), name="plain"))
    # asking for an interpolation does not change the runs' ids (their results are kept)
    ids = {p.run_id for p in expand(spec) if p.arm != "broken"}
    assert ids == {p.run_id for p in expand(plain)}


BAD = [
    (
        'from = "sgd"',
        'from = "sdg"',
        "interpolation 'sgd_to_momentum': from 'sdg' is not an arm; did you mean 'sgd'? "
        "(arms: sgd, momentum)",
    ),
    (
        'to = "momentum"',
        'to = "sgd"',
        "interpolation 'sgd_to_momentum': from and to are the same arm 'sgd'",
    ),
    (
        'to = "momentum"',
        'too = "momentum"',
        "interpolation 1: unknown key 'too'; did you mean 'to'? (allowed: name, from, to, "
        "alphas, description)",
    ),
    ('name = "sgd_to_momentum"', "", "interpolation 1: needs a name (a non-empty string)"),
    (
        "alphas = { start = -0.5, stop = 1.5, points = 9 }",
        "",
        "interpolation 'sgd_to_momentum': needs alphas, e.g. { start = -0.5, stop = 1.5, "
        "points = 21 }",
    ),
    (
        "points = 9",
        "points = 1",
        "interpolation 'sgd_to_momentum': alphas points must be an integer >= 2, got 1",
    ),
    (
        "stop = 1.5",
        "stop = -1.0",
        "interpolation 'sgd_to_momentum': alphas needs numbers start < stop, got start=-0.5, "
        "stop=-1.0",
    ),
    (
        "points = 9",
        "step = 9",
        "interpolation 'sgd_to_momentum': alphas must be a table with start, stop and points, "
        "got {'start': -0.5, 'stop': 1.5, 'step': 9}",
    ),
    (
        "{ start = -0.5, stop = 1.5, points = 9 }",
        "[0.0, 0.5, 0.9]",
        "interpolation 'sgd_to_momentum': alphas must contain 0 and 1 (the two solutions), "
        "got 0, 0.5, 0.9",
    ),
    (
        "{ start = -0.5, stop = 1.5, points = 9 }",
        "[0.0, 1.0, 0.5]",
        "interpolation 'sgd_to_momentum': alphas must increase, got [0.0, 1.0, 0.5]",
    ),
    (
        "{ start = -0.5, stop = 1.5, points = 9 }",
        '"0:1"',
        "interpolation 'sgd_to_momentum': alphas must be { start = ..., stop = ..., points = ... } "
        "or a list of numbers, got '0:1'",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD)
def test_bad_interpolations_are_errors_with_exact_messages(
    spec_error: Callable[[str], str],
    tiny_text: Callable[..., str],
    interpolation: str,
    old: str,
    new: str,
    message: str,
) -> None:
    text = tiny_text(extra=interpolation)
    assert old in text
    assert spec_error(text.replace(old, new)) == message


def test_two_interpolations_with_one_name_are_an_error(
    spec_error: Callable[[str], str], tiny_text: Callable[..., str], interpolation: str
) -> None:
    message = spec_error(tiny_text(extra=interpolation + interpolation))
    assert message == "two interpolations are called 'sgd_to_momentum'"


def test_the_curve_moves_batch_norm_statistics_with_the_weights() -> None:
    """With batch norm each end of the curve is its model exactly, running statistics
    included (the study fixture's model has no batch norm)."""
    from gradkit.studies import interpolation_curve

    def model_with(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        with torch.no_grad():
            model[1].running_mean.uniform_(-1, 1)
            model[1].running_var.uniform_(0.5, 2.0)
        return model.eval()

    first, last = model_with(0), model_with(1)
    generator = torch.Generator().manual_seed(2)
    data = (
        torch.randn(40, 6, generator=generator),
        torch.randint(0, 3, (40,), generator=generator),
    )
    curve = interpolation_curve(
        model_with(3), first.state_dict(), last.state_dict(), {"test": data}, [0.0, 1.0]
    )
    for loss, model in zip(curve["test_loss"], (first, last), strict=True):
        assert loss == pytest.approx(dataset_loss(model, data)[0], rel=1e-6)
