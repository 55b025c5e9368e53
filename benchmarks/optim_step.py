"""Step time of every gradkit optimizer against torch.optim, timm, pytorch_optimizer and the floor.

The floor of an optimizer step is the memory traffic its algorithm cannot avoid (the arrays it
must read and write once per parameter, below) divided by the memory bandwidth of an in-place
``a += s b`` kernel measured in the same interleaved rounds as the steps. Every time is reported
as a multiple of that floor, and gradkit's against the fastest torch.optim path for the same
algorithm (fused where torch has a fused CPU kernel: SGD, Adagrad, Adam, AdamW; foreach
otherwise), and for LAMB and LARS against timm's and pytorch_optimizer's. Each implementation
also reports the peak memory one step adds (Linux: resident-set high-water mark).

Parameters are laid out as in a real network: four large matrices hold 99% of them and 64
vectors (biases, norm gains) the rest. float32, ``--threads`` intra-op threads (default 2).
The implementations of one algorithm take their steps in turn, so that load from elsewhere on
the machine falls on all of them alike; on a shared machine run it at high priority
(``nice -n -20``, as root).

Run (about 20 minutes on 2 cores; each fused optimizer compiles once per size):
    nice -n -20 python benchmarks/optim_step.py --sizes 1M,10M,50M \\
        --json benchmarks/optim_step.json --markdown benchmarks/optim_step.md

timm and pytorch_optimizer are compared when installed (``pip install '.[bench]'``). timm's
package imports torchvision at import time; only its optimizer modules are loaded here, so
torchvision is not needed.
"""

from __future__ import annotations

import argparse
import ctypes
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
    "lion": 20,  # + m
    "adan": 44,  # read g, p, m, v, n, previous g; write p, m, v, n, previous g
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


def time_interleaved(
    steps: dict[str, Callable[[], Any]],
    warmups: dict[str, int],
    repeats: int,
    before: Callable[[], Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Median and minimum seconds per step of each candidate, their steps interleaved.

    One step of each candidate in turn, ``repeats`` rounds: a burst of load from elsewhere on
    the machine then slows every candidate of a round alike, and ratios between them hold
    better than times taken one candidate after another. The minimum is the time of a step
    that nothing disturbed. ``before``, if given, runs untimed before every timed step (to
    evict the caches, say).
    """
    for label, step in steps.items():
        for _ in range(warmups[label]):
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            if before is not None:
                before()
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {
        label: {"median_s": statistics.median(values), "min_s": min(values)}
        for label, values in times.items()
    }


def _resident_bytes() -> dict[str, int]:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def peak_extra_bytes(step: Callable[[], Any]) -> int | None:
    """Peak resident memory a step adds over what was resident before it (Linux only).

    Free heap memory is first returned to the system (``malloc_trim``) so that every buffer the
    step allocates must be faulted in anew, and the peak-RSS mark is reset
    (``/proc/self/clear_refs``); the step's peak is then the mark minus the resident size
    before it. None where either is unavailable.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _resident_bytes()["VmRSS"]
        step()
        return max(0, _resident_bytes()["VmHWM"] - before)
    except OSError:
        return None


BANDWIDTH_ELEMENTS = 20_000_000
"""Length of the arrays of the bandwidth kernel: 160 MB in all, far beyond the caches."""


def bandwidth_kernel() -> Callable[[], Any]:
    """``a += s b`` over two float32 arrays: 12 bytes per element, the in-place pattern.

    An optimizer reads and writes its arrays in place, so a cache line it writes was read just
    before; this kernel moves memory the same way. (The out-of-place triad ``a = b + s c`` also
    pays a hidden read of every line it writes, and reports about 3/4 of this bandwidth.)
    """
    a, b = torch.rand(BANDWIDTH_ELEMENTS), torch.rand(BANDWIDTH_ELEMENTS)
    return lambda: a.add_(b, alpha=1e-3)


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


def candidates(
    name: str, fused_here: bool, peers: dict[str, Callable[..., torch.optim.Optimizer]]
) -> dict[str, tuple[Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], int]]:
    """Every implementation of algorithm ``name`` to time: label -> (build, warm-up steps)."""
    options = GRADKIT_OPTIONS.get(name, {})
    spec = OPTIMIZERS[name]
    built: dict[str, tuple[Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], int]] = {
        "eager": (lambda params: spec.create(params, **options), 2)
    }
    if fused_here:
        # The first step runs eagerly (fresh state), the second compiles.
        built["fused"] = (lambda params: spec.create(params, fused=True, **options), 3)
    if name in TORCH_EQUIVALENT:
        class_name, torch_options, has_fused = TORCH_EQUIVALENT[name]
        path = {"fused": True} if has_fused else {"foreach": True}
        cls = getattr(torch.optim, class_name)
        built["torch"] = (lambda params: cls(params, **torch_options, **path), 2)
    if name in ("lamb", "lars"):
        # The target of issue 3 compares fused LAMB and LARS with torch's fused Adam: timed in
        # the same rounds as they are, because this machine's speed drifts between rows.
        built["torch_adam"] = (lambda params: torch.optim.Adam(params, lr=1e-3, fused=True), 2)
        for label, build in peers.items():
            if name in label.lower():
                built[label] = (build, 2)
    return built


def measure_algorithm(
    name: str,
    shapes: list[tuple[int, ...]],
    fused_here: bool,
    peers: dict[str, Callable[..., torch.optim.Optimizer]],
    repeats: int,
) -> dict[str, Any]:
    """Time, peak memory and compile time of every implementation of one algorithm.

    The bandwidth kernel runs in the same interleaved rounds, so the floor of this row is
    measured under the same conditions as its steps.
    """
    built = candidates(name, fused_here, peers)
    optimizers = {label: build(make_parameters(shapes)) for label, (build, _) in built.items()}
    steps: dict[str, Callable[[], Any]] = {"bandwidth": bandwidth_kernel()}
    steps.update({label: optimizer.step for label, optimizer in optimizers.items()})
    warmups = {"bandwidth": 2, **{label: warmup for label, (_, warmup) in built.items()}}
    timings = time_interleaved(steps, warmups, repeats)
    count = sum(torch.Size(shape).numel() for shape in shapes)
    bandwidth = 12 * BANDWIDTH_ELEMENTS / timings["bandwidth"]["median_s"]
    row: dict[str, Any] = {
        "bandwidth_bytes_per_second": bandwidth,
        "floor_s": BYTES_PER_PARAMETER[name] * count / bandwidth,
    }
    for label, optimizer in optimizers.items():
        entry = {**timings[label], "peak_extra_bytes": peak_extra_bytes(optimizer.step)}
        if label == "fused":
            entry["compile_s"] = optimizer.compile_seconds
        if label == "torch":
            entry["path"] = "fused" if TORCH_EQUIVALENT[name][2] else "foreach"
        row[label] = entry
    return row


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    peers = load_peers()
    names = list(OPTIMIZERS) if args.optimizers == "all" else args.optimizers.split(",")
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "gradkit": gradkit.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": args.threads,
        "sizes": {},
    }
    fused_sizes = args.fused_sizes.split(",")
    for size_text in args.sizes.split(","):
        shapes = layout(parse_size(size_text))
        count = sum(torch.Size(shape).numel() for shape in shapes)
        rows: dict[str, Any] = {}
        for name in names:
            row = measure_algorithm(name, shapes, size_text in fused_sizes, peers, args.repeats)
            rows[name] = row
            print(f"{size_text:>4} {name:9s} " + _summary(row), flush=True)
        results["sizes"][size_text] = {"parameters": count, "rows": rows}
    return results


def _summary(row: dict[str, Any]) -> str:
    parts = [
        f"{label} {entry['median_s'] * 1e3:.1f} ms"
        for label, entry in row.items()
        if isinstance(entry, dict)
    ]
    bandwidth = row["bandwidth_bytes_per_second"] / 1e9
    return "  ".join([*parts, f"floor {row['floor_s'] * 1e3:.1f} ms ({bandwidth:.1f} GB/s)"])


def _ms(entry: dict[str, Any] | None, floor: float) -> str:
    if entry is None:
        return "-"
    return f"{entry['median_s'] * 1e3:.1f} ({entry['median_s'] / floor:.2f}x)"


def _memory(entry: dict[str, Any] | None, parameter_bytes: int) -> str:
    if entry is None or entry.get("peak_extra_bytes") is None:
        return "-"
    return f"{entry['peak_extra_bytes'] / parameter_bytes:.2f}"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    return "-" if a is None or b is None else f"{a['median_s'] / b['median_s']:.2f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['threads']} threads; torch {results['torch']}; float32. Times are medians "
        "of interleaved steps; the floor of each row uses the bandwidth of `a += s b` measured "
        "in the same rounds (GB/s column); memory is the peak a step adds, in "
        "parameter-sized buffers.",
        "",
    ]
    for size_text, size in results["sizes"].items():
        parameter_bytes = 4 * size["parameters"]
        lines += [
            f"### {size_text} parameters ({size['parameters']:,})",
            "",
            "| optimizer | GB/s | floor ms | gradkit eager ms (x floor) "
            "| gradkit fused ms (x floor) | compile s | torch ms (x floor) | torch path "
            "| fused / torch | extra memory eager / fused / torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        peer_lines = []
        adam = size["rows"].get("adam", {}).get("torch")
        for name, row in size["rows"].items():
            floor = row["floor_s"]
            eager, fused, reference = row["eager"], row.get("fused"), row.get("torch")
            compile_s = "-" if fused is None else f"{fused['compile_s']:.0f}"
            path = "-" if reference is None else reference["path"]
            memory = " / ".join(_memory(e, parameter_bytes) for e in (eager, fused, reference))
            gigabytes = row["bandwidth_bytes_per_second"] / 1e9
            lines.append(
                f"| {name} | {gigabytes:.1f} | {floor * 1e3:.1f} | {_ms(eager, floor)} "
                f"| {_ms(fused, floor)} "
                f"| {compile_s} | {_ms(reference, floor)} | {path} | {_ratio(fused, reference)} "
                f"| {memory} |"
            )
            # torch's fused Adam of this row's own rounds, else (older JSON) of the Adam row.
            same_rounds = row.get("torch_adam", adam)
            for label, entry in row.items():
                if " " in label and isinstance(entry, dict):  # a peer: "timm Lamb"
                    peer_lines.append(
                        f"| {label} | {_ms(entry, floor)} | {_ratio(entry, fused)} "
                        f"| {_ratio(fused, same_rounds)} | {_memory(entry, parameter_bytes)} |"
                    )
        if peer_lines:
            lines += [
                "",
                "| peer | step ms (x floor) | peer / gradkit fused | gradkit fused / torch "
                "fused Adam (same rounds) | extra memory |",
                "| --- | ---: | ---: | ---: | ---: |",
                *peer_lines,
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1M,10M,50M")
    parser.add_argument(
        "--fused-sizes", default="1M,10M,50M", help="sizes at which to time the fused path too"
    )
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
