"""The fixed cost of calling a ``torch.compile``'d optimizer step, against torch's fused Adam.

A fused gradkit step is one compiled program whose inputs are every parameter, gradient and
state tensor. Each call pays dynamo's guards (a check per input tensor), AOTAutograd's runtime
wrapper (a version bump per mutated input) and the kernel call's argument conversion, before any
arithmetic. This script measures that floor on a model of ``--tensors`` tiny parameters, so
that the arithmetic is negligible:

- ``compiled, flat``: a minimal compiled Adam-like update taking four flat tensor lists
  (parameters, gradients, two moments): the least any compiled step with these inputs costs;
- ``compiled, nested``: the same update reading its inputs through bucket objects and state
  dicts, as gradkit's chain does (attribute and dictionary accessors in the guards);
- ``gradkit fused Adam``: the whole ``optimizer.step()``, which after its first compiled step
  calls its program without dynamo (``gradkit/optim/_direct.py``);
- ``torch fused Adam``: ``torch.optim.Adam(fused=True).step()``, which has no guards.

Each is timed with warm caches (the same call repeated) and cold (a 64 MB copy before every
call evicts the caches, as the forward and backward passes do in training).

Run: ``nice -n -20 python benchmarks/compile_call_overhead.py --tensors 68``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch
from optim_step import time_interleaved

import gradkit.optim as gko


@dataclass
class _Bucket:
    params: list[torch.Tensor]
    updates: list[torch.Tensor]
    states: list[dict[str, torch.Tensor]]
    hypers: dict[str, torch.Tensor]


def _flat(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, lr: Any) -> None:
    torch._foreach_lerp_(exp_avgs, grads, 0.1)
    torch._foreach_mul_(exp_avg_sqs, 0.999)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=0.001)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, 1e-8)
    torch._foreach_add_(params, torch._foreach_mul(torch._foreach_div(exp_avgs, denom), -lr))


def _nested(buckets: list[_Bucket]) -> None:
    for bucket in buckets:
        exp_avgs = [state["exp_avg"] for state in bucket.states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in bucket.states]
        _flat(bucket.params, bucket.updates, exp_avgs, exp_avg_sqs, bucket.hypers["lr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tensors", type=int, default=68, help="parameter tensors")
    parser.add_argument("--numel", type=int, default=16, help="elements per tensor")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def parameters() -> list[torch.nn.Parameter]:
        params = [torch.nn.Parameter(torch.randn(args.numel)) for _ in range(args.tensors)]
        for param in params:
            param.grad = torch.randn_like(param)
        return params

    options = {"size_asserts": False, "alignment_asserts": False}
    flat = torch.compile(_flat, fullgraph=True, dynamic=False, options=options)
    nested = torch.compile(_nested, fullgraph=True, dynamic=False, options=options)
    params = parameters()
    states = [{"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)} for p in params]
    lr = torch.tensor(1e-3, dtype=torch.float64)
    grads = [p.grad for p in params]

    def call_flat() -> None:
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        with torch.no_grad():
            flat(params, grads, exp_avgs, exp_avg_sqs, lr)

    def call_nested() -> None:
        with torch.no_grad():
            nested([_Bucket(params, grads, states, {"lr": lr})])

    ours = gko.Adam(parameters(), lr=1e-3, fused=True)
    theirs = torch.optim.Adam(parameters(), lr=1e-3, fused=True)
    calls = {
        "compiled, flat": call_flat,
        "compiled, nested": call_nested,
        "gradkit fused Adam": ours.step,
        "torch fused Adam": theirs.step,
    }
    warmups = {label: 3 for label in calls}  # compile, create state, warm up
    source = torch.empty(64 * 2**20, dtype=torch.uint8)
    target = torch.empty_like(source)
    timings = {
        "warm": time_interleaved(calls, warmups, args.rounds),
        "cold": time_interleaved(calls, warmups, args.rounds, before=lambda: target.copy_(source)),
    }
    warm, cold = ({k: v["median_s"] * 1e6 for k, v in t.items()} for t in timings.values())
    print(
        f"{args.tensors} tensors of {args.numel} elements, {args.threads} threads, "
        f"torch {torch.__version__}; median microseconds per call over {args.rounds} rounds\n"
    )
    print("| call | warm caches (us) | cold caches (us) |")
    print("| --- | ---: | ---: |")
    for label in calls:
        print(f"| {label} | {warm[label]:.0f} | {cold[label]:.0f} |")


if __name__ == "__main__":
    main()
