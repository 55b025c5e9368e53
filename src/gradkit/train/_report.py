"""What a run reports: its result, the summary file, the progress bar, the non-finite error."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.train._config import Config
from gradkit.train._distributed import Distributed

__all__ = ["NonFiniteLossError", "RunResult", "progress_bar", "write_summary"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite and ``train.non_finite`` is ``"stop"``."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports.

    Attributes:
        run_dir: where its config, metrics and checkpoints are.
        steps: optimizer steps taken in all (including skipped ones).
        seconds: training time, summed over resumed sessions.
        metrics: the final evaluation (``test_accuracy``, ``val_accuracy``, ...).
        skipped_steps: steps whose update was skipped for a non-finite loss.
    """

    run_dir: Path
    steps: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped_steps: int = 0

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
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
