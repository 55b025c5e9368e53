"""``gradkit schedule``: print the key values of a schedule and plot it."""

from __future__ import annotations

import argparse
import sys

from gradkit._io import atomic_output
from gradkit.cli._types import positive_integer
from gradkit.schedules import Schedule, ScheduleSyntaxError, parse
from gradkit.schedules import Sequence as ScheduleSequence


def _key_steps(schedule: Schedule, steps: int) -> list[int]:
    """Steps worth printing: the ends, piece boundaries, cycle ends, minimum and maximum."""
    keys = {0, 1, steps - 1}
    if isinstance(schedule, ScheduleSequence):
        for start in schedule.starts[1:]:
            keys |= {start - 1, start}
    length = schedule.length
    if length is not None:
        keys |= {length - 1, length}
    keys |= set(schedule.cycle_ends(steps))
    values = schedule.values(steps)
    keys.add(min(range(steps), key=values.__getitem__))
    keys.add(max(range(steps), key=values.__getitem__))
    return sorted(k for k in keys if 0 <= k < steps)


def _schedule_command(args: argparse.Namespace) -> int:
    try:
        schedule = parse(args.expression)
    except ScheduleSyntaxError as error:
        print(f"gradkit schedule: {error}", file=sys.stderr)
        return 2
    if args.steps is None:
        if schedule.length is None:
            print(
                "gradkit schedule: this schedule never ends; give --steps",
                file=sys.stderr,
            )
            return 2
        args.steps = schedule.length + 1
    values = [args.base * v for v in schedule.values(args.steps)]
    ends = set(schedule.cycle_ends(args.steps))
    print(f"schedule  {schedule}")
    length = "never ends" if schedule.length is None else f"{schedule.length} steps"
    print(f"length    {length}; showing steps 0..{args.steps - 1}, base {args.base:g}")
    print(f"{'step':>10}  {'value':>14}")
    for step in _key_steps(schedule, args.steps):
        note = "  cycle end" if step in ends else ""
        print(f"{step:>10}  {values[step]:>14.8g}{note}")
    if args.plot:
        _plot(schedule, values, sorted(ends), args.plot)
        print(f"plot      {args.plot}")
    return 0


def _plot(schedule: Schedule, values: list[float], ends: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5), layout="constrained")
    axes.plot(range(len(values)), values, linewidth=1.5)
    for end in ends:
        axes.axvline(end, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("value")
    axes.set_title(str(schedule), fontsize=9)
    axes.grid(alpha=0.3)
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=120)
    plt.close(figure)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``schedule`` verb to the ``gradkit`` command."""
    schedule = commands.add_parser(
        "schedule",
        help="print the key values of a schedule and plot it",
        description="Evaluate a schedule expression, e.g. "
        "'warmup(500) >> cosine(10000, final=0.01)'.",
    )
    schedule.add_argument("expression", help="the schedule in gradkit's text form")
    schedule.add_argument(
        "--steps",
        type=positive_integer,
        default=None,
        help="steps to evaluate (default: its length)",
    )
    schedule.add_argument(
        "--base", type=float, default=1.0, help="multiply the values by this (e.g. the peak lr)"
    )
    schedule.add_argument("--plot", metavar="PATH", help="write a plot (PNG, SVG or PDF)")
    schedule.set_defaults(handler=_schedule_command)
