"""The default step (``fused=False``) of gradkit against torch.optim's default and fastest paths.

A user who swaps ``torch.optim.X`` for ``gradkit.optim.X`` keeps the default, eager, path. For
Adam, AdamW, SGD with momentum and Adagrad it is torch's own fused CPU kernel on gradkit's
state (see ``gradkit.optim._torch_kernels``); ``chain`` is the same optimizer with
``torch_kernels=False``, the multi-tensor chain the step ran before. torch's fastest path is its
fused kernel where it has one; torch has no LAMB or LARS, whose rows compare gradkit's default
with gradkit's fused (compiled) step and with the floor: the bytes each algorithm must move
(``optim_step.BYTES_PER_PARAMETER``) over the bandwidth of ``a += s b``, measured in the same
interleaved rounds. Every time is a median over the rounds, and each row's ratios are to
torch's fastest path (LAMB, LARS: to the floor).

Parameters: about 10M float32 in 255 tensors (127 matrices of 152 x 512 and 128 vectors of
512, the shape of a mid-sized network), one intra-op thread.

Run:
    PYTHONPATH=src nice -n 19 python benchmarks/default_path.py --markdown /tmp/default_path.md
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from optim_step import (
    BANDWIDTH_ELEMENTS,
    BYTES_PER_PARAMETER,
    bandwidth_kernel,
    make_parameters,
    time_interleaved,
)

import gradkit.optim as gk

SHAPES = [(152, 512)] * 127 + [(512,)] * 128

# Algorithm -> (gradkit class, torch class or None, options, floor row of optim_step).
ALGORITHMS: dict[str, tuple[str, str | None, dict[str, Any], str]] = {
    "Adam": ("Adam", "Adam", {"lr": 1e-3}, "adam"),
    "AdamW": ("AdamW", "AdamW", {"lr": 1e-3}, "adamw"),
    "SGD momentum 0.9": ("SGD", "SGD", {"lr": 0.01, "momentum": 0.9}, "momentum"),
    "Adagrad": ("Adagrad", "Adagrad", {"lr": 0.01}, "adagrad"),
    "RMSprop": ("RMSprop", "RMSprop", {"lr": 1e-2}, "rmsprop"),
    "Adadelta": ("Adadelta", "Adadelta", {"lr": 1.0}, "adadelta"),
    "Adamax": ("Adamax", "Adamax", {"lr": 2e-3}, "adamax"),
    "NAdam": ("NAdam", "NAdam", {"lr": 2e-3}, "nadam"),
    "RAdam": ("RAdam", "RAdam", {"lr": 1e-3}, "radam"),
    "LAMB": ("LAMB", None, {"lr": 1e-3}, "lamb"),
    "LARS": ("LARS", None, {"weight_decay": 1e-4}, "lars"),
}

# The algorithms torch has a fused CPU kernel for.
FUSED_IN_TORCH = ("Adam", "AdamW", "SGD momentum 0.9", "Adagrad")

Build = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def candidates(name: str) -> dict[str, tuple[Build, int]]:
    """label -> (build, warm-up steps) for one algorithm."""
    gk_name, torch_name, options, _ = ALGORITHMS[name]
    gk_cls = getattr(gk, gk_name)

    def chain(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        opt = gk_cls(params, **options)
        opt.torch_kernels = False
        return opt

    built: dict[str, tuple[Build, int]] = {
        "gradkit default": (lambda params: gk_cls(params, **options), 2),
        "gradkit chain": (chain, 2),
    }
    if torch_name is None:
        # The first fused step runs eagerly (fresh state), the second compiles.
        built["gradkit fused"] = (lambda params: gk_cls(params, fused=True, **options), 3)
        return built
    torch_cls = getattr(torch.optim, torch_name)
    built["torch default"] = (lambda params: torch_cls(params, **options), 2)
    built["torch foreach"] = (lambda params: torch_cls(params, foreach=True, **options), 2)
    if name in FUSED_IN_TORCH:
        built["torch fused"] = (lambda params: torch_cls(params, fused=True, **options), 2)
    return built


def measure(name: str, repeats: int) -> dict[str, Any]:
    built = candidates(name)
    optimizers = {label: build(make_parameters(SHAPES)) for label, (build, _) in built.items()}
    steps: dict[str, Callable[[], Any]] = {"bandwidth": bandwidth_kernel()}
    steps.update({label: optimizer.step for label, optimizer in optimizers.items()})
    warmups = {"bandwidth": 2, **{label: warmup for label, (_, warmup) in built.items()}}
    timings = time_interleaved(steps, warmups, repeats)
    count = sum(torch.Size(shape).numel() for shape in SHAPES)
    bandwidth = 12 * BANDWIDTH_ELEMENTS / timings.pop("bandwidth")["median_s"]
    floor = BYTES_PER_PARAMETER[ALGORITHMS[name][3]] * count / bandwidth
    return {"floor_s": floor, **{label: t["median_s"] for label, t in timings.items()}}


TORCH_PATHS = ("torch default", "torch foreach", "torch fused")


def markdown(rows: dict[str, dict[str, Any]], command: str) -> str:
    labels = [
        "gradkit default",
        "gradkit chain",
        "torch default",
        "torch foreach",
        "torch fused",
        "gradkit fused",
    ]
    lines = [
        f"`{command}` (torch {torch.__version__}, {torch.get_num_threads()} thread): median ms "
        "per step, and in parentheses the ratio to torch's fastest path (the least of its "
        "default, foreach and fused times), or to the floor where torch has no such optimizer.",
        "",
        "| optimizer | floor ms | " + " | ".join(labels) + " |",
        "| --- | --- |" + " --- |" * len(labels),
    ]
    for name, row in rows.items():
        torch_paths = [row[label] for label in TORCH_PATHS if label in row]
        base = min(torch_paths) if torch_paths else row["floor_s"]
        cells = []
        for label in labels:
            value = row.get(label)
            cells.append("-" if value is None else f"{value * 1e3:.1f} ({value / base:.2f}x)")
        lines.append(f"| {name} | {row['floor_s'] * 1e3:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per row")
    parser.add_argument("--optimizers", default=",".join(ALGORITHMS), help="rows to measure")
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for name in args.optimizers.split(","):
        rows[name] = measure(name, args.repeats)
        summary = "  ".join(f"{k} {v * 1e3:.1f}" for k, v in rows[name].items())
        print(f"{name}: {summary}", flush=True)
    table = markdown(rows, "python " + " ".join(sys.argv))
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(table)


if __name__ == "__main__":
    main()
