"""The per-step bookkeeping of gradkit's default SGD step against torch.optim.SGD(fused=True).

Both steps end in the same kernel, ``torch._fused_sgd_``; everything before it is bookkeeping:
torch's ``_init_group`` and its functional's grouping, and gradkit's step plan, the chain's
recognition, the layout test and its ``step`` counters on top of the same functional. Here
the kernel is replaced by a no-op, so that only the bookkeeping is timed, free of where each
optimizer's arrays lie in memory (which moves the kernel's time by up to 20%, see
``default_path.py``). One step of each in turn, ``--rounds`` rounds, with warm caches and
then with the caches evicted before every step (80 MB streamed through them), as in a training
step that follows the backward pass. Parameters: ``default_path.py``'s 255 tensors (10M
float32), one thread.

Run:
    PYTHONPATH=src python benchmarks/step_bookkeeping.py
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from default_path import SHAPES
from optim_step import make_parameters, time_interleaved

import gradkit.optim as gk


def time_bookkeeping(rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per step of each optimizer's bookkeeping, warm and cold."""
    optimizers: dict[str, torch.optim.Optimizer] = {
        "gradkit default": gk.SGD(make_parameters(SHAPES), lr=0.01, momentum=0.9),
        "torch fused": torch.optim.SGD(
            make_parameters(SHAPES, seed=1), lr=0.01, momentum=0.9, fused=True
        ),
    }
    for optimizer in optimizers.values():
        for _ in range(3):  # state made, buffers started, plan kept
            optimizer.step()
    steps = {label: optimizer.step for label, optimizer in optimizers.items()}
    evict_into, evict_from = torch.zeros(10_000_000), torch.ones(10_000_000)
    kernel = torch._fused_sgd_
    results: dict[str, dict[str, float]] = {}
    torch._fused_sgd_ = _no_kernel
    try:
        for label, evict in (("warm", None), ("cold", lambda: evict_into.add_(evict_from))):
            timings = time_interleaved(steps, dict.fromkeys(steps, 0), rounds, before=evict)
            results[label] = {name: t["median_s"] * 1e3 for name, t in timings.items()}
    finally:
        torch._fused_sgd_ = kernel
    return results


def _no_kernel(*args: object, **kwargs: object) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="interleaved rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for label, row in time_bookkeeping(args.rounds).items():
        cells = ", ".join(f"{name} {ms:.3f} ms" for name, ms in row.items())
        print(f"{label}: {cells}")


if __name__ == "__main__":
    main()
