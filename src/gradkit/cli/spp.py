"""``gradkit spp``: signal propagation of a model at initialisation (arXiv 2101.08692, Fig. 1)."""

from __future__ import annotations

import argparse
import sys

import torch

from gradkit.cli._types import positive_integer
from gradkit.diagnostics import plot, signal_propagation, write_csv
from gradkit.models import ModelSpec, get_model


def _in_channels(args: argparse.Namespace, spec: ModelSpec) -> int | None:
    """The input's channels: ``--in-channels``, else at least the first stage's width.

    The paper's stem (7x7 on 3 channels) gives each of its 64 channels 147 inputs. MNIST-1D's
    one channel would give the 16 channels of a 3-wide stem 3 numbers to share: correlated
    channels, whose variance falls stage after stage (to half the prediction by stage 3).
    """
    if args.in_channels is not None:
        return int(args.in_channels)
    options = spec.options()
    if "in_channels" not in options or "width" not in options:
        return None
    width = args.width if args.width is not None else spec.defaults["width"]
    return max(int(spec.defaults["in_channels"]), int(width))


def _overrides(
    args: argparse.Namespace, options: tuple[str, ...], in_channels: int | None
) -> dict[str, object]:
    given = {
        "norm": args.norm,
        "depth": args.depth,
        "width": args.width,
        "stages": args.stages,
        "activation": args.activation,
        "alpha": args.alpha,
        "skip_gain": args.skip_gain,
        "in_channels": in_channels,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    if "skip_gain" in options and "skip_gain" not in overrides:
        overrides["skip_gain"] = 1.0  # the paper measures unit skip gains (see --help)
    return overrides


def _input_shape(
    args: argparse.Namespace, shape: tuple[int, ...], in_channels: int | None
) -> tuple[int, ...]:
    if in_channels is not None:
        shape = (in_channels, *shape) if len(shape) == 1 else (in_channels, *shape[1:])
    if args.size is not None:
        shape = (*shape[:-2], args.size, args.size) if len(shape) == 3 else (*shape[:-1], args.size)
    return shape


_WIDTHS = (5, 5, 12, 12, 12, 9)


def _spp_command(args: argparse.Namespace) -> int:
    try:
        spec = get_model(args.model)
        in_channels = _in_channels(args, spec)
        overrides = _overrides(args, spec.options(), in_channels)
        torch.manual_seed(args.seed)
        model = spec.create(**overrides)
        shape = _input_shape(args, spec.input_shape, in_channels)
        title = f"{spec.name} " + " ".join(f"{key}={value}" for key, value in overrides.items())
        result = signal_propagation(
            model, shape, batch_size=args.batch, seed=args.seed, title=title.strip()
        )
    except (KeyError, ValueError) as error:
        print(f"gradkit spp: {error.args[0]}", file=sys.stderr)
        return 2
    print(f"model     {result.title}; input {args.batch} x {tuple(shape)} ~ N(0, 1)")
    header = ("block", "stage", "sq. mean", "variance", "residual", "expected")
    print(" ".join(f"{label:>{width}}" for label, width in zip(header, _WIDTHS, strict=True)))
    for block in result.blocks:
        expected = "" if block.expected_variance is None else f"{block.expected_variance:9.4f}"
        print(
            f"{block.block:>5} {block.stage:>5} {block.squared_mean:>12.5g} "
            f"{block.variance:>12.5g} {block.residual_variance:>12.5g} {expected:>9}"
        )
    plot(result, args.out)
    print(f"plot      {args.out}")
    if args.csv:
        write_csv(result, args.csv)
        print(f"csv       {args.csv}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``spp`` verb to the ``gradkit`` command."""
    spp = commands.add_parser(
        "spp",
        help="signal propagation plot of a model at initialisation",
        description="Feed N(0, 1) input to a freshly initialised model and plot, per residual "
        "block, the average squared channel mean, the average channel variance and the "
        "residual branch's variance (Brock et al., arXiv 2101.08692, Fig. 1).",
    )
    spp.add_argument("--model", required=True, help="a registered model, e.g. resnet1d")
    spp.add_argument("--norm", help="norm of resnet1d/resnet2d: batch, group, layer, ...")
    spp.add_argument("--depth", type=positive_integer, help="residual blocks per stage")
    spp.add_argument("--width", type=positive_integer, help="channels of the first stage")
    spp.add_argument("--stages", type=positive_integer, help="number of stages")
    spp.add_argument("--activation", help="activation, e.g. relu, gelu, silu, tanh")
    spp.add_argument("--alpha", type=float, help="alpha of NF-ResNets (default 0.2)")
    spp.add_argument(
        "--skip-gain",
        type=float,
        help="initial skip gain of NF-ResNets (default here 1, as in the paper's plots; "
        "NFNets train from 0, where every block starts as the identity)",
    )
    spp.add_argument(
        "--in-channels",
        type=positive_integer,
        help="input channels (default: the model's, at least its width, so that the stem's "
        "channels are not correlated combinations of a few numbers, as in the paper's figure)",
    )
    spp.add_argument("--size", type=positive_integer, help="input length (1-D) or side (2-D)")
    spp.add_argument("--batch", type=positive_integer, default=256, help="batch size (default 256)")
    spp.add_argument("--seed", type=int, default=0, help="seed of weights and input (default 0)")
    spp.add_argument("--out", required=True, metavar="PATH", help="the plot (PNG, SVG or PDF)")
    spp.add_argument("--csv", metavar="PATH", help="also write the numbers as CSV")
    spp.set_defaults(handler=_spp_command)
