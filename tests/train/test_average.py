"""``optim.average`` in the engine: EMA/SWA weights against averages of the recorded iterates,
evaluation and best.pt on them, exact resume, and bad specs."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradkit.optim import update_bn
from gradkit.train import (
    ConfigError,
    TrainContext,
    TrainingData,
    load_checkpoint,
    read_jsonl,
    train,
)
from gradkit.train._average import parse_average
from gradkit.train._build import build_model
from gradkit.train._distributed import Distributed
from gradkit.train._evaluate import evaluate


class RecordWeights:
    """Keeps the model's weights after every step."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, ctx: TrainContext) -> None:
        self.weights[ctx.step] = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}


def averaged_model(config, data: TrainingData, state: dict) -> torch.nn.Module:
    model = build_model(config, (40,), data.classes)
    model.load_state_dict(state["average"]["module"])
    return model


def test_ema_is_the_moving_average_of_the_iterates_and_is_what_is_evaluated(
    data: TrainingData, make_config: Callable
) -> None:
    config = make_config('optim.average="ema(0.8)"', "data.validation_fraction=0.25")
    recorder = RecordWeights()
    result = train(config, data=data, callbacks=[recorder])
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    expected = dict(recorder.weights[1])
    for step in range(2, 21):
        for key, value in recorder.weights[step].items():
            expected[key] = 0.8 * expected[key] + 0.2 * value
    module = last["average"]["module"]
    assert last["average"]["n_averaged"] == 20
    for key, value in expected.items():
        assert torch.allclose(module[key], value, atol=1e-6), key
    assert not torch.allclose(module["head.weight"], last["model"]["head.weight"], atol=1e-4)

    evals = read_jsonl(result.run_dir / "evals.jsonl")
    model = averaged_model(config, data, last)
    x, y = (torch.stack([s[i] for s in data.test]) for i in (0, 1))
    loss, _ = evaluate([model], x, y, batch_size=64, dist=Distributed())
    assert evals[-1]["test_loss"] == pytest.approx(loss, rel=1e-6)
    assert evals[-1]["iterate_test_loss"] != pytest.approx(loss, rel=1e-6)
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    chosen = max(evals, key=lambda e: e["val_accuracy"])
    assert best["best_value"] == chosen["val_accuracy"] and "average" in best


def test_swa_averages_from_start_every_k_steps_with_batch_norm_recomputed(
    data: TrainingData, make_config: Callable
) -> None:
    config = make_config(
        "model.name=resnet1d",
        "model.options={width = 4, depth = 1, stages = 1}",
        'optim.average="swa(start=10, every=4)"',
    )
    recorder = RecordWeights()
    result = train(config, data=data, callbacks=[recorder])
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    steps = [10, 14, 18]
    assert last["average"]["n_averaged"] == len(steps)
    module = last["average"]["module"]
    for key, value in module.items():
        if "running" in key or "num_batches" in key:
            continue
        mean = torch.stack([recorder.weights[s][key] for s in steps]).mean(0)
        assert torch.allclose(value, mean, atol=1e-6), key
    # The statistics in the average are those of the averaged weights on the training inputs.
    model = averaged_model(config, data, last)
    train_x = torch.stack([s[0] for s in data.train])
    update_bn([train_x[i : i + 64] for i in range(0, len(train_x), 64)], model)
    for key, value in model.state_dict().items():
        if "running" in key:
            assert torch.allclose(module[key], value, atol=1e-6), key
    evals = read_jsonl(result.run_dir / "evals.jsonl")
    # At step 10 the average is the iterate itself (up to its batch-norm statistics).
    assert [e["step"] for e in evals] == [10, 20]
    assert "iterate_test_accuracy" in evals[0]
    with open(result.run_dir / "evals.csv", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [float(r["iterate_test_loss"]) for r in rows] == pytest.approx(
        [e["iterate_test_loss"] for e in evals]
    )


def test_resume_goes_on_with_the_same_average(data: TrainingData, make_config: Callable) -> None:
    settings = ['optim.average="swa(start=5, every=3)"', "train.deterministic=true"]
    whole = train(make_config(*settings, name="whole"), data=data)
    stopped = train(make_config(*settings, "train.steps=10", name="parts"), data=data)
    resumed = train(
        make_config(*settings, name="parts"), data=data, run_dir=stopped.run_dir, resume=True
    )
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert a["average"]["n_averaged"] == b["average"]["n_averaged"] == 6
    for key, value in a["average"]["module"].items():
        assert torch.equal(value, b["average"]["module"][key]), key
    assert (
        read_jsonl(whole.run_dir / "evals.jsonl")[-1]["test_loss"]
        == (read_jsonl(resumed.run_dir / "evals.jsonl")[-1]["test_loss"])
    )


def test_average_cannot_change_on_resume(data: TrainingData, make_config: Callable) -> None:
    stopped = train(make_config("train.steps=10"), data=data)
    changed = make_config('optim.average="ema(0.9)"')
    with pytest.raises(ConfigError, match=r"optim\.average cannot change on resume"):
        train(changed, data=data, run_dir=stopped.run_dir, resume=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ema", "optim.average='ema' does not parse; expected \"ema(decay)\""),
        ("ema(1.5)", "decay=1.5 must be in (0, 1)"),
        ("ema(0)", "decay=0.0 must be in (0, 1)"),
        ("ema(fast)", "decay='fast' is not a number"),
        ("ema(0.9, 0.8)", "unexpected argument '0.8'"),
        ("ema(beta=0.9)", "ema has no argument 'beta' (it takes decay)"),
        ("polyak(0.9)", "unknown averaging 'polyak'"),
        ("swa()", "swa needs start=STEP"),
        ("swa(start=-1)", "start=-1 must be an integer >= 0"),
        ("swa(start=5, every=0)", "every=0 must be an integer >= 1"),
        ("swa(start=5, every=2.5)", "every=2.5 must be an integer >= 1"),
        ("swa(start=5, start=6)", "start is given twice"),
        ("swa(start=21)", "starts at step 21, after the run's end (train.steps=20)"),
    ],
)
def test_bad_specs_are_config_errors(make_config: Callable, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(f"optim.average={spec!r}")


def test_positional_and_keyword_forms_parse_alike() -> None:
    assert parse_average("ema(0.99)") == parse_average(" EMA( decay = 0.99 ) ")
    assert parse_average("swa(100, 5)") == parse_average("swa(start=100, every=5)")
    assert parse_average("ema()").decay == 0.999
    assert parse_average("swa(start=7)").every == 1


def test_the_cli_prints_a_bad_spec_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradkit.cli import train as train_verb

    code = train_verb.main(['optim.average="swa(start=100)"', "train.steps=50"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "starts at step 100, after the run's end" in err[0]
