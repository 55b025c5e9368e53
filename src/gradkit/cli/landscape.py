"""``gradkit landscape``: the loss around a briefly trained model, as a plot and arrays.

Modes: ``2d`` and ``1d`` slices along filter-normalized random directions (arXiv 1712.09913);
``interpolate`` trains two copies of the model from the same initialisation with a small and a
large batch and draws the loss on the line through both (arXiv 1609.04836, Fig. 3).
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np

from gradkit.cli._diagnostics_setup import (
    add_model_arguments,
    add_training_arguments,
    fit,
    load_model_and_data,
)
from gradkit.cli._types import positive_float, positive_integer
from gradkit.diagnostics import interpolate, plot_landscape, slice_1d, slice_2d

__all__ = ["register"]


def _batch_sizes(text: str) -> tuple[int, int]:
    try:
        small, large = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --batch-sizes {text!r}; expected two integers small,large"
        ) from None
    if not 1 <= small < large:
        raise argparse.ArgumentTypeError(
            f"invalid --batch-sizes {text!r}; expected 1 <= small < large"
        )
    return small, large


def _landscape_command(args: argparse.Namespace) -> int:
    training = {"optimizer": args.optimizer, "lr": args.lr, "seed": args.seed}
    try:
        model, data = load_model_and_data(args)
        grid = np.linspace(-args.span, args.span, args.resolution)
        if args.mode == "interpolate":
            small, large = args.batch_sizes
            other = copy.deepcopy(model)  # the same initialisation
            # the same number of epochs: the large batch takes proportionally fewer steps
            fit(model, data, steps=args.train_steps, batch_size=small, **training)
            steps_large = max(1, args.train_steps * small // large)
            fit(other, data, steps=steps_large, batch_size=large, **training)
            title = f"{args.model}: batch {small} (alpha=0) to batch {large} (alpha=1)"
            alphas = np.linspace(-0.5, 1.5, args.resolution)
            # Buffers too: with batch norm, alpha = 1 is then the large-batch model itself,
            # running statistics included.
            result = interpolate(
                model,
                model,
                other,
                data,
                alphas=alphas,
                batch_size=args.eval_batch,
                buffers=True,
                title=title,
            )
        else:
            fit(model, data, steps=args.train_steps, batch_size=args.batch_size, **training)
            title = f"{args.model} after {args.train_steps} steps of {args.optimizer}"
            common = {"seed": args.seed, "batch_size": args.eval_batch, "title": title}
            if args.mode == "1d":
                result = slice_1d(model, data, alphas=grid, **common)
            else:
                result = slice_2d(model, data, alphas=grid, **common)
    except (KeyError, ValueError, FileNotFoundError) as error:
        print(f"gradkit landscape: {error.args[0]}", file=sys.stderr)
        return 2
    loss = result.loss
    print(f"landscape {result.kind}: {title}")
    print(f"grid      {' x '.join(str(len(axis)) for axis in result.coordinates)} points")
    print(f"loss      min {loss.min():.4g}, max {loss.max():.4g}")
    if result.kind == "interpolation":
        print(f"distance  {result.meta['distance']:.4g} between the two solutions")
        for alpha in (0.0, 1.0):
            index = int(np.argmin(np.abs(result.coordinates[0] - alpha)))
            print(f"alpha={alpha:g}   loss {loss[index]:.4g}")
    plot_landscape(result, args.out, style=args.style, log_scale=args.log)
    print(f"plot      {args.out}")
    if args.npz:
        result.save(args.npz)
        print(f"arrays    {args.npz}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``landscape`` verb to the ``gradkit`` command."""
    verb = commands.add_parser(
        "landscape",
        help="loss landscape: random slices or interpolation between two solutions",
        description="Train a model briefly and plot its training loss on a 1-D or 2-D slice "
        "along filter-normalized random directions (Li et al., arXiv 1712.09913), or on the "
        "line between a small-batch and a large-batch solution (Keskar et al., arXiv "
        "1609.04836).",
    )
    add_model_arguments(verb)
    add_training_arguments(verb, steps=300)
    verb.add_argument("--mode", choices=("2d", "1d", "interpolate"), default="2d")
    verb.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=(32, 1024),
        help="small,large batch of --mode interpolate (default 32,1024); --train-steps counts "
        "the small batch's steps, the large one trains as many epochs",
    )
    verb.add_argument(
        "--resolution", type=positive_integer, default=21, help="points per axis (21)"
    )
    verb.add_argument("--span", type=positive_float, default=1.0, help="slice from -span to span")
    verb.add_argument("--style", choices=("contour", "surface"), default="contour")
    verb.add_argument("--log", action="store_true", help="plot log10 of the loss")
    verb.add_argument(
        "--eval-batch", type=positive_integer, default=1000, help="evaluation batch (1000)"
    )
    verb.add_argument("--out", required=True, metavar="PATH", help="the plot (PNG, SVG or PDF)")
    verb.add_argument("--npz", metavar="PATH", help="also save the arrays (.npz)")
    verb.set_defaults(handler=_landscape_command)
