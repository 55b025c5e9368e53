"""``gradkit lr-find``: the LR range test (arXiv 1506.01186) of a model and optimizer, plotted."""

from __future__ import annotations

import argparse
import csv
import sys

from gradkit._io import atomic_output
from gradkit.cli._diagnostics_setup import add_model_arguments, load_model_and_data
from gradkit.cli._types import positive_float, positive_integer
from gradkit.diagnostics import lr_range_test, plot_lr_range_test
from gradkit.optim import create_optimizer

__all__ = ["register"]


def _lr_find_command(args: argparse.Namespace) -> int:
    try:
        model, data = load_model_and_data(args)
        optimizer = create_optimizer(args.optimizer, model.parameters())
        result = lr_range_test(
            model,
            optimizer,
            data,
            min_lr=args.min_lr,
            max_lr=args.max_lr,
            steps=args.steps,
            smoothing=args.smoothing,
            divergence=args.divergence,
            rule=args.rule,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except (KeyError, ValueError, FileNotFoundError) as error:
        print(f"gradkit lr-find: {error.args[0]}", file=sys.stderr)
        return 2
    stop = "diverged" if result.diverged else "reached max_lr"
    print(f"model     {args.model} on {args.dataset} ({len(data[0])} samples), {args.optimizer}")
    print(
        f"sweep     {result.lrs[0]:.3g} .. {result.lrs[-1]:.3g} in {len(result.lrs)} steps "
        f"({stop}); best smoothed loss {result.smoothed.min():.4g}"
    )
    print(f"steepest  {result.steepest:.4g}")
    print(f"min / 10  {result.minimum:.4g}")
    print(f"suggested {result.suggestion:.4g}  ({result.rule})")
    title = f"{args.model} + {args.optimizer}: suggested lr {result.suggestion:.2g}"
    plot_lr_range_test(result, args.out, title=title)
    print(f"plot      {args.out}")
    if args.csv:
        with atomic_output(args.csv) as temporary, open(temporary, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(("lr", "loss", "smoothed_loss"))
            writer.writerows(zip(result.lrs, result.losses, result.smoothed, strict=True))
        print(f"csv       {args.csv}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``lr-find`` verb to the ``gradkit`` command."""
    verb = commands.add_parser(
        "lr-find",
        help="LR range test: sweep the learning rate and suggest one",
        description="Train a fresh model while the learning rate grows exponentially, plot the "
        "smoothed loss against it and suggest a rate (Smith, arXiv 1506.01186). The model and "
        "optimizer are restored afterwards.",
    )
    add_model_arguments(verb, model="cnn")
    verb.add_argument("--optimizer", default="adam", help="a registered optimizer (adam)")
    verb.add_argument("--out", required=True, metavar="PATH", help="the plot (PNG, SVG or PDF)")
    verb.add_argument("--csv", metavar="PATH", help="also write lr, loss, smoothed loss as CSV")
    verb.add_argument("--min-lr", type=positive_float, default=1e-7, help="first rate (1e-7)")
    verb.add_argument("--max-lr", type=positive_float, default=10.0, help="last rate (10)")
    verb.add_argument("--steps", type=positive_integer, default=100, help="sweep steps (100)")
    verb.add_argument("--batch-size", type=positive_integer, default=64, help="batch size (64)")
    verb.add_argument("--smoothing", type=float, default=0.98, help="EMA factor of the loss (0.98)")
    verb.add_argument(
        "--divergence", type=float, default=4.0, help="stop when loss > this x best (4)"
    )
    verb.add_argument(
        "--rule",
        choices=("minimum", "steepest"),
        default="minimum",
        help="minimum: the rate at the smoothed minimum / 10 (default); steepest: the steepest "
        "descent of the smoothed loss",
    )
    verb.set_defaults(handler=_lr_find_command)
