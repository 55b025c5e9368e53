"""The engine's steps/s with ``train.precision = "bf16"`` and ``train.compile = true`` against
the plain float32 run, in one process.

Each trains the MNIST-1D CNN (the paper's, width 25) on MNIST-1D with gradkit's Adam (lr 1e-2,
constant), batch 100, one intra-op thread, as ``gradkit train`` would. Only the steps from
``--warmup`` to the last are timed (so the compilation in the first steps is not), and the
variants alternate ``--repeats`` times; the medians are compared with the plain run. Autocast
casts weights and activations at every layer, which small layers on a CPU do not repay;
compilation pays off where the model's Python overhead dominates (results: RESULTS.md).

Usage: python benchmarks/precision_compile.py [--steps 1000] [--warmup 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

from gradkit.train import load_config, train

VARIANTS = {
    "fp32": [],
    "bf16": ["train.precision=bf16"],
    "compile": ["train.compile=true"],
    "bf16 + compile": ["train.precision=bf16", "train.compile=true"],
}


class StepTimer:
    """Timestamps the end of step ``warmup`` and of the last step."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.start, self.stop = warmup, steps, 0.0, 0.0

    def on_step_end(self, ctx: Any) -> None:
        if ctx.step == self.warmup:
            self.start = time.perf_counter()
        elif ctx.step == self.steps:
            self.stop = time.perf_counter()


def steps_per_second(overrides: list[str], steps: int, warmup: int, root: str, name: str) -> float:
    config = load_config(
        None,
        [
            "model.name=cnn",
            "model.options={}",
            "optim.name=adam",
            "optim.lr=0.01",
            "optim.weight_decay=0",
            'schedule.lr="constant()"',
            "train.batch_size=100",
            f"train.steps={steps}",
            "train.eval_every=0",
            "train.threads=1",
            "checkpoint.every=0",
            "checkpoint.best=false",
            "log.progress=off",
            "log.tensorboard=off",
            f"log.root={root!r}",
            f"log.name={name!r}",
            *overrides,
        ],
    )
    timer = StepTimer(warmup, steps)
    train(config, callbacks=[timer])
    return (steps - warmup) / (timer.stop - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for name, overrides in VARIANTS.items():
                run = f"{name.replace(' + ', '-')}-{repeat}"
                rates[name].append(steps_per_second(overrides, args.steps, args.warmup, root, run))
    print(f"torch {torch.__version__}, {args.steps} steps ({args.warmup} untimed), batch 100")
    print("| run | steps/s | ms/step | / fp32 |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(rates["fp32"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.1f} | {1000 / rate:.3f} | {rate / base:.3f} |")


if __name__ == "__main__":
    main()
