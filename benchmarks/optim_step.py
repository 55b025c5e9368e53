"""Step time of every gradkit optimizer against torch.optim, timm, pytorch_optimizer and the floor.

The floor of an optimizer step is the memory traffic its algorithm cannot avoid (the arrays it
must read and write once per parameter, below) divided by the memory bandwidth measured in the
same run with a triad kernel (a = b + s c). Every time is reported as a multiple of that floor,
and gradkit's against the fastest torch.optim path for the same algorithm (fused where torch has
a fused CPU kernel: SGD, Adagrad, Adam, AdamW; foreach otherwise).

Parameters are laid out as in a real network: four large matrices hold 99% of them and 64
vectors (biases, norm gains) the rest. float32, ``--threads`` intra-op threads (default 2).

Run (about 15 minutes on 2 cores; each fused optimizer compiles once per size):
    python benchmarks/optim_step.py --sizes 1M,10M,50M --fused-sizes 10M \\
        --json benchmarks/optim_step.json --markdown benchmarks/optim_step.md

timm and pytorch_optimizer are compared when installed (``pip install '.[bench]'``). timm's
package imports torchvision at import time; only its optimizer modules are loaded here, so
torchvision is not needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch

import gradkit
from gradkit._io import atomic_output
from gradkit.optim import OPTIMIZERS

# Bytes per float32 parameter that each algorithm must move: reads of the gradient, the
# parameter and each state array, writes of the parameter and each state array. LARS and LAMB
# need every norm before any update, so they pass over the data twice (the second pass of LAMB
# recomputes the update from m and v rather than storing it).
BYTES_PER_PARAMETER = {
    "sgd": 12,  # read g, p; write p
    "momentum": 20,  # + buffer
    "nag": 20,
    "sgdw": 20,
    "adagrad": 20,  # + sum
    "rmsprop": 20,  # + square average
    "adadelta": 28,  # + square average, accumulated delta
    "adam": 28,  # + m, v
    "amsgrad": 36,  # + max v
    "adamax": 28,
    "nadam": 28,
    "adamw": 28,
    "radam": 28,
    "lars": 28,  # pass 1: read g, p (norms); pass 2: read g, p, buffer; write buffer, p
    "lamb": 40,  # pass 1: read g, m, v, p; write m, v; pass 2: read m, v, p; write p
}

# torch.optim's class and options for the same algorithm, and whether a fused CPU kernel exists.
TORCH_EQUIVALENT: dict[str, tuple[str, dict[str, Any], bool]] = {
    "sgd": ("SGD", {"lr": 0.01}, True),
    "momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}, True),
    "nag": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}, True),
    "adagrad": ("Adagrad", {"lr": 0.01}, True),
    "rmsprop": ("RMSprop", {"lr": 0.01}, False),
    "adadelta": ("Adadelta", {"lr": 1.0}, False),
    "adam": ("Adam", {"lr": 1e-3}, True),
    "amsgrad": ("Adam", {"lr": 1e-3, "amsgrad": True}, True),
    "adamax": ("Adamax", {"lr": 2e-3}, False),
    "nadam": ("NAdam", {"lr": 2e-3}, False),
    "adamw": ("AdamW", {"lr": 1e-3}, True),
    "radam": ("RAdam", {"lr": 1e-3}, False),
}
GRADKIT_OPTIONS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01},
    "nag": {"lr": 0.01},
    "lars": {"weight_decay": 1e-4},
}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * scale)


def layout(size: int) -> list[tuple[int, ...]]:
    """Four matrices of 1024 columns with 99% of the parameters, 64 vectors with the rest."""
    vector = max(1, size // 100 // 64)
    rows = max(1, (size - 64 * vector) // 4 // 1024)
    return [(rows, 1024)] * 4 + [(vector,)] * 64


def make_parameters(shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        param = torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.02)
        param.grad = torch.randn(shape, generator=generator) * 1e-3
        params.append(param)
    return params


def time_steps(step: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median seconds per step after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def triad_bandwidth(elements: int = 20_000_000, repeats: int = 10) -> float:
    """Bytes per second of a = b + s c (three float32 arrays), best of ``repeats``."""
    a, b, c = torch.empty(elements), torch.rand(elements), torch.rand(elements)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.add(b, c, alpha=1.5, out=a)
        best = min(best, time.perf_counter() - start)
    return 3 * 4 * elements / best


def load_peers() -> dict[str, Callable[..., torch.optim.Optimizer]]:
    """timm's and pytorch_optimizer's LAMB and LARS, where installed."""
    peers: dict[str, Callable[..., torch.optim.Optimizer]] = {}
    spec = importlib.util.find_spec("timm")
    if spec is not None and spec.origin is not None:
        root = os.path.dirname(spec.origin)
        for name, path in (("timm", root), ("timm.optim", os.path.join(root, "optim"))):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [path]
                sys.modules[name] = package
        from timm.optim.lamb import Lamb as TimmLamb
        from timm.optim.lars import Lars as TimmLars

        peers["timm Lamb"] = lambda params: TimmLamb(params, lr=1e-3, weight_decay=0.01)
        # always_adapt: compute the trust ratio like the others even where it is not decaying.
        peers["timm Lars"] = lambda params: TimmLars(
            params, lr=1.0, momentum=0.9, weight_decay=1e-4, always_adapt=True
        )
    if importlib.util.find_spec("pytorch_optimizer") is not None:
        from pytorch_optimizer import LARS as PO_LARS
        from pytorch_optimizer import Lamb as PoLamb

        peers["pytorch_optimizer Lamb"] = lambda params: PoLamb(params, lr=1e-3, weight_decay=0.01)
        peers["pytorch_optimizer LARS"] = lambda params: PO_LARS(
            params, lr=1.0, momentum=0.9, weight_decay=1e-4
        )
    return peers


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    bandwidth = triad_bandwidth()
    print(f"triad bandwidth: {bandwidth / 1e9:.2f} GB/s, {args.threads} threads", flush=True)
    peers = load_peers()
    names = list(OPTIMIZERS) if args.optimizers == "all" else args.optimizers.split(",")
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "gradkit": gradkit.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": args.threads,
        "bandwidth_bytes_per_second": bandwidth,
        "sizes": {},
    }
    for size_text in args.sizes.split(","):
        size = parse_size(size_text)
        shapes = layout(size)
        count = sum(torch.Size(shape).numel() for shape in shapes)
        fused_here = size_text in args.fused_sizes.split(",")
        rows: dict[str, Any] = {}
        for name in names:
            floor = BYTES_PER_PARAMETER[name] * count / bandwidth
            row: dict[str, Any] = {"floor_s": floor}
            options = GRADKIT_OPTIONS.get(name, {})
            for fused in (False, True) if fused_here else (False,):
                params = make_parameters(shapes)
                optimizer = OPTIMIZERS[name].create(params, fused=fused, **options)
                # Fused: the first step runs eagerly (fresh state), the second compiles.
                seconds = time_steps(optimizer.step, 2 if fused else 1, args.repeats)
                key = "fused" if fused else "eager"
                row[f"gradkit_{key}_s"] = seconds
                if fused:
                    row["compile_s"] = optimizer.compile_seconds
                del optimizer, params
            if name in TORCH_EQUIVALENT:
                class_name, torch_options, has_fused = TORCH_EQUIVALENT[name]
                params = make_parameters(shapes)
                path = {"fused": True} if has_fused else {"foreach": True}
                optimizer = getattr(torch.optim, class_name)(params, **torch_options, **path)
                row["torch_s"] = time_steps(optimizer.step, 1, args.repeats)
                row["torch_path"] = "fused" if has_fused else "foreach"
                del optimizer, params
            rows[name] = row
            print(f"{size_text:>4} {name:9s} " + _summary(row), flush=True)
        peer_rows = {}
        for label, build in peers.items():
            params = make_parameters(shapes)
            optimizer = build(params)
            algorithm = "lamb" if "lamb" in label.lower() else "lars"
            floor = BYTES_PER_PARAMETER[algorithm] * count / bandwidth
            seconds = time_steps(optimizer.step, 1, args.repeats)
            peer_rows[label] = {"floor_s": floor, "step_s": seconds, "algorithm": algorithm}
            print(f"{size_text:>4} {label}: {seconds * 1e3:.1f} ms", flush=True)
            del optimizer, params
        results["sizes"][size_text] = {"parameters": count, "gradkit": rows, "peers": peer_rows}
    return results


def _summary(row: dict[str, Any]) -> str:
    parts = [f"eager {row['gradkit_eager_s'] * 1e3:8.1f} ms"]
    if "gradkit_fused_s" in row:
        parts.append(f"fused {row['gradkit_fused_s'] * 1e3:8.1f} ms")
    if "torch_s" in row:
        parts.append(f"torch {row['torch_path']} {row['torch_s'] * 1e3:8.1f} ms")
    parts.append(f"floor {row['floor_s'] * 1e3:6.1f} ms")
    return "  ".join(parts)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Bandwidth (triad): {results['bandwidth_bytes_per_second'] / 1e9:.2f} GB/s; "
        f"{results['threads']} threads; torch {results['torch']}; float32.",
        "",
    ]
    for size_text, size in results["sizes"].items():
        lines += [
            f"### {size_text} parameters ({size['parameters']:,})",
            "",
            "| optimizer | floor ms | gradkit eager ms (x floor) | gradkit fused ms (x floor) "
            "| compile s | torch ms (path, x floor) | fused / torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in size["gradkit"].items():
            floor = row["floor_s"]

            def cell(seconds: float | None, floor: float = floor) -> str:
                if seconds is None:
                    return "-"
                return f"{seconds * 1e3:.1f} ({seconds / floor:.2f}x)"

            fused = row.get("gradkit_fused_s")
            torch_s = row.get("torch_s")
            torch_cell = "-" if torch_s is None else f"{torch_s * 1e3:.1f} ({row['torch_path']}, "
            if torch_s is not None:
                torch_cell += f"{torch_s / floor:.2f}x)"
            ratio = "-" if fused is None or torch_s is None else f"{fused / torch_s:.2f}"
            compile_s = "-" if "compile_s" not in row else f"{row['compile_s']:.0f}"
            lines.append(
                f"| {name} | {floor * 1e3:.1f} | {cell(row['gradkit_eager_s'])} | {cell(fused)} "
                f"| {compile_s} | {torch_cell} | {ratio} |"
            )
        if size["peers"]:
            lines += ["", "| peer | step ms (x floor) |", "| --- | ---: |"]
            for label, row in size["peers"].items():
                multiple = row["step_s"] / row["floor_s"]
                lines.append(f"| {label} | {row['step_s'] * 1e3:.1f} ({multiple:.2f}x) |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1M,10M,50M")
    parser.add_argument("--fused-sizes", default="10M", help="sizes at which to compile")
    parser.add_argument("--optimizers", default="all", help="registry names, comma-separated")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--markdown", help="write the tables as Markdown")
    args = parser.parse_args()
    results = measure(args)
    table = markdown(results)
    print(table)
    if args.json:
        with atomic_output(args.json) as path:
            path.write_text(json.dumps(results, indent=2))
    if args.markdown:
        with atomic_output(args.markdown) as path:
            path.write_text(table)


if __name__ == "__main__":
    main()
