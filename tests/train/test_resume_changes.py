"""What may change on resume: the model, the optimizer and the data may not; the rest may."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gradkit.schedules import parse
from gradkit.train import Config, ConfigError, TrainingData, read_jsonl, train
from gradkit.train._resume import CHANGEABLE_ON_RESUME, FIXED_ON_RESUME


def test_every_key_is_either_fixed_or_changeable_on_resume() -> None:
    keys = {
        f"{section}.{key}" for section, table in Config().__dict__.items() for key in vars(table)
    }
    assert set(FIXED_ON_RESUME).isdisjoint(CHANGEABLE_ON_RESUME)
    assert set(FIXED_ON_RESUME) | set(CHANGEABLE_ON_RESUME) == keys


@pytest.fixture
def stopped(data: TrainingData, make_config: Callable) -> Path:
    """A run of 10 steps (a checkpoint at 10) that is to be resumed to 20."""
    return train(make_config("train.steps=10", "checkpoint.every=5"), data=data).run_dir


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optim.name=sgd",
            "config: optim.name cannot change on resume ('adam' -> 'sgd'): it decides the "
            "optimizer, and the checkpoint was made with the old value; start a new run "
            "(a new directory) to change it",
        ),
        (
            "model.options.width=32",
            "config: model.options.width cannot change on resume (16 -> 32)",
        ),
        ("optim.options.betas=[0.5, 0.9]", "config: optim.options.betas cannot change on resume"),
        ("train.batch_size=16", "config: train.batch_size cannot change on resume (32 -> 16)"),
        ("data.validation_fraction=0.2", "config: data.validation_fraction cannot change"),
        ("checkpoint.best_metric=test_loss", "config: checkpoint.best_metric cannot change"),
    ],
)
def test_a_change_of_what_the_checkpoint_holds_is_refused(
    data: TrainingData, make_config: Callable, stopped: Path, override: str, message: str
) -> None:
    saved = (stopped / "config.toml").read_text()
    changed = make_config("train.steps=20", override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(changed, data=data, run_dir=stopped, resume=True)
    assert (stopped / "config.toml").read_text() == saved


def test_the_lr_schedule_may_change_past_the_checkpoint(
    data: TrainingData, make_config: Callable, stopped: Path
) -> None:
    changed = make_config(
        "train.steps=20", 'schedule.lr="constant(steps=10) >> linear(10)"', "train.eval_every=4"
    )
    result = train(changed, data=data, run_dir=stopped, resume=True)
    assert result.steps == 20
    records = read_jsonl(stopped / "steps.jsonl")
    assert [r["step"] for r in records] == list(range(1, 21))
    schedule = parse("constant(steps=10) >> linear(10)")
    # Steps 1..10 kept the constant rate they had; steps 11..20 follow the new schedule.
    assert [r["lr"] for r in records[:10]] == pytest.approx([0.01] * 10)
    assert [r["lr"] for r in records[10:]] == pytest.approx(
        [0.01 * schedule(k) for k in range(10, 20)]
    )
    assert [e["step"] for e in read_jsonl(stopped / "evals.jsonl")] == [10, 12, 16, 20]
