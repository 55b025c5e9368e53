"""A fused step's fixed cost: the direct call against dynamo's guards and torch's public options.

The fused backend calls its compiled program without dynamo's guards once they have passed, with
its own checks of the step's structure and tensors (``gradkit/optim/fused/_direct.py``, through
private torch hooks). This script asks whether one of torch's public ways of reducing guard
cost does as well. Fused Adam on a small model (``--layers`` linear layers of ``--width``:
68 tensors and 101K parameters by default), where the fixed cost of a step outweighs its
arithmetic, with:

- ``direct call``: the fused step as it ships;
- ``guarded call``: every step through dynamo's guards (the direct call switched off);
- ``guard_filter_fn=<name>``: the program compiled with ``torch.compile(options=
  {"guard_filter_fn": torch.compiler.<name>})``, every step a guarded call that evaluates
  only the guards the filter kept (``keep_tensor_guards_unsafe`` with ``keep_parameters=True``,
  since the step's parameters are ``nn.Parameter``\\ s);
- ``set_stance(skip_guard_eval_unsafe=True)``: the guarded call under that stance, which skips
  the guards when one compiled program is cached.

The filters and the stance are unsafe alone: they drop the checks of the Python structure (and,
but for the tensor filters, of the tensors) that the fused step would then have to make itself.
Their times are therefore a lower bound of what a public option would cost in the step.

The candidates step in turn, ``--rounds`` interleaved rounds, with warm caches (the same step
repeated) and cold (a 64 MB copy before every step, as the forward and backward passes leave
the caches in training). Reported: median microseconds per step and its ratio to the direct
call.

Run: ``nice -n 19 python benchmarks/fused_guards.py`` (a few minutes: five compilations)
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import torch
from optim_step import time_interleaved

import gradkit.optim as gko
from gradkit.optim.fused._step import _run_chain, compiled_copy


def _model_parameters(layers: int, width: int, seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(layers):
        params.append(torch.nn.Parameter(torch.randn(width, width, generator=generator)))
        params.append(torch.nn.Parameter(torch.randn(width, generator=generator)))
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    return params


def _fused_adam(
    params: list[torch.nn.Parameter], *, direct: bool, guard_filter_fn: Any = None
) -> torch.optim.Optimizer:
    optimizer = gko.Adam(params, lr=1e-3, fused=True)
    step = optimizer._fused._step
    if guard_filter_fn is not None:
        step._compiled = compiled_copy(_run_chain, step._log, guard_filter_fn=guard_filter_fn)
    step._trusted = direct  # False: never the direct call
    return optimizer


def _under_stance(step: Callable[[], Any]) -> Callable[[], None]:
    def stepped() -> None:
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            step()

    return stepped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=34, help="linear layers (weight, bias)")
    parser.add_argument("--width", type=int, default=54)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    keep_tensors = functools.partial(torch.compiler.keep_tensor_guards_unsafe, keep_parameters=True)
    filters = {
        "keep_tensor_guards_unsafe": keep_tensors,
        "keep_portable_guards_unsafe": torch.compiler.keep_portable_guards_unsafe,
        "skip_guard_on_globals_unsafe": torch.compiler.skip_guard_on_globals_unsafe,
        "skip_all_guards_unsafe": torch.compiler.skip_all_guards_unsafe,
    }
    params = functools.partial(_model_parameters, args.layers, args.width)
    optimizers = {
        "direct call": _fused_adam(params(0), direct=True),
        "guarded call": _fused_adam(params(1), direct=False),
    }
    for name, guard_filter in filters.items():
        optimizers[f"guard_filter_fn={name}"] = _fused_adam(
            params(len(optimizers)), direct=False, guard_filter_fn=guard_filter
        )
    stance = "set_stance(skip_guard_eval_unsafe=True)"
    optimizers[stance] = _fused_adam(params(len(optimizers)), direct=False)
    calls: dict[str, Callable[[], Any]] = {label: opt.step for label, opt in optimizers.items()}
    calls[stance] = _under_stance(optimizers[stance].step)
    for _ in range(4):  # the stance refuses to compile: compile and warm up outside it
        optimizers[stance].step()
    warmups = dict.fromkeys(calls, 5)  # eager first step, compilation, warm-up
    source = torch.empty(64 * 2**20, dtype=torch.uint8)
    target = torch.empty_like(source)
    warm = time_interleaved(calls, warmups, args.rounds)
    cold = time_interleaved(calls, warmups, args.rounds, before=lambda: target.copy_(source))
    count = sum(p.numel() for p in params(0))
    print(
        f"fused Adam, {2 * args.layers} tensors, {count:,} parameters, {args.threads} threads, "
        f"torch {torch.__version__}; median of {args.rounds} interleaved rounds\n"
    )
    print("| call | warm (us) | / direct | cold (us) | / direct |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base_warm, base_cold = warm["direct call"]["median_s"], cold["direct call"]["median_s"]
    for label in calls:
        w, c = warm[label]["median_s"], cold[label]["median_s"]
        ratios = f"{w * 1e6:.0f} | {w / base_warm:.2f} | {c * 1e6:.0f} | {c / base_cold:.2f}"
        print(f"| {label} | {ratios} |")
    print("\nprograms compiled, steps called directly:")
    for label, optimizer in optimizers.items():
        fused = optimizer._fused
        print(f"- {label}: {fused.compilations}, {fused.direct_steps}")


if __name__ == "__main__":
    main()
