"""Metrics files (CSV and JSONL per step and per evaluation, TensorBoard when installed)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import IO, Any

from gradkit.train._sections import ConfigError

__all__ = ["EVAL_FIELDS", "STEP_FIELDS", "MetricsLog", "check_tensorboard", "read_jsonl"]

STEP_FIELDS = ("step", "loss", "lr", "batch_size", "grad_norm", "samples_per_second", "time")
"""The columns of ``steps.csv`` (``grad_norm`` only when clipping by global norm)."""

EVAL_FIELDS = (
    "step",
    "test_loss",
    "test_accuracy",
    "val_loss",
    "val_accuracy",
    "ensemble_size",
    "ensemble_test_loss",
    "ensemble_test_accuracy",
    "ensemble_val_loss",
    "ensemble_val_accuracy",
    "iterate_test_loss",
    "iterate_test_accuracy",
    "iterate_val_loss",
    "iterate_val_accuracy",
    "time",
)
"""The columns of ``evals.csv``; a column a run does not measure stays empty. Under
``optim.average``, ``test_*``/``val_*`` are the averaged weights' and ``iterate_*`` the last
iterate's."""


def _json_number(value: Any) -> Any:
    # JSON has no NaN/inf; write them as strings so every line stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL metrics file."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def check_tensorboard(setting: str) -> bool:
    """Whether TensorBoard is installed; a :class:`ConfigError` if ``setting`` is ``"on"``
    and it is not (the trainer checks this before it loads data or writes a file)."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting == "on" and not installed:
        raise ConfigError(
            "config: log.tensorboard: 'on', but the tensorboard package is not installed; "
            "pip install tensorboard, or set log.tensorboard=auto (when installed) or off"
        )
    return installed


class _Table:
    """One metrics stream written to ``<name>.csv`` and ``<name>.jsonl``."""

    def __init__(
        self, directory: Path, name: str, fields: tuple[str, ...], resume_step: int | None
    ):
        self.fields = fields
        self.csv_path = directory / f"{name}.csv"
        self.jsonl_path = directory / f"{name}.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        new = not self.csv_path.exists()
        self._csv: IO[str] = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._jsonl: IO[str] = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(self._csv, fields, restval="", extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def _truncate(self, step: int) -> None:
        """Drop records after ``step``: the resumed run writes them again."""
        if self.jsonl_path.exists():
            kept = [r for r in read_jsonl(self.jsonl_path) if r.get("step", 0) <= step]
            self.jsonl_path.write_text(
                "".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8"
            )
        if self.csv_path.exists():
            with open(self.csv_path, encoding="utf-8", newline="") as stream:
                rows = [r for r in csv.DictReader(stream) if int(r["step"]) <= step]
            with open(self.csv_path, "w", encoding="utf-8", newline="") as stream:
                writer = csv.DictWriter(stream, self.fields, restval="", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow(record)
        self._jsonl.write(json.dumps({k: _json_number(v) for k, v in record.items()}) + "\n")

    def flush(self) -> None:
        self._csv.flush()
        self._jsonl.flush()

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


class MetricsLog:
    """``steps.csv``/``steps.jsonl`` and ``evals.csv``/``evals.jsonl`` in ``directory``.

    Writes are buffered; :meth:`flush` runs before each checkpoint, so every record up to a
    checkpoint's step is on disk with it. On resume, records after the checkpoint are dropped.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        tensorboard: str = "auto",
        resume_step: int | None = None,
    ) -> None:
        installed = check_tensorboard(tensorboard)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.steps = _Table(directory, "steps", STEP_FIELDS, resume_step)
        self.evals = _Table(directory, "evals", EVAL_FIELDS, resume_step)
        self._board = None
        if tensorboard != "off" and installed:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(directory / "tensorboard"), purge_step=resume_step)

    def step(self, record: dict[str, Any]) -> None:
        """Record one optimizer step."""
        self.steps.write(record)
        if self._board is not None:
            for key in ("loss", "lr", "grad_norm", "batch_size"):
                if record.get(key) is not None:
                    self._board.add_scalar(f"train/{key}", record[key], record["step"])

    def evaluation(self, record: dict[str, Any]) -> None:
        """Record one evaluation."""
        self.evals.write(record)
        if self._board is not None:
            for key, value in record.items():
                if key not in ("step", "time") and value is not None:
                    self._board.add_scalar(f"eval/{key}", value, record["step"])

    def flush(self) -> None:
        """Put every record so far on disk (the OS's buffers)."""
        self.steps.flush()
        self.evals.flush()
        if self._board is not None:
            self._board.flush()

    def close(self) -> None:
        """Flush and close the files."""
        self.steps.close()
        self.evals.close()
        if self._board is not None:
            self._board.close()
