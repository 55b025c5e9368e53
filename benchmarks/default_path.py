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

Each row is measured in ``--trials`` fresh builds (default 4), each building the candidates in
another order (see :func:`measure_once`).

Parameters: about 10M float32 in 255 tensors (127 matrices of 152 x 512 and 128 vectors of
512, the shape of a mid-sized network), one intra-op thread; ``--parameters 1M`` makes the
matrices 15 x 512 (1.04M parameters, the same 255 tensors).

Run:
    PYTHONPATH=src nice -n 19 python benchmarks/default_path.py --markdown /tmp/default_path.md
"""

from __future__ import annotations

import argparse
import os
import statistics
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
# The same 255 tensors with a tenth of the parameters (--parameters 1M): gradkit's per-step
# bookkeeping is per tensor, so it weighs ten times more against the kernel there.
SHAPES_BY_SIZE = {"10M": SHAPES, "1M": [(15, 512)] * 127 + [(512,)] * 128}

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


def measure_once(
    name: str, repeats: int, trial: int, shapes: list[tuple[int, ...]] = SHAPES
) -> dict[str, float]:
    """One trial: every candidate built anew, in an order that depends on ``trial``, then
    interleaved rounds.

    Where a candidate's tensors land in memory (the order they were allocated in, the heap
    before them) moves its step by up to 10%: torch's own SGD kernel called on one optimizer's
    state ran 1.01-1.17x its time on another's, same shapes, same process, and the state
    allocated first was the slower one (0.92-1.00x with the order reversed), and the candidate
    built first ran up to 1.2x its time in other trials. So each trial builds and warms up
    (allocates the state of) the candidates in another order, the rounds run in it too, and
    the table gives the median over trials: no candidate always gets the same place.
    """
    built = candidates(name)
    labels = list(built)
    # Even trials rotate the candidates' order, odd ones its reverse: a rotation alone keeps
    # each candidate after the same neighbour in all trials but one.
    labels = labels if trial % 2 == 0 else labels[::-1]
    shift = (trial // 2) % len(labels)
    order = labels[shift:] + labels[:shift]
    made = {label: built[label][0](make_parameters(shapes)) for label in order}
    steps: dict[str, Callable[[], Any]] = {"bandwidth": bandwidth_kernel()}
    # In the same order: the warm-up steps allocate the state (momentum buffers, ...).
    steps.update({label: made[label].step for label in order})
    warmups = {"bandwidth": 2, **{label: warmup for label, (_, warmup) in built.items()}}
    timings = time_interleaved(steps, warmups, repeats)
    count = sum(torch.Size(shape).numel() for shape in shapes)
    bandwidth = 12 * BANDWIDTH_ELEMENTS / timings.pop("bandwidth")["median_s"]
    floor = BYTES_PER_PARAMETER[ALGORITHMS[name][3]] * count / bandwidth
    return {"floor_s": floor, **{label: t["median_s"] for label, t in timings.items()}}


def measure(
    name: str, repeats: int, trials: int = 1, shapes: list[tuple[int, ...]] = SHAPES
) -> dict[str, Any]:
    """The median over ``trials`` of each candidate's median time (and of the floor), with
    each trial's ratio of gradkit's default to torch's fastest path (or to the floor)."""
    runs = [measure_once(name, repeats, trial, shapes) for trial in range(trials)]
    row: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    row["trial_ratios"] = [run["gradkit default"] / baseline(run) for run in runs]
    return row


def baseline(row: dict[str, Any]) -> float:
    """torch's fastest path in ``row``, or the floor where torch has no such optimizer."""
    torch_paths = [row[label] for label in TORCH_PATHS if label in row]
    return min(torch_paths) if torch_paths else row["floor_s"]


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
        "per step (the median over the trials of each trial's median), and in parentheses the "
        "ratio to torch's fastest path (the least of its default, foreach and fused times), or "
        "to the floor where torch has no such optimizer; the last column is gradkit default's "
        "ratio in each trial.",
        "",
        "| optimizer | floor ms | " + " | ".join(labels) + " | default, each trial |",
        "| --- | --- |" + " --- |" * (len(labels) + 1),
    ]
    for name, row in rows.items():
        base = baseline(row)
        cells = []
        for label in labels:
            value = row.get(label)
            cells.append("-" if value is None else f"{value * 1e3:.1f} ({value / base:.2f}x)")
        trials = ", ".join(f"{ratio:.2f}" for ratio in row["trial_ratios"])
        cells.append(trials)
        lines.append(f"| {name} | {row['floor_s'] * 1e3:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per row")
    parser.add_argument(
        "--trials",
        type=int,
        default=4,
        help="fresh builds per row, each in another order (the table gives their medians)",
    )
    parser.add_argument("--optimizers", default=",".join(ALGORITHMS), help="rows to measure")
    parser.add_argument(
        "--parameters",
        choices=sorted(SHAPES_BY_SIZE),
        default="10M",
        help="the 255 tensors' total size",
    )
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for name in args.optimizers.split(","):
        rows[name] = measure(name, args.repeats, args.trials, SHAPES_BY_SIZE[args.parameters])
        summary = "  ".join(
            f"{k} {v * 1e3:.1f}" for k, v in rows[name].items() if k != "trial_ratios"
        )
        print(f"{name}: {summary}", flush=True)
    table = markdown(rows, "python " + " ".join(sys.argv))
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(table)


if __name__ == "__main__":
    main()
