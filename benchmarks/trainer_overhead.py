"""The training engine's steps/s against a minimal hand-written loop, in one process.

Both train the MNIST-1D CNN (the paper's, width 25) on MNIST-1D with gradkit's Adam (lr 1e-2,
constant), batch 100, one intra-op thread. The engine runs as ``gradkit train`` would, with
its per-step work on: a step record to CSV and JSONL every step, the lr scheduler, the
sampler, the non-finite check, callbacks (one, the timer). Only the steps are timed (from step
``--warmup`` to the last), not setup, the final evaluation or the checkpoint. The two
alternate ``--repeats`` times; the medians are compared.

Usage: python benchmarks/trainer_overhead.py [--steps 2000] [--warmup 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

from gradkit.data import load_dataset
from gradkit.models import create_model
from gradkit.optim import Adam
from gradkit.train import load_config, train


class StepTimer:
    """Timestamps the end of step ``warmup`` and of the last step."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.start, self.stop = warmup, steps, 0.0, 0.0

    def on_step_end(self, ctx: Any) -> None:
        if ctx.step == self.warmup:
            self.start = time.perf_counter()
        elif ctx.step == self.steps:
            self.stop = time.perf_counter()


def engine(steps: int, warmup: int, root: str, number: int) -> float:
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
            "checkpoint.every=0",
            "checkpoint.best=false",
            "log.progress=off",
            f"log.root={root!r}",
            f"log.name='engine-{number}'",
        ],
    )
    timer = StepTimer(warmup, steps)
    train(config, callbacks=[timer])
    return (steps - warmup) / (timer.stop - timer.start)


def hand_written(steps: int, warmup: int, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = create_model("cnn")
    optimizer = Adam(model.parameters(), lr=0.01)
    step, start = 0, 0.0
    while step < steps:
        order = torch.randperm(len(labels))
        for begin in range(0, len(labels) - 99, 100):
            index = order[begin : begin + 100]
            loss = F.cross_entropy(model(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == warmup:
                start = time.perf_counter()
            if step == steps:
                break
    return (steps - warmup) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs, labels = load_dataset("mnist1d").train.tensors
    engine_rates, hand_rates = [], []
    with tempfile.TemporaryDirectory() as root:
        for number in range(args.repeats):
            hand_rates.append(hand_written(args.steps, args.warmup, inputs, labels))
            engine_rates.append(engine(args.steps, args.warmup, root, number))
            print(
                f"repeat {number}: hand-written {hand_rates[-1]:.1f} steps/s, "
                f"engine {engine_rates[-1]:.1f} steps/s",
                flush=True,
            )
    hand, mine = statistics.median(hand_rates), statistics.median(engine_rates)
    print(f"hand-written loop  {hand:8.1f} steps/s  ({1000 / hand:.3f} ms/step)")
    print(f"gradkit engine     {mine:8.1f} steps/s  ({1000 / mine:.3f} ms/step)")
    print(f"engine / hand      {mine / hand:8.3f}  ({100 * (1 - mine / hand):+.1f}% slower)")


if __name__ == "__main__":
    main()
