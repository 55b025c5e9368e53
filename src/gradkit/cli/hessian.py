"""``gradkit hessian``: top Hessian eigenvalues, trace and ε-sharpness of a trained model."""

from __future__ import annotations

import argparse
import os
import sys

from gradkit._io import atomic_output
from gradkit.cli._diagnostics_setup import (
    add_model_arguments,
    add_training_arguments,
    fit,
    load_model_and_data,
)
from gradkit.cli._types import positive_integer
from gradkit.diagnostics import hessian_eigenvalues, hessian_trace, sharpness

__all__ = ["register"]


def _plot(values: tuple[float, ...], title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), layout="constrained")
    ranks = range(1, len(values) + 1)
    axes.stem(ranks, values)
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.set_xticks(list(ranks))
    axes.set_xlabel("rank")
    axes.set_ylabel("Hessian eigenvalue")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    suffix = path.rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=120)
    plt.close(figure)


def _hessian_command(args: argparse.Namespace) -> int:
    try:
        model, data = load_model_and_data(args)
        loss = fit(
            model,
            data,
            optimizer=args.optimizer,
            lr=args.lr,
            steps=args.train_steps,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        top = hessian_eigenvalues(
            model, data, args.k, method=args.method, batch_size=args.eval_batch, seed=args.seed
        )
        trace = hessian_trace(
            model, data, samples=args.trace_samples, batch_size=args.eval_batch, seed=args.seed
        )
        sharp = (
            sharpness(model, data, epsilon=args.epsilon, batch_size=args.eval_batch, seed=args.seed)
            if args.epsilon
            else None
        )
    except (KeyError, ValueError, FileNotFoundError) as error:
        print(f"gradkit hessian: {error.args[0]}", file=sys.stderr)
        return 2
    trained = f"{args.train_steps} steps of {args.optimizer}" if args.train_steps else "init"
    print(f"model     {args.model} on {args.dataset} ({len(data[0])} samples), after {trained}")
    if args.train_steps:
        print(f"loss      {loss:.4g} (last training batch)")
    print(f"top-{args.k}     ({args.method}, {top.products} Hessian-vector products)")
    for rank, value in enumerate(top.eigenvalues, 1):
        print(f"{rank:>9} {value:>14.6g}")
    print(f"trace     {trace.trace:.6g} +- {trace.standard_error:.2g} ({trace.samples} probes)")
    if sharp is not None:
        print(
            f"sharpness {sharp.sharpness:.4g}% at epsilon {sharp.epsilon:g} "
            f"(loss {sharp.loss:.4g}, max in box {sharp.max_loss:.4g})"
        )
    title = f"{args.model}, {trained}: trace {trace.trace:.4g}"
    _plot(top.eigenvalues, title, args.out)
    print(f"plot      {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``hessian`` verb to the ``gradkit`` command."""
    verb = commands.add_parser(
        "hessian",
        help="top Hessian eigenvalues, trace and epsilon-sharpness of a model",
        description="Train a model briefly, then measure the curvature of its training loss: "
        "top eigenvalues (Lanczos or power iteration), the trace (Hutchinson) and the "
        "epsilon-sharpness of Keskar et al. (arXiv 1609.04836), all by Hessian-vector products.",
    )
    add_model_arguments(verb)
    add_training_arguments(verb, steps=200)
    verb.add_argument("--k", type=positive_integer, default=5, help="eigenvalues (default 5)")
    verb.add_argument("--method", choices=("lanczos", "power"), default="lanczos")
    verb.add_argument(
        "--trace-samples", type=positive_integer, default=50, help="Hutchinson probes (50)"
    )
    verb.add_argument(
        "--epsilon",
        type=float,
        default=1e-3,
        help="box size of the sharpness (default 1e-3; 0 skips it)",
    )
    verb.add_argument(
        "--eval-batch", type=positive_integer, default=1000, help="evaluation batch (1000)"
    )
    verb.add_argument("--out", required=True, metavar="PATH", help="the plot (PNG, SVG or PDF)")
    verb.set_defaults(handler=_hessian_command)
