"""Data parallelism: 2 gloo processes under torchrun equal 1 process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gradkit.train import TrainingData, load_checkpoint, read_jsonl, train

WORKER = Path(__file__).with_name("worker.py")
# Global batch 32, split 16 + 16 over the processes and accumulated in pieces of 8 (no_sync);
# 10 steps cross the end of an epoch (240 samples), where the last batch holds 16. The test
# split has 101 samples: an evaluation that padded or dropped one would be off.
SETTINGS = ["train.steps=10", "train.micro_batch_size=8", "train.eval_every=5"]


def torchrun(run_dir: Path, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The test worker on ``run_dir`` in 2 processes."""
    return launch(str(WORKER), str(run_dir), *arguments, timeout=timeout)


def launch(*target: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 TARGET...`` (a script, or ``-m module``)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run([*command, *target], capture_output=True, text=True, timeout=timeout)


def test_two_processes_equal_one(tmp_path: Path, data: TrainingData, make_config: Callable) -> None:
    single = train(make_config(*SETTINGS, name="single"), data=data)
    done = torchrun(tmp_path / "ddp", *SETTINGS)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = load_checkpoint(single.run_dir / "checkpoints" / "last.pt")
    actual = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert actual["world_size"] == 2 and len(actual["rng"]) == 2
    for name, value in actual["model"].items():
        torch.testing.assert_close(value, expected["model"][name], rtol=1e-4, atol=1e-5)
    assert not torch.equal(actual["model"]["input.weight"], make_initial_weight())
    ddp_evals = read_jsonl(tmp_path / "ddp" / "evals.jsonl")
    single_evals = read_jsonl(single.run_dir / "evals.jsonl")
    assert [e["step"] for e in ddp_evals] == [5, 10]
    for mine, theirs in zip(ddp_evals, single_evals, strict=True):
        assert abs(mine["test_loss"] - theirs["test_loss"]) < 1e-5
        assert mine["test_accuracy"] == theirs["test_accuracy"]
    ddp_losses = [r["loss"] for r in read_jsonl(tmp_path / "ddp" / "steps.jsonl")]
    single_losses = [r["loss"] for r in read_jsonl(single.run_dir / "steps.jsonl")]
    torch.testing.assert_close(ddp_losses, single_losses, rtol=1e-5, atol=1e-6)


def make_initial_weight() -> torch.Tensor:
    from gradkit.models import create_model

    torch.manual_seed(0)
    return create_model("mlp", width=16, in_features=40, classes=10).input.weight.detach()


def test_a_failing_process_ends_the_job(tmp_path: Path) -> None:
    started = time.monotonic()
    done = torchrun(
        tmp_path / "ddp",
        "--fail-rank",
        "1",
        "--fail-step",
        "3",
        "train.distributed_timeout=30",
        timeout=90,
    )
    assert done.returncode != 0
    assert "rank 1 failed on purpose at step 3" in done.stderr
    assert time.monotonic() - started < 60


def test_cli_under_torchrun_prints_the_summary_once(tmp_path: Path) -> None:
    """``torchrun -m gradkit train``, as the README shows it: rank 0 alone prints the summary."""
    done = launch(
        "-m",
        "gradkit",
        "train",
        "train.steps=4",
        "train.eval_every=4",
        "train.threads=1",
        "log.progress=off",
        "model.name=mlp",
        "model.options.width=16",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test       accuracy") == 1, done.stdout
    assert done.stdout.count(str(tmp_path / "run")) == 1, done.stdout
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["world_size"] == 2
