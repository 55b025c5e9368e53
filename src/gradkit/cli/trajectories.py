"""``gradkit trajectories``: optimizers' paths on a 2-D test function, as a PNG and a GIF."""

from __future__ import annotations

import argparse
import sys

from gradkit.cli._types import positive_integer
from gradkit.diagnostics import (
    FUNCTIONS_2D,
    animate_trajectories,
    plot_trajectories,
    run_trajectories,
)

__all__ = ["register"]


def _learning_rates(text: str) -> float | dict[str, float]:
    """``0.01`` (every optimizer) or ``sgd=0.01,adam=0.1`` (by name)."""
    try:
        if "=" not in text:
            return float(text)
        rates = {}
        for item in text.split(","):
            name, _, value = item.partition("=")
            rates[name.strip().lower()] = float(value)
        return rates
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --lr {text!r}; expected a number or name=number,... (sgd=0.01,adam=0.1)"
        ) from None


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --start {text!r}; expected two numbers x,y"
        ) from None
    return x, y


def _trajectories_command(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    try:
        result = run_trajectories(
            args.function, names, start=args.start, steps=args.steps, lr=args.lr
        )
    except (KeyError, ValueError, TypeError) as error:
        print(f"gradkit trajectories: {error.args[0]}", file=sys.stderr)
        return 2
    spec = result.function
    print(f"function  {spec.name}: f = {spec.formula}; start {result.start}; {args.steps} steps")
    print(f"{'optimizer':>10} {'lr':>9} {'final x':>11} {'final y':>11} {'final f':>12}  note")
    for path in result.trajectories:
        x, y = path.points[-1]
        note = f"diverged after {len(path.points) - 1} steps" if path.diverged else ""
        if not note and spec.minimum is not None:
            reached = path.first_below(spec.minimum + args.tolerance)
            note = "" if reached is None else f"f - f* <= {args.tolerance:g} at step {reached}"
        rate = "" if path.lr is None else f"{path.lr:g}"
        print(f"{path.label:>10} {rate:>9} {x:>11.4g} {y:>11.4g} {path.values[-1]:>12.5g}  {note}")
    plot_trajectories(result, args.out)
    print(f"plot      {args.out}")
    if args.gif:
        animate_trajectories(result, args.gif, frames=args.frames)
        print(f"animation {args.gif}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``trajectories`` verb to the ``gradkit`` command."""
    verb = commands.add_parser(
        "trajectories",
        help="optimizers' paths on a 2-D test function (PNG, GIF)",
        description="Run optimizers from the same start on a 2-D test function and draw their "
        "paths over its contours; with --gif, animate them.",
    )
    verb.add_argument(
        "--function", required=True, help=f"the test function: {', '.join(FUNCTIONS_2D)}"
    )
    verb.add_argument(
        "--optimizers",
        default="sgd,momentum,nag,adagrad,rmsprop,adam",
        help="registered optimizers, comma-separated (default sgd,momentum,nag,adagrad,rmsprop,"
        "adam)",
    )
    verb.add_argument("--out", required=True, metavar="PATH", help="the plot (PNG, SVG or PDF)")
    verb.add_argument("--gif", metavar="PATH", help="also write an animated GIF")
    verb.add_argument(
        "--steps", type=positive_integer, default=200, help="steps per optimizer (200)"
    )
    verb.add_argument(
        "--lr",
        type=_learning_rates,
        default=None,
        help="one rate for all, or name=rate,... (default: the function's rates per optimizer)",
    )
    verb.add_argument("--start", type=_point, default=None, help="start point x,y")
    verb.add_argument("--frames", type=positive_integer, default=60, help="GIF frames (default 60)")
    verb.add_argument(
        "--tolerance", type=float, default=1e-6, help="report the step f - f* falls below this"
    )
    verb.set_defaults(handler=_trajectories_command)
