"""What a run reports: its result, the summary file, the progress bar, how it stopped early."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.train._config import Config
from gradkit.train._distributed import Distributed

__all__ = [
    "NonFiniteLossError",
    "RunResult",
    "TrainingInterrupted",
    "progress_bar",
    "write_summary",
]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite (``train.non_finite = "stop"``, or too many skipped
    steps under ``"skip"``), or the weights did."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run at a step boundary, after a checkpoint of
    that step.

    Attributes:
        run_dir: the run, to resume with ``gradkit train --resume run_dir``.
        step: the optimizer steps taken.
        checkpoint: the checkpoint of that step.
        rank: the process's rank (only rank 0 should print).
        signal: the signal's number (``signal.SIGINT`` or ``signal.SIGTERM``); a command
            stopped by it exits with ``128 + signal``, as a shell reports it.
    """

    def __init__(
        self, run_dir: Path, step: int, checkpoint: Path, rank: int, signal: int = 2
    ) -> None:
        super().__init__(f"training interrupted at step {step}")
        self.run_dir, self.step, self.checkpoint, self.rank = run_dir, step, checkpoint, rank
        self.signal = signal


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports.

    Attributes:
        run_dir: where its config, metrics and checkpoints are.
        steps: optimizer steps taken in all (including skipped ones).
        seconds: training time, summed over resumed sessions.
        metrics: the final evaluation (``test_accuracy``, ``val_accuracy``, ...).
        skipped_steps: steps whose update was skipped for a non-finite loss.
        best: what ``best.pt`` was selected on: ``{"metric", "value", "step"}`` (``value`` and
            ``step`` ``None`` if no evaluation improved), or ``None`` when no ``best.pt`` is kept.
        rank: the process that returns this (under ``torchrun`` every process does; only rank
            0 should print).
    """

    run_dir: Path
    steps: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped_steps: int = 0
    best: dict[str, Any] | None = None
    rank: int = 0

    @property
    def test_accuracy(self) -> float:
        """The final test accuracy (a fraction)."""
        return float(self.metrics["test_accuracy"])


def progress_bar(config: Config, dist: Distributed, initial: int) -> Any:
    mode = config.log.progress
    if not dist.is_main or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=config.train.steps,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
    )


def write_summary(result: RunResult, path: Path) -> None:
    summary = {
        "run_dir": str(result.run_dir),
        "steps": result.steps,
        "seconds": result.seconds,
        "skipped_steps": result.skipped_steps,
        "metrics": result.metrics,
        "best": result.best,
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
