"""The ``gradkit`` command: one module per verb, each with a ``register(commands)``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gradkit.cli import (
    hessian,
    landscape,
    lr_find,
    schedule,
    spp,
    study,
    train,
    trajectories,
)

VERBS = (train, study, schedule, spp, trajectories, landscape, hessian, lr_find)
"""The modules that add a verb to the command, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gradkit`` command."""
    parser = argparse.ArgumentParser(
        prog="gradkit", description="Optimization techniques of deep learning, measurable."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gradkit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
