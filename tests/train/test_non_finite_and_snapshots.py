"""A NaN/inf loss (stop or skip), and snapshot ensembles at the cycle ends of SGDR."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from gradkit.models import create_model
from gradkit.schedules import ScheduledBatchSampler
from gradkit.train import (
    NonFiniteLossError,
    TrainingData,
    load_checkpoint,
    read_jsonl,
    train,
)


def poisoned(data: TrainingData, sample: int = 7) -> tuple[TrainingData, list[int]]:
    """``data`` with one infinite input; and the steps (1-based) whose batch holds it."""
    inputs, labels = (t.clone() for t in data.train.tensors)
    inputs[sample, 0] = math.inf
    sampler = ScheduledBatchSampler(len(labels), 32, seed=0)
    steps, step = [], 0
    while step < 20:
        for batch in sampler:
            step += 1
            if sample in batch and step <= 20:
                steps.append(step)
    return TrainingData(TensorDataset(inputs, labels), data.test, classes=10), steps


def test_non_finite_loss_stops_and_names_the_step(
    data: TrainingData, make_config: Callable
) -> None:
    bad, steps = poisoned(data)
    first = steps[0]
    assert first > 1
    config = make_config("checkpoint.every=1")
    run_dir = Path(config.log.root) / "run"
    message = (
        f"non-finite loss (nan) at step {first}; training stopped before that step's update "
        f"and the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'} "
        f"(step {first - 1})"
    )
    with pytest.raises(NonFiniteLossError, match=re.escape(message)):
        train(config, data=bad)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == first - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_loss_before_any_checkpoint(data: TrainingData, make_config: Callable) -> None:
    bad, _ = poisoned(data)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        train(make_config("checkpoint.every=0"), data=bad)


def test_non_finite_loss_can_skip_the_step(data: TrainingData, make_config: Callable) -> None:
    bad, steps = poisoned(data)
    result = train(make_config("train.non_finite=skip"), data=bad)
    assert result.steps == 20 and result.skipped_steps == len(steps) >= 2
    records = read_jsonl(result.run_dir / "steps.jsonl")
    nan_steps = [r["step"] for r in records if r["loss"] == "nan"]
    assert nan_steps == steps
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert state["skipped"] == len(steps)


def test_snapshot_ensemble(data: TrainingData, make_config: Callable) -> None:
    config = make_config(
        'schedule.lr="sgdr(5)"', "checkpoint.snapshot_ensemble=3", "train.eval_every=0"
    )
    result = train(config, data=data)
    evals = read_jsonl(result.run_dir / "evals.jsonl")
    assert [e["step"] for e in evals] == [5, 10, 15, 20]
    assert [e["ensemble_size"] for e in evals] == [1, 2, 3, 3]
    # One snapshot is the model itself.
    assert evals[0]["ensemble_test_accuracy"] == evals[0]["test_accuracy"]
    snapshots = sorted((result.run_dir / "snapshots").iterdir())
    assert [p.name for p in snapshots] == ["step-0000010.pt", "step-0000015.pt", "step-0000020.pt"]
    # The ensemble's accuracy is that of the average of the snapshots' softmax outputs.
    inputs, labels = data.test.tensors
    probabilities = torch.zeros(len(labels), 10)
    for path in snapshots:
        model = create_model("mlp", width=16, in_features=40, classes=10)
        model.load_state_dict(load_checkpoint(path)["model"])
        with torch.no_grad():
            probabilities += model(inputs).softmax(dim=1) / 3
    accuracy = (probabilities.argmax(dim=1) == labels).float().mean().item()
    assert evals[-1]["ensemble_test_accuracy"] == pytest.approx(accuracy)
    assert evals[-1]["ensemble_test_accuracy"] != evals[-1]["test_accuracy"] or (
        evals[-1]["ensemble_test_loss"] != evals[-1]["test_loss"]
    )


def every_loss_non_finite(data: TrainingData) -> TrainingData:
    """``data`` with an infinite input in every sample: no step can have a finite loss."""
    inputs, labels = (t.clone() for t in data.train.tensors)
    inputs[:, 0] = math.inf
    return TrainingData(TensorDataset(inputs, labels), data.test, classes=10)


def test_skipping_stops_after_max_skipped_steps_in_a_row(
    data: TrainingData, make_config: Callable
) -> None:
    bad = every_loss_non_finite(data)
    config = make_config("train.non_finite=skip", "checkpoint.every=0")
    assert config.train.max_skipped == 10
    message = (
        "non-finite loss (nan) at 10 steps in a row (steps 1 to 10), train.max_skipped = 10; "
        "training stopped and no checkpoint was written yet. Lower optim.lr or clip gradients "
        "(optim.clip_grad_norm); raise train.max_skipped only if the losses recover"
    )
    with pytest.raises(NonFiniteLossError, match=re.escape(message)):
        train(config, data=bad)
    config = make_config("train.non_finite=skip", "train.max_skipped=3", name="three")
    with pytest.raises(NonFiniteLossError, match=re.escape("at 3 steps in a row (steps 1 to 3)")):
        train(config, data=bad)


class PoisonWeights:
    """Stands for an update that made the weights NaN (a finite loss, an overflowing step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, ctx: Any) -> None:
        if ctx.step == self.step:
            with torch.no_grad():
                ctx.model.input.weight[0, 0] = math.nan


# skip: the NaN loss of step 6 finds the NaN weights; stop: the checkpoint of step 8 does.
@pytest.mark.parametrize(("policy", "poisoned_at"), [("skip", 5), ("stop", 8)])
def test_nan_weights_are_an_error_and_never_a_checkpoint(
    data: TrainingData, make_config: Callable, policy: str, poisoned_at: int
) -> None:
    config = make_config(f"train.non_finite={policy}", "checkpoint.every=4", "train.eval_every=0")
    last = Path(config.log.root) / "run" / "checkpoints" / "last.pt"
    message = (
        f"the weights hold NaN/inf after step {poisoned_at} (input.weight); training stopped "
        f"without writing them and the last good checkpoint is {last} (step 4)"
    )
    with pytest.raises(NonFiniteLossError, match=re.escape(message)):
        train(config, data=data, callbacks=[PoisonWeights(poisoned_at)])
    state = load_checkpoint(last)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
