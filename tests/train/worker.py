"""A training process for the tests that need one: resume after SIGKILL, DDP under torchrun.

Run as ``python worker.py RUN_DIR [--kill-step N] [--kill-during-write] [--resume]
[--fail-rank R --fail-step N] [key=value ...]``. The tests import :func:`synthetic_data` and
:func:`small_config` from here (through ``conftest.py``), so in-process and worker runs train
on the same data with the same config.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from gradkit.train import Config, TrainingData, load_config, train


def synthetic_data(samples: int = 240, test: int = 101, seed: int = 0) -> TrainingData:
    """Signals of length 40 whose class is the argmax of a fixed linear map: learnable."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(40, 10, generator=generator)
    inputs = torch.randn(samples + test, 40, generator=generator)
    labels = (inputs @ weights).argmax(dim=1)
    return TrainingData(
        TensorDataset(inputs[:samples], labels[:samples]),
        TensorDataset(inputs[samples:], labels[samples:]),
        name="synthetic",
        classes=10,
    )


def small_config(run_dir: Path, *overrides: str) -> Config:
    """An MLP on the synthetic data: 20 steps, batch 32, evaluation and checkpoint every 10."""
    base = [
        "model.name=mlp",
        "model.options.width=16",
        "optim.name=adam",
        "optim.lr=0.01",
        "optim.weight_decay=0",
        'schedule.lr="constant()"',
        "train.steps=20",
        "train.batch_size=32",
        "train.eval_every=10",
        "train.eval_batch_size=64",
        "train.threads=1",
        "checkpoint.every=10",
        f"log.root={str(run_dir.parent)!r}",
        f"log.name={run_dir.name!r}",
        "log.progress=off",
        "log.tensorboard=off",
    ]
    return load_config(None, [*base, *overrides])


class _Kill:
    """SIGKILL this process after a step, or inside the checkpoint write of that step."""

    def __init__(self, step: int, during_write: bool) -> None:
        self.step, self.during_write, self.current = step, during_write, 0
        if during_write:
            replace = os.replace

            def dying_replace(source: Any, target: Any) -> None:
                # The rename that would put the new last.pt in place: die just before it,
                # after the old last.pt has become previous.pt.
                if self.current == self.step and Path(source).name.startswith(".last.pt."):
                    os.kill(os.getpid(), signal.SIGKILL)
                replace(source, target)

            os.replace = dying_replace

    def on_step_end(self, ctx: Any) -> None:
        self.current = ctx.step
        if ctx.step == self.step and not self.during_write:
            os.kill(os.getpid(), signal.SIGKILL)


class _Fail:
    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_step_end(self, ctx: Any) -> None:
        if ctx.rank == self.rank and ctx.step == self.step:
            raise RuntimeError(f"rank {ctx.rank} failed on purpose at step {ctx.step}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--kill-step", type=int)
    parser.add_argument("--kill-during-write", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--fail-rank", type=int)
    parser.add_argument("--fail-step", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    callbacks: list[Any] = []
    if args.kill_step is not None:
        callbacks.append(_Kill(args.kill_step, args.kill_during_write))
    if args.fail_rank is not None:
        callbacks.append(_Fail(args.fail_rank, args.fail_step))
    config = small_config(args.run_dir, *args.overrides)
    result = train(
        config,
        data=synthetic_data(),
        callbacks=callbacks,
        run_dir=args.run_dir,
        resume=args.resume,
    )
    print(f"done {result.steps} {result.metrics['test_accuracy']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
