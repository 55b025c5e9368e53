"""The loop is the algorithm (checked against a hand-written loop); its hooks and files."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from gradkit.models import create_model
from gradkit.optim import create_optimizer, param_groups, unitwise_norm
from gradkit.schedules import ScheduledBatchSampler, parse
from gradkit.train import (
    EVAL_FIELDS,
    STEP_FIELDS,
    Config,
    ConfigError,
    TrainingData,
    load_checkpoint,
    load_config,
    read_jsonl,
    train,
)


def final_parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def hand_written(data: TrainingData, steps: int, batch_size: int) -> dict[str, torch.Tensor]:
    """The loop the engine must equal: Adam, lr 0.01, the sampler's batches."""
    torch.manual_seed(0)
    model = create_model("mlp", width=16, in_features=40, classes=10)
    optimizer = create_optimizer("adam", param_groups(model, weight_decay=0.0), lr=0.01)
    inputs, labels = data.train.tensors
    sampler = ScheduledBatchSampler(len(labels), batch_size, seed=0)
    batches = iter(lambda: list(sampler), None)  # epochs, forever
    taken = 0
    for epoch in batches:
        for batch in epoch:
            if taken == steps:
                return model.state_dict()
            index = torch.as_tensor(batch)
            loss = F.cross_entropy(model(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            taken += 1
    raise AssertionError("unreachable")


def test_engine_equals_a_hand_written_loop(data: TrainingData, make_config: Callable) -> None:
    config = make_config("train.steps=17")  # crosses an epoch boundary (240 / 32)
    result = train(config, data=data)
    expected = hand_written(data, 17, 32)
    for name, value in final_parameters(result.run_dir).items():
        assert torch.equal(value, expected[name]), name


def test_run_files(data: TrainingData, make_config: Callable) -> None:
    config = make_config("log.every=3")
    result = train(config, data=data)
    run = result.run_dir
    assert run == Path(config.log.root) / "run"
    assert load_config(run / "config.toml") == config
    with open(run / "steps.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == STEP_FIELDS
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12, 15, 18, 20]
    records = read_jsonl(run / "steps.jsonl")
    assert [r["step"] for r in records] == [3, 6, 9, 12, 15, 18, 20]
    assert all(r["loss"] > 0 and r["lr"] == 0.01 and r["batch_size"] == 32 for r in records)
    evals = read_jsonl(run / "evals.jsonl")
    assert [r["step"] for r in evals] == [10, 20]
    with open(run / "evals.csv", newline="") as stream:
        assert tuple(next(csv.reader(stream))) == EVAL_FIELDS
    assert evals[-1]["test_accuracy"] == result.test_accuracy
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["metrics"] == result.metrics
    # No validation split: 'auto' selects no best.pt rather than select on test.
    assert summary["best"] == {"metric": None, "value": None, "step": None}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "previous.pt"}
    assert load_checkpoint(run / "checkpoints" / "previous.pt")["step"] == 10
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20


def test_training_learns(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config("train.steps=150", "train.eval_every=0"), data=data)
    assert result.test_accuracy > 0.3  # chance is 0.1


class Recorder:
    """Writes down every hook call with the step the context shows."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_train_start(self, ctx: Any) -> None:
        assert isinstance(ctx.model, torch.nn.Module)
        assert isinstance(ctx.optimizer, torch.optim.Optimizer)
        assert isinstance(ctx.config, Config) and ctx.run_dir.is_dir()
        self.calls.append(("on_train_start", ctx.step))

    def after_backward(self, ctx: Any) -> None:
        assert all(p.grad is not None for p in ctx.model.parameters())
        self.calls.append(("after_backward", ctx.step))

    def on_step_end(self, ctx: Any) -> None:
        self.calls.append(("on_step_end", ctx.step))

    def on_eval(self, ctx: Any, metrics: dict[str, Any]) -> None:
        assert metrics["step"] == ctx.step
        self.calls.append(("on_eval", ctx.step))

    def on_train_end(self, ctx: Any) -> None:
        self.calls.append(("on_train_end", ctx.step))


class OnlyStepEnd:
    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.steps = stop_at, []

    def on_step_end(self, ctx: Any) -> None:
        self.steps.append(ctx.step)
        ctx.should_stop = ctx.step == self.stop_at


def test_callbacks_are_called_in_order(data: TrainingData, make_config: Callable) -> None:
    recorder, partial = Recorder(), OnlyStepEnd(stop_at=99)
    train(
        make_config("train.steps=4", "train.eval_every=2"), data=data, callbacks=[recorder, partial]
    )
    expected = [("on_train_start", 0)]
    for step in range(1, 5):
        expected += [("after_backward", step - 1), ("on_step_end", step)]
        if step % 2 == 0:
            expected.append(("on_eval", step))
    expected.append(("on_train_end", 4))
    assert recorder.calls == expected
    assert partial.steps == [1, 2, 3, 4]


def test_a_callback_can_stop_the_run(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config(), data=data, callbacks=[OnlyStepEnd(stop_at=6)])
    assert result.steps == 6
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == 6
    assert read_jsonl(result.run_dir / "evals.jsonl")[-1]["step"] == 6


def test_a_callback_without_hooks_is_refused(data: TrainingData, make_config: Callable) -> None:
    with pytest.raises(TypeError, match="defines none of the hooks"):
        train(make_config(), data=data, callbacks=[object()])


def test_gradient_accumulation_equals_the_full_batch(
    data: TrainingData, make_config: Callable
) -> None:
    full = train(make_config(name="full"), data=data)
    pieces = train(make_config("train.micro_batch_size=10", name="pieces"), data=data)
    expected = final_parameters(full.run_dir)
    for name, value in final_parameters(pieces.run_dir).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6)


class GradientsAtStep:
    """Records the gradients the optimizer steps with (after clipping)."""

    def __init__(self) -> None:
        self.before: list[dict[str, torch.Tensor]] = []
        self.at_step: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, ctx: Any) -> None:
        def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
            self.at_step.append({n: p.grad.clone() for n, p in ctx.model.named_parameters()})

        ctx.optimizer.register_step_pre_hook(hook)

    def after_backward(self, ctx: Any) -> None:
        self.before.append({n: p.grad.clone() for n, p in ctx.model.named_parameters()})


def test_agc_clips_every_unit_but_the_head(data: TrainingData, make_config: Callable) -> None:
    recorder = GradientsAtStep()
    train(make_config("train.steps=3", "optim.agc=0.001"), data=data, callbacks=[recorder])
    assert len(recorder.at_step) == 3
    clipped = False
    for before, after in zip(recorder.before, recorder.at_step, strict=True):
        assert torch.equal(before["head.weight"], after["head.weight"])
        assert torch.equal(before["head.bias"], after["head.bias"])
        clipped |= not torch.equal(before["input.weight"], after["input.weight"])
    assert clipped


def test_agc_leaves_excluded_parameters_alone(data: TrainingData, make_config: Callable) -> None:
    recorder = GradientsAtStep()
    config = make_config("train.steps=3", "optim.agc=0.001", 'optim.agc_exclude=["input.*"]')
    assert config.optim.agc_exclude == ("input.*",)
    train(config, data=data, callbacks=[recorder])
    clipped = False
    for before, after in zip(recorder.before, recorder.at_step, strict=True):
        assert torch.equal(before["input.weight"], after["input.weight"])
        assert torch.equal(before["input.bias"], after["input.bias"])
        others = [name for name in before if not name.startswith(("input.", "head."))]
        assert others
        clipped |= any(not torch.equal(before[n], after[n]) for n in others)
    assert clipped


def test_agc_exclude_names_a_pattern_that_matches_nothing(
    data: TrainingData, make_config: Callable
) -> None:
    config = make_config("optim.agc=0.01", 'optim.agc_exclude=["*skip_gain"]')
    with pytest.raises(ConfigError, match=r"agc_exclude pattern '\*skip_gain' matches no param"):
        train(config, data=data)
    with pytest.raises(ConfigError, match=r"optim.agc_exclude must be a list of strings, got 3"):
        make_config("optim.agc_exclude=3")
    with pytest.raises(ConfigError, match=r"optim.agc_exclude must be a list of strings"):
        make_config('optim.agc_exclude=["ok", ""]')


def test_global_norm_clipping(data: TrainingData, make_config: Callable) -> None:
    recorder = GradientsAtStep()
    result = train(
        make_config("train.steps=3", "optim.clip_grad_norm=0.05"), data=data, callbacks=[recorder]
    )
    for before, after in zip(recorder.before, recorder.at_step, strict=True):
        norm_before = torch.linalg.vector_norm(torch.cat([g.flatten() for g in before.values()]))
        norm_after = torch.linalg.vector_norm(torch.cat([g.flatten() for g in after.values()]))
        assert norm_before > 0.05
        assert norm_after == pytest.approx(0.05, rel=1e-4)
    records = read_jsonl(result.run_dir / "steps.jsonl")
    assert all(r["grad_norm"] > 0.05 for r in records)  # the norm before clipping


def test_unitwise_norm_is_what_agc_bounds() -> None:
    # The bound the AGC test relies on, in the layout it clips.
    weight = torch.ones(3, 4)
    assert torch.equal(unitwise_norm(weight).flatten(), torch.full((3,), 2.0))


class CountTrainingForwards:
    def __init__(self) -> None:
        self.count = 0

    def on_train_start(self, ctx: Any) -> None:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            self.count += module.training

        ctx.model.register_forward_hook(hook)


def test_sam_takes_two_gradients_per_step(data: TrainingData, make_config: Callable) -> None:
    counter = CountTrainingForwards()
    sam = train(make_config("optim.sam_rho=0.05", name="sam"), data=data, callbacks=[counter])
    assert counter.count == 2 * 20
    plain = train(make_config(name="plain"), data=data)
    a, b = final_parameters(sam.run_dir), final_parameters(plain.run_dir)
    assert not torch.equal(a["input.weight"], b["input.weight"])
    assert sam.test_accuracy > 0.2


def test_lr_schedule_drives_the_optimizer(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config('schedule.lr="warmup(5) >> cosine(15)"', "log.every=1"), data=data)
    lrs = [r["lr"] for r in read_jsonl(result.run_dir / "steps.jsonl")]
    # The record of step k (1-based) shows the rate that step used: schedule(k - 1).
    assert lrs[:5] == pytest.approx([0.01 * k / 5 for k in range(1, 6)])
    schedule = parse("warmup(5) >> cosine(15)")
    assert lrs == pytest.approx([0.01 * schedule(k) for k in range(20)])


def test_batch_size_schedule(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config('schedule.batch="multistep([5], gamma=2.0)"'), data=data)
    sizes = [r["batch_size"] for r in read_jsonl(result.run_dir / "steps.jsonl")]
    # 240 samples: five batches of 32 (160), then 64 + a remainder of 16 closes epoch 0.
    assert sizes[:7] == [32, 32, 32, 32, 32, 64, 16]
    assert sizes[7:] == [64, 64, 64, 48] * 3 + [64]


def test_validation_split_and_best_checkpoint(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config("data.validation_fraction=0.25", "train.eval_every=5"), data=data)
    evals = read_jsonl(result.run_dir / "evals.jsonl")
    assert all("val_accuracy" in e and "test_accuracy" in e for e in evals)
    best = max(evals, key=lambda e: (e["val_accuracy"], -e["step"]))
    state = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert state["step"] == best["step"]
    assert state["best_value"] == best["val_accuracy"]
    assert result.best == {
        "metric": "val_accuracy",
        "value": best["val_accuracy"],
        "step": best["step"],
    }
    # The validation part is held out of training: 180 samples, so epoch 0 has 6 batches.
    sizes = [r["batch_size"] for r in read_jsonl(result.run_dir / "steps.jsonl")]
    assert sizes[:6] == [32, 32, 32, 32, 32, 20]


def test_deterministic_mode_is_restored(data: TrainingData, make_config: Callable) -> None:
    assert not torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    train(make_config("train.deterministic=true", "train.threads=2", "train.steps=2"), data=data)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads


def test_progress_bar_on_request(
    data: TrainingData, make_config: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    train(make_config("log.progress=on"), data=data)
    assert "20/20" in capsys.readouterr().err
    train(make_config("log.progress=auto", name="auto"), data=data)  # stderr is no terminal
    assert "20/20" not in capsys.readouterr().err


def test_tensorboard_on_without_the_package(data: TrainingData, make_config: Callable) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here: 'on' works")
    with pytest.raises(ConfigError, match="the tensorboard package is not installed"):
        train(make_config("log.tensorboard=on"), data=data)


def test_auto_never_selects_best_on_test(data: TrainingData, make_config: Callable) -> None:
    result = train(make_config("train.eval_every=5"), data=data)
    assert not (result.run_dir / "checkpoints" / "best.pt").exists()
    assert result.best == {"metric": None, "value": None, "step": None}
    # Selecting on test stays possible when asked for by name.
    asked = train(make_config("checkpoint.best_metric=test_loss", name="asked"), data=data)
    assert asked.best is not None and asked.best["metric"] == "test_loss"
    assert (asked.run_dir / "checkpoints" / "best.pt").exists()
    off = train(make_config("checkpoint.best=false", name="off"), data=data)
    assert off.best is None
