"""A run killed with SIGKILL and resumed ends bit-identical to one that was never interrupted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradkit.train import load_checkpoint, read_jsonl

WORKER = Path(__file__).with_name("worker.py")
# Deterministic mode, one thread, dropout on (so the RNG state matters), a checkpoint every
# 4 steps, and a warm-up schedule (so the scheduler position matters).
SETTINGS = [
    "train.steps=30",
    "train.deterministic=true",
    "checkpoint.every=4",
    "train.eval_every=7",
    "model.options.dropout=0.2",
    'schedule.lr="warmup(10) >> cosine(20)"',
]


def run_worker(run_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(run_dir), *arguments, *SETTINGS],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = run_worker(run_dir)
    assert done.returncode == 0, done.stderr
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


# Steps drawn at random per run (shown in the test id): after a step (before the first
# checkpoint at 4 the run starts again from 0), and inside the write of a later checkpoint.
@pytest.mark.parametrize(
    ("kill_step", "during_write"),
    [(random.randrange(1, 30), False), (4 * random.randrange(2, 8), True)],
)
def test_sigkill_then_resume_is_bit_identical(
    tmp_path: Path, reference: dict[str, object], kill_step: int, during_write: bool
) -> None:
    run_dir = tmp_path / "run"
    extra = ["--kill-during-write"] if during_write else []
    killed = run_worker(run_dir, "--kill-step", str(kill_step), *extra)
    assert killed.returncode == -signal.SIGKILL, (kill_step, killed.stderr)
    checkpoints = run_dir / "checkpoints"
    if during_write:  # killed between the two renames: no last.pt, a complete previous.pt
        assert not (checkpoints / "last.pt").exists()
        assert load_checkpoint(checkpoints / "previous.pt")["step"] == kill_step - 4
    resumed = run_worker(run_dir, "--resume")
    assert resumed.returncode == 0, (kill_step, resumed.stderr)
    final = load_checkpoint(checkpoints / "last.pt")
    assert final["step"] == 30
    for part in ("model", "optimizer"):
        _assert_identical(final[part], reference[part], f"{part} (killed at {kill_step})")
    assert final["sampler"] == reference["sampler"]
    # Every step is in the metrics exactly once, in order.
    assert [r["step"] for r in read_jsonl(run_dir / "steps.jsonl")] == list(range(1, 31))
    assert [r["step"] for r in read_jsonl(run_dir / "evals.jsonl")] == [7, 14, 21, 28, 30]


def _assert_identical(actual: object, expected: object, where: str) -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_identical(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_identical(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, where
