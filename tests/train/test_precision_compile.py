"""``train.precision = "bf16"`` and ``train.compile = true``: what they change, exact resume."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from gradkit.train import (
    ConfigError,
    TrainContext,
    TrainingData,
    load_checkpoint,
    read_jsonl,
    train,
)


class HeadDtypes:
    """The dtype of the head's output at each forward, split by training and evaluation."""

    def __init__(self) -> None:
        self.seen: set[tuple[bool, torch.dtype]] = set()

    def on_train_start(self, ctx: TrainContext) -> None:
        def hook(module: torch.nn.Module, _: object, output: torch.Tensor) -> None:
            self.seen.add((module.training, output.dtype))

        ctx.model.head.register_forward_hook(hook)


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_autocasts_training_and_evaluation_and_keeps_float32_weights(
    data: TrainingData, make_config: Callable
) -> None:
    dtypes = HeadDtypes()
    result = train(make_config("train.precision=bf16", name="bf16"), data=data, callbacks=[dtypes])
    assert dtypes.seen == {(True, torch.bfloat16), (False, torch.bfloat16)}
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    plain = train(make_config(name="fp32"), data=data)
    bf16_losses = [r["loss"] for r in read_jsonl(result.run_dir / "steps.jsonl")]
    fp32_losses = [r["loss"] for r in read_jsonl(plain.run_dir / "steps.jsonl")]
    assert bf16_losses != fp32_losses
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.05)


@pytest.mark.parametrize("setting", ["train.precision=bf16", "train.compile=true"])
def test_resume_is_exact(data: TrainingData, make_config: Callable, setting: str) -> None:
    settings = [setting, "train.deterministic=true", "train.steps=8", "checkpoint.every=4"]
    settings.append("train.eval_every=4")
    whole = train(make_config(*settings, name="whole"), data=data)
    stopped = train(make_config(*settings, "train.steps=4", name="parts"), data=data)
    resumed = train(
        make_config(*settings, name="parts"), data=data, run_dir=stopped.run_dir, resume=True
    )
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 8
    assert same_weights(a["model"], b["model"])
    steps_a = [r["loss"] for r in read_jsonl(whole.run_dir / "steps.jsonl")]
    steps_b = [r["loss"] for r in read_jsonl(resumed.run_dir / "steps.jsonl")]
    assert steps_a == steps_b


def test_compiled_training_matches_the_plain_run(data: TrainingData, make_config: Callable) -> None:
    settings = ["train.deterministic=true", "train.steps=6"]
    compiled = train(make_config(*settings, "train.compile=true", name="compiled"), data=data)
    plain = train(make_config(*settings, name="plain"), data=data)
    a = load_checkpoint(compiled.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(plain.run_dir / "checkpoints" / "last.pt")["model"]
    assert set(a) == set(b)  # the plain module's names, no "_orig_mod." prefix
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.precision=fp16", "train.precision must be one of 'fp32', 'bf16', got 'fp16'"),
        ("train.compile=yes", "train.compile must be true or false, got 'yes'"),
    ],
)
def test_bad_values(make_config: Callable, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(override)
