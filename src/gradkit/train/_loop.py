"""The training loop: forward, backward, clip, step, schedule, log.

:func:`train` runs a :class:`Config`. Each step takes one global batch from the sampler, splits
it over the processes (DDP) and into micro-batches (gradient accumulation), and then does
exactly what the module docstring says. Evaluation, snapshots and checkpoints happen between
steps, at the intervals the config gives.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gradkit.optim import adaptive_clip_grad_
from gradkit.train import _data
from gradkit.train._average import WeightAveraging, parse_average
from gradkit.train._build import (
    build_model,
    build_optimizer,
    build_scheduler,
    new_run_dir,
    run_settings,
)
from gradkit.train._callbacks import TrainContext, hook_table
from gradkit.train._checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
)
from gradkit.train._config import Config, ConfigError, load_config, save_config
from gradkit.train._distributed import Distributed, distributed_session
from gradkit.train._evaluate import evaluate
from gradkit.train._interrupt import StopOnInterrupt
from gradkit.train._metrics import MetricsLog
from gradkit.train._report import (
    NonFiniteLossError,
    RunResult,
    TrainingInterrupted,
    progress_bar,
    write_summary,
)
from gradkit.train._resume import check_resume_changes
from gradkit.train._run_dir import (
    RunDirError,
    drop_partial_last_lines,
    refuse_existing_run,
    writing,
)
from gradkit.train._schedule_free import ScheduleFreeModes, is_schedule_free
from gradkit.train._state import CheckpointWriter, SnapshotEnsemble

__all__ = ["NonFiniteLossError", "RunResult", "Trainer", "TrainingInterrupted", "train"]

_METRICS_FILES = ("steps.jsonl", "steps.csv", "evals.jsonl", "evals.csv")


def train(
    config: Config,
    *,
    data: _data.TrainingData | None = None,
    callbacks: Sequence[Any] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> RunResult:
    """Train as ``config`` says; in a ``torchrun`` job, every process calls this.

    Args:
        config: the run.
        data: the splits to use instead of loading ``config.data`` from :mod:`gradkit.data`
            (a validation part is still held out when ``data.validation_fraction`` asks).
        callbacks: objects with any of the hooks of :mod:`gradkit.train` (``on_train_start``,
            ``after_backward``, ``on_step_end``, ``on_eval``, ``on_train_end``).
        run_dir: the run's directory (default: ``log.root/log.name`` or a new timestamp). It
            must not hold another run (``config.toml``, metrics, checkpoints) unless resuming.
        resume: continue the run in ``run_dir`` from its latest usable checkpoint. Keys that
            decide what the checkpoint holds (model, optimizer, data) must not change:
            :data:`gradkit.train._resume.FIXED_ON_RESUME`.

    Raises:
        NonFiniteLossError: a NaN/inf loss under ``train.non_finite = "stop"``, more than
            ``train.max_skipped`` in a row under ``"skip"``, or NaN/inf weights.
        RunDirError: (a :class:`ConfigError`) ``run_dir`` holds another run, or a file of the
            run cannot be written (the message names it and why).
        TrainingInterrupted: (a :class:`KeyboardInterrupt`) Ctrl-C stopped the run after a
            checkpoint of its last step.
    """
    if resume and run_dir is None:
        raise ValueError("train: resume=True needs the run_dir to resume")
    with (
        run_settings(config),
        distributed_session(config.train.device, config.train.distributed_timeout) as dist,
    ):
        run_dir = Path(dist.broadcast(str(run_dir or new_run_dir(config))))
        if not resume:  # before the data is loaded: fail fast
            _on_main(dist, lambda: refuse_existing_run(run_dir))
        trainer = Trainer(config, dist, data=data, callbacks=callbacks, run_dir=run_dir)
        if resume:
            trainer.resume()
        return trainer.fit()


class Trainer:
    """The state of one run in one process; :func:`train` is the way to use it."""

    def __init__(
        self,
        config: Config,
        dist: Distributed,
        *,
        data: _data.TrainingData | None = None,
        callbacks: Sequence[Any] = (),
        run_dir: str | Path | None = None,
    ) -> None:
        self.config, self.dist = config, dist
        settings = config.train
        self.hooks = hook_table(callbacks)
        _seed_everything(settings.seed)
        data = _data.load_training_data(config) if data is None else data
        data = _data.with_validation(data, config)
        device = dist.device
        self.train_x, self.train_y = (t.to(device) for t in _data.as_tensors(data.train))
        self.test_x, self.test_y = _data.as_tensors(data.test)
        self.validation = None if data.validation is None else _data.as_tensors(data.validation)

        self.model = build_model(config, tuple(self.train_x.shape[1:]), data.classes).to(device)
        self.optimizer, self.sam = build_optimizer(config, self.model)
        self.scheduler = build_scheduler(config, self.optimizer)
        average = config.optim.average
        self.averaging = (
            None if average is None else WeightAveraging(parse_average(average), self.model)
        )
        self.schedule_free = (
            ScheduleFreeModes(self.optimizer, self.model)
            if is_schedule_free(self.optimizer)
            else None
        )
        self.network = self.model
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
        if settings.compile:
            self.network = torch.compile(self.network)
        head = getattr(self.model, "head", None)
        head_ids = set() if head is None else {id(p) for p in head.parameters()}
        self.clipped = _agc_parameters(self.model, head_ids, config.optim.agc_exclude)
        torch.manual_seed(settings.seed + dist.rank)  # dropout differs per process

        self.step, self.skipped, self.seconds_before = 0, 0, 0.0
        self.skipped_in_a_row = 0
        self.step_lr: float = config.optim.lr
        self.sampler = _data.make_sampler(config, len(self.train_y), 0)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_dir = Path(dist.broadcast(str(self.run_dir or new_run_dir(config))))
        self.best_metric = _best_metric(config, self.validation is not None)
        self.checkpoints = CheckpointWriter(self.run_dir / "checkpoints", self.best_metric, dist)
        self.ensemble = SnapshotEnsemble(config, self.model, self.run_dir / "snapshots", dist)
        self.ctx = TrainContext(
            model=self.model,
            optimizer=self.sam or self.optimizer,
            config=config,
            run_dir=self.run_dir,
            rank=dist.rank,
            world_size=dist.world_size,
        )
        self.resumed = False

    # ---------------------------------------------------------------- resume and checkpoints

    def resume(self) -> None:
        """Load the latest usable checkpoint of the run directory; continue from its step.

        A run that was stopped before its first checkpoint starts again from step 0; a run
        whose checkpoints are all damaged is a :class:`~gradkit.train.CheckpointError`. A
        config that changes a key the checkpoint depends on (the model, the optimizer, the
        data: :data:`~gradkit.train._resume.FIXED_ON_RESUME`) is a :class:`ConfigError`; a
        changed ``schedule.lr`` applies from the checkpoint's step on.
        """
        report = (lambda text: print(text, file=sys.stderr)) if self.dist.is_main else None
        directory = self.run_dir / "checkpoints"
        self.resumed = True
        if report is not None:
            for folder in (directory, self.run_dir / "snapshots"):
                for stale in remove_stale_temporaries(folder):
                    report(f"gradkit: removed {stale}, left by a checkpoint save that was killed")
        if not any((directory / name).exists() for name in ("last.pt", "previous.pt")):
            if report is not None:
                report(f"gradkit: {directory} holds no checkpoint yet; starting from step 0")
            return
        saved = self.run_dir / "config.toml"
        changed = check_resume_changes(load_config(saved), self.config) if saved.exists() else []
        path, state = latest_checkpoint(directory, report=report)
        if "schedule.lr" in changed:  # allowed: the steps after the checkpoint follow it
            state["scheduler"]["schedule"] = str(self.scheduler.schedule)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.sampler.load_state_dict(state["sampler"])
            if self.averaging is not None:
                if "average" not in state:
                    raise ValueError("it holds no averaged weights (optim.average)")
                self.averaging.load_state_dict(state["average"])
        except (RuntimeError, ValueError) as error:  # sizes or groups that do not match
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not fit this run's config: {first}"
            ) from None
        rng = state["rng"]
        restore_rng_state(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
        self.step, self.skipped = int(state["step"]), int(state["skipped"])
        self.skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        self.seconds_before = float(state["seconds"])
        self.checkpoints.best_value = state["best_value"]
        self.checkpoints.best_step = state.get("best_step")
        self.checkpoints.last_written = (path, self.step)
        self.ensemble.load(self.step)
        if self.schedule_free is not None:
            self.schedule_free.after_load()

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (a collective call: RNG states from every process)."""
        return {
            "step": self.step,
            "skipped": self.skipped,
            "skipped_in_a_row": self.skipped_in_a_row,
            "seconds": self.elapsed(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": self.dist.gather(capture_rng_state()),
            "best_value": self.checkpoints.best_value,
            "best_step": self.checkpoints.best_step,
            "world_size": self.dist.world_size,
            **({} if self.averaging is None else {"average": self.averaging.state_dict()}),
        }

    def elapsed(self) -> float:
        """Seconds of training so far, over all sessions of this run."""
        return self.seconds_before + time.perf_counter() - self.started

    # ---------------------------------------------------------------- the loop

    def fit(self) -> RunResult:
        """Train until ``train.steps``; evaluate, snapshot and checkpoint on the way.

        Ctrl-C stops after the current step, once it is checkpointed, with
        :class:`TrainingInterrupted` (a second Ctrl-C stops at once).
        """
        config, dist, ctx = self.config, self.dist, self.ctx
        self.started = time.perf_counter()
        self.metrics = None
        _on_main(dist, self._open_run)
        bar = progress_bar(config, dist, self.step)
        batches = _data.step_batches(self.sampler)
        last_record, samples = time.perf_counter(), 0
        last_postfix, postfix_samples = time.perf_counter(), 0
        ctx.step = self.step
        interrupted = False
        try:
            self._call("on_train_start", ctx)
            with StopOnInterrupt(dist) as stop:
                while self.step < config.train.steps and not ctx.should_stop:
                    batch = next(batches)
                    loss, grad_norm = self.train_step(batch)
                    samples += len(batch)
                    ctx.step, ctx.loss = self.step, loss
                    final = self.step == config.train.steps
                    if self.metrics is not None and (self.step % config.log.every == 0 or final):
                        now = time.perf_counter()
                        record = {
                            "step": self.step,
                            "loss": loss,
                            "lr": float(self.step_lr),
                            "batch_size": len(batch),
                            "grad_norm": grad_norm,
                            "samples_per_second": samples / max(now - last_record, 1e-9),
                            "time": self.elapsed(),
                        }
                        with writing(self.run_dir / "steps.jsonl"):
                            self.metrics.step(record)
                        last_record, samples = now, 0
                    if bar is not None:
                        bar.update(1)
                        postfix_samples += len(batch)
                        now = time.perf_counter()
                        if now - last_postfix > 0.5:
                            rate = postfix_samples / (now - last_postfix)
                            last_postfix, postfix_samples = now, 0
                            bar.set_postfix(
                                loss=f"{loss:.4f}",
                                lr=f"{self.step_lr:.3g}",
                                samples_per_s=f"{rate:.0f}",
                                refresh=False,
                            )
                    self._call("on_step_end", ctx)
                    self.after_step(final or ctx.should_stop)
                    more = self.step < config.train.steps and not ctx.should_stop
                    if more and stop.requested():
                        interrupted = True
                        break
            if interrupted:
                last = self.checkpoints.last_written
                if last is None or last[1] != self.step:
                    self.write_checkpoint()
            else:
                self.check_weights()
                if not ctx.metrics or ctx.metrics.get("step") != self.step:
                    self.run_evaluation()
        finally:
            if bar is not None:
                bar.close()
            try:
                self._call("on_train_end", ctx)
            finally:
                if self.metrics is not None:
                    with writing(self.run_dir / "steps.jsonl"):
                        self.metrics.close()
        if interrupted:
            checkpoint = self.run_dir / "checkpoints" / "last.pt"
            raise TrainingInterrupted(self.run_dir, self.step, checkpoint, dist.rank, stop.received)
        result = RunResult(
            self.run_dir,
            self.step,
            self.elapsed(),
            dict(ctx.metrics),
            self.skipped,
            best=self.best_summary(),
            rank=dist.rank,
        )
        if dist.is_main:
            with writing(self.run_dir / "summary.json"):
                write_summary(result, self.run_dir / "summary.json")
        return result

    def _open_run(self) -> None:
        """Create the run directory, its config and metrics files (rank 0)."""
        if not self.resumed:
            refuse_existing_run(self.run_dir)
        with writing(self.run_dir):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with writing(self.run_dir / "config.toml"):
            save_config(self.config, self.run_dir / "config.toml")
        with writing(self.run_dir / "steps.jsonl"):
            if self.resumed:  # a process killed mid-write leaves a partial last line
                for path in drop_partial_last_lines([self.run_dir / n for n in _METRICS_FILES]):
                    print(f"gradkit: dropped the partial last line of {path}", file=sys.stderr)
            self.metrics = MetricsLog(
                self.run_dir,
                tensorboard=self.config.log.tensorboard,
                resume_step=self.step if self.resumed else None,
            )

    def best_summary(self) -> dict[str, Any] | None:
        """What ``best.pt`` was selected on (see :attr:`RunResult.best`)."""
        if not self.config.checkpoint.best:
            return None
        writer = self.checkpoints
        return {"metric": writer.best_metric, "value": writer.best_value, "step": writer.best_step}

    def train_step(self, batch: list[int]) -> tuple[float, float | None]:
        """One optimizer step on a global batch; returns its loss and (if clipped) grad norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward_backward(batch)
        self._call("after_backward", self.ctx)
        if not math.isfinite(loss):
            return self.non_finite(loss), None
        if self.sam is not None:  # SAM: the gradient again, at the worst nearby weights
            self.sam.first_step()
            self.optimizer.zero_grad(set_to_none=True)
            self.forward_backward(batch)
        grad_norm = self.clip()
        self.step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        if self.sam is not None:
            self.sam.second_step()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.skipped_in_a_row = 0
        if self.averaging is not None:
            self.averaging.after_step(self.step)
        return loss, grad_norm

    def forward_backward(self, batch: list[int]) -> float:
        """Forward and backward over this process's share of ``batch``, piece by piece.

        Each piece's mean loss is weighted by its share of the global batch, so the gradients
        add up (over pieces, and over processes in DDP's average) to the gradient of the mean
        loss of the whole batch. Returns that mean loss (the same on every process).
        """
        dist = self.dist
        share = _data.split_for_rank(batch, dist.rank, dist.world_size) if dist.enabled else batch
        pieces = _data.micro_batches(share, self.config.train.micro_batch_size)
        total = 0.0
        for number, piece in enumerate(pieces):
            index = torch.as_tensor(piece, device=self.train_x.device)
            last = number == len(pieces) - 1
            # DDP all-reduces the gradients on the last piece's backward only.
            sync = contextlib.nullcontext() if last or not dist.enabled else self.network.no_sync()
            with sync:
                with self.autocast():
                    logits = self.network(self.train_x[index])
                    loss = F.cross_entropy(logits, self.train_y[index])
                if len(piece) != len(batch):
                    loss = loss * (len(piece) * dist.world_size / len(batch))
                loss.backward()
            total += loss.item()
        if dist.enabled:  # also makes every process agree on a non-finite loss
            summed = dist.all_reduce_sum(torch.tensor([total], device=dist.device))
            total = summed.item() / dist.world_size
        return total

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast under ``train.precision = "bf16"``, else nothing."""
        if self.config.train.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)

    def clip(self) -> float | None:
        """AGC (all but the head and ``optim.agc_exclude``), then global-norm clipping.

        Returns the global norm (None without global-norm clipping).
        """
        optim = self.config.optim
        if optim.agc is not None:
            adaptive_clip_grad_(self.clipped, optim.agc, optim.agc_eps)
        if optim.clip_grad_norm is None:
            return None
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim.clip_grad_norm).item()

    def non_finite(self, loss: float) -> float:
        """Skip the update (``train.non_finite = "skip"``) or stop with an error.

        Skipping stops too, after ``train.max_skipped`` skipped steps in a row or as soon as
        the weights themselves are NaN/inf (then no later step can be finite).
        """
        settings = self.config.train
        if settings.non_finite == "skip":
            self.check_weights()
            self.step_lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            self.skipped += 1
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row >= settings.max_skipped:
                first = self.step - self.skipped_in_a_row + 1
                raise NonFiniteLossError(
                    f"non-finite loss ({loss}) at {self.skipped_in_a_row} steps in a row "
                    f"(steps {first} to {self.step}), train.max_skipped = "
                    f"{settings.max_skipped}; training stopped and {self._kept()}. Lower "
                    f"optim.lr or clip gradients (optim.clip_grad_norm); raise "
                    f"train.max_skipped only if the losses recover"
                )
            return loss
        raise NonFiniteLossError(
            f"non-finite loss ({loss}) at step {self.step + 1}; training stopped before that "
            f"step's update and {self._kept()}. Lower optim.lr, clip gradients "
            f"(optim.clip_grad_norm) or set train.non_finite = 'skip'"
        )

    def _kept(self) -> str:
        last = self.checkpoints.last_written
        if last is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is {last[0]} (step {last[1]})"

    def check_weights(self) -> None:
        """Raise :class:`NonFiniteLossError` if a parameter or buffer holds NaN/inf."""
        tensors = [*self.model.named_parameters(), *self.model.named_buffers()]
        floating = [(n, t) for n, t in tensors if t.is_floating_point()]
        if not floating:
            return
        finite = torch.stack([torch.isfinite(t).all() for _, t in floating])
        if bool(finite.all()):
            return
        names = [name for (name, _), ok in zip(floating, finite.tolist(), strict=True) if not ok]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        skipped = f"; {self.skipped} steps were skipped" if self.skipped else ""
        raise NonFiniteLossError(
            f"the weights hold NaN/inf after step {self.step} ({shown}){skipped}; training "
            f"stopped without writing them and {self._kept()}. Lower optim.lr or clip "
            f"gradients (optim.clip_grad_norm)"
        )

    def after_step(self, final: bool) -> None:
        """Snapshot, evaluate and checkpoint when their intervals say so."""
        settings, every = self.config.train, self.config.checkpoint.every
        if final and self.schedule_free is not None:
            self.schedule_free.hold()
        snapshot = self.ensemble.is_cycle_end(self.step)
        if snapshot:
            self.ensemble.take(self.step)
        if final or snapshot or (settings.eval_every and self.step % settings.eval_every == 0):
            self.run_evaluation()
        if final or (every and self.step % every == 0):
            self.write_checkpoint()

    def write_checkpoint(self) -> None:
        """Flush the metrics and write ``last.pt``, unless the weights are NaN/inf."""
        self.check_weights()
        if self.metrics is not None:
            with writing(self.run_dir / "steps.jsonl"):
                self.metrics.flush()
        with self.weights_to_keep():
            self.checkpoints.write_last(self.state(), self.step)

    def weights_to_keep(self, batch_norm: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A schedule-free optimizer's average in the parameters for the block (its batch-norm
        statistics recomputed when ``batch_norm``); for other optimizers, nothing changes."""
        if self.schedule_free is None:
            return contextlib.nullcontext()
        train_x = self.train_x if batch_norm else None
        return self.schedule_free.average(train_x, self.config.train.eval_batch_size)

    def run_evaluation(self) -> dict[str, Any]:
        """Test (and validation) loss and accuracy, and the snapshot ensemble's at cycle ends."""
        splits = {"test": (self.test_x, self.test_y)}
        if self.validation is not None:
            splits["val"] = self.validation
        metrics: dict[str, Any] = {"step": self.step}
        models = self.ensemble.models_at(self.step)
        with self.weights_to_keep(batch_norm=True):
            with self.autocast():
                self._evaluate_splits(splits, models, metrics)
            metrics["time"] = self.elapsed()
            self.ctx.metrics = metrics
            if self.metrics is not None:
                with writing(self.run_dir / "evals.jsonl"):
                    self.metrics.evaluation(metrics)
            if self.config.checkpoint.best and self.checkpoints.improves(metrics):
                self.checkpoints.write_best(self.state())
        self._call("on_eval", self.ctx, metrics)
        return metrics

    def _evaluate_splits(
        self, splits: dict[str, Any], models: list[torch.nn.Module], metrics: dict[str, Any]
    ) -> None:
        """Each split's loss and accuracy into ``metrics``: of the averaged weights under
        ``optim.average`` (and the last iterate's as ``iterate_*``), of the ensemble."""
        settings = self.config.train
        evaluated = self.model
        if self.averaging is not None and self.averaging.started:  # before SWA's start: none
            evaluated = self.averaging.model_for_evaluation(
                self.step, self.train_x, settings.eval_batch_size
            )
        for name, (inputs, labels) in splits.items():
            loss, accuracy = evaluate(
                [evaluated], inputs, labels, batch_size=settings.eval_batch_size, dist=self.dist
            )
            metrics[f"{name}_loss"], metrics[f"{name}_accuracy"] = loss, accuracy
            if self.averaging is not None:  # the last iterate, beside the average
                loss, accuracy = evaluate(
                    [self.model],
                    inputs,
                    labels,
                    batch_size=settings.eval_batch_size,
                    dist=self.dist,
                )
                metrics[f"iterate_{name}_loss"], metrics[f"iterate_{name}_accuracy"] = (
                    loss,
                    accuracy,
                )
            if models:
                loss, accuracy = evaluate(
                    models, inputs, labels, batch_size=settings.eval_batch_size, dist=self.dist
                )
                metrics["ensemble_size"] = len(models)
                metrics[f"ensemble_{name}_loss"] = loss
                metrics[f"ensemble_{name}_accuracy"] = accuracy

    def _call(self, hook: str, *args: Any) -> None:
        for method in self.hooks[hook]:
            method(*args)


def _agc_parameters(
    model: torch.nn.Module, head_ids: set[int], exclude: Sequence[str]
) -> list[torch.nn.Parameter]:
    """The parameters AGC clips: all but the head's and those named by ``exclude`` patterns."""
    named = [(name, p) for name, p in model.named_parameters() if id(p) not in head_ids]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            examples = ", ".join(name for name, _ in named[:4])
            raise ConfigError(
                f"config: optim.agc_exclude pattern {pattern!r} matches no parameter of the "
                f"model (outside the head); names look like: {examples}"
            )
    return [p for name, p in named if not any(fnmatch.fnmatchcase(name, pat) for pat in exclude)]


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _on_main(dist: Distributed, action: Callable[[], None]) -> None:
    """Run ``action`` on rank 0; its :class:`ConfigError` is raised on every process."""
    if not dist.enabled:
        action()
        return
    problem = None
    if dist.is_main:
        try:
            action()
        except ConfigError as error:  # RunDirError included
            problem = (isinstance(error, RunDirError), str(error))
    problem = dist.broadcast(problem)
    if problem is not None:
        raise (RunDirError if problem[0] else ConfigError)(problem[1])


def _best_metric(config: Config, has_validation: bool) -> str | None:
    """The metric ``best.pt`` is selected on; ``None`` (no ``best.pt``) for ``"auto"`` without
    a validation split, since selecting on test would make the test score optimistic."""
    name = config.checkpoint.best_metric
    if name == "auto":
        return "val_accuracy" if has_validation else None
    split = name.split("_", 1)[0]
    allowed = ("test_loss", "test_accuracy", "val_loss", "val_accuracy")
    if name not in allowed or (split == "val" and not has_validation):
        raise ConfigError(
            f"config: checkpoint.best_metric must be 'auto' or one of "
            f"{', '.join(map(repr, allowed))} (val_* needs data.validation_fraction > 0), "
            f"got {name!r}"
        )
    return name
