"""The files a run keeps: last/previous/best checkpoints and the snapshots of an ensemble."""

from __future__ import annotations

import copy
import re
from collections import deque
from pathlib import Path
from typing import Any

from torch import nn

from gradkit.schedules import parse
from gradkit.train._checkpoint import load_checkpoint, save_checkpoint
from gradkit.train._config import Config
from gradkit.train._distributed import Distributed
from gradkit.train._run_dir import writing

__all__ = ["CheckpointWriter", "SnapshotEnsemble"]


class CheckpointWriter:
    """Writes ``last.pt`` (keeping the one before as ``previous.pt``) and ``best.pt``.

    Only rank 0 writes; every process calls, since building the state is collective. With
    ``best_metric=None`` there is no ``best.pt``. A failed write is a
    :class:`~gradkit.train._run_dir.RunDirError` naming the file.
    """

    def __init__(self, directory: Path, best_metric: str | None, dist: Distributed) -> None:
        self.directory = directory
        self.best_metric = best_metric
        self.dist = dist
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.last_written: tuple[Path, int] | None = None

    def write_last(self, state: dict[str, Any], step: int) -> None:
        """Save ``state`` as ``last.pt`` atomically; the old ``last.pt`` becomes ``previous.pt``."""
        path = self.directory / "last.pt"
        if self.dist.is_main:
            with writing(path):
                save_checkpoint(state, path, keep_previous=True)
        self.last_written = (path, step)

    def improves(self, metrics: dict[str, Any]) -> bool:
        """Whether ``metrics`` beat the best so far (and record it if so)."""
        if self.best_metric is None:
            return False
        value = metrics.get(self.best_metric)
        if value is None or value != value:
            return False
        higher = self.best_metric.endswith("accuracy")
        best = self.best_value
        if best is not None and (value <= best if higher else value >= best):
            return False
        self.best_value, self.best_step = float(value), metrics.get("step")
        return True

    def write_best(self, state: dict[str, Any]) -> None:
        """Save ``state`` as ``best.pt`` (its ``best_value`` is already the new best)."""
        path = self.directory / "best.pt"
        if self.dist.is_main:
            with writing(path):
                save_checkpoint(state, path)


_SNAPSHOT = re.compile(r"step-(\d+)\.pt")


class SnapshotEnsemble:
    """The last ``k`` models at the cycle ends of the lr schedule (arXiv 1704.00109).

    A snapshot is taken after the optimizer step that closes a cycle
    (:meth:`gradkit.schedules.Schedule.cycle_ends`), kept in memory for evaluation and written
    to ``snapshots/step-NNNNNNN.pt`` so that a resumed run has them too.
    """

    def __init__(self, config: Config, model: nn.Module, directory: Path, dist: Distributed):
        self.size = config.checkpoint.snapshot_ensemble
        self.directory = directory
        self.dist = dist
        self.model = model
        schedule = parse(config.schedule.lr)
        ends = schedule.cycle_ends(config.train.steps) if self.size else []
        # cycle_ends lists the schedule step (0-based) that closes a cycle; after it,
        # step + 1 optimizer steps are complete.
        self.steps = {end + 1 for end in ends}
        self.snapshots: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(self.size, 1))
        self._models: list[nn.Module] = []

    def is_cycle_end(self, step: int) -> bool:
        """Whether ``step`` completed optimizer steps close a cycle (and snapshots are on)."""
        return step in self.steps

    def take(self, step: int) -> None:
        """Keep the model as it is now; drop the snapshots beyond the last ``k``."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.snapshots.append((step, state))
        if self.dist.is_main:
            with writing(self._path(step)):
                save_checkpoint({"step": step, "model": state}, self._path(step))
            kept = {s for s, _ in self.snapshots}
            for path in self.directory.glob("step-*.pt"):
                match = _SNAPSHOT.fullmatch(path.name)
                if match and int(match[1]) not in kept:
                    path.unlink(missing_ok=True)

    def load(self, step: int) -> None:
        """Read the snapshots of a resumed run, up to its checkpoint's ``step``."""
        if not self.size or not self.directory.exists():
            return
        found = sorted(
            int(m[1])
            for p in self.directory.glob("step-*.pt")
            if (m := _SNAPSHOT.fullmatch(p.name)) and int(m[1]) <= step
        )
        for snapshot_step in found[-self.size :]:
            self.snapshots.append(
                (snapshot_step, load_checkpoint(self._path(snapshot_step))["model"])
            )

    def models_at(self, step: int) -> list[nn.Module]:
        """The ensemble to evaluate after ``step`` (empty unless ``step`` is a cycle end)."""
        if not self.is_cycle_end(step) or not self.snapshots:
            return []
        while len(self._models) < len(self.snapshots):
            self._models.append(copy.deepcopy(self.model))
        models = self._models[: len(self.snapshots)]
        for model, (_, state) in zip(models, self.snapshots, strict=True):
            model.load_state_dict(state)
        return models

    def _path(self, step: int) -> Path:
        return self.directory / f"step-{step:07d}.pt"
