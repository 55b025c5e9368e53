"""``gradkit schedule``: print the key values of a schedule and plot it."""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

from gradkit._io import atomic_output
from gradkit.cli._types import positive_integer
from gradkit.schedules import Schedule, ScheduleSyntaxError, ValueRange, parse, value_range
from gradkit.schedules import Sequence as ScheduleSequence
from gradkit.schedules._range import boundary_steps

CYCLE_ENDS = 1000
"""Cycle ends listed (and drawn), at most: SGDR over 10**11 steps has too many to list."""

EXHAUSTIVE_STEPS = 1 << 16
"""Up to this many steps, the least and greatest values are found by visiting every step."""

PLOT_POINTS = 4096
"""Steps drawn, besides the key steps, when the schedule has more steps than this."""


def _key_steps(schedule: Schedule, steps: int, ends: list[int], extremes: ValueRange) -> list[int]:
    """Steps worth printing: the ends, piece boundaries, cycle ends, minimum and maximum."""
    keys = {0, 1, steps - 1}
    if isinstance(schedule, ScheduleSequence):
        for start in schedule.starts[1:]:
            keys |= {start - 1, start}
    length = schedule.length
    if length is not None:
        keys |= {length - 1, length}
    keys |= set(ends)
    keys |= {extremes.low_step, extremes.high_step}
    return sorted(k for k in keys if 0 <= k < steps)


def _plot_steps(schedule: Schedule, steps: int, keys: list[int], extremes: list[int]) -> list[int]:
    """Every step of a short schedule; else evenly spaced ones, the boundaries and the keys."""
    if steps <= PLOT_POINTS:
        return list(range(steps))
    spaced = {round(i * (steps - 1) / (PLOT_POINTS - 1)) for i in range(PLOT_POINTS)}
    boundaries = boundary_steps(schedule, steps, cycle_ends=CYCLE_ENDS)
    return sorted(spaced | boundaries | set(keys) | set(extremes))


def _plot_error(path: str) -> str | None:
    """Why ``--plot path`` cannot be written, before anything is computed; ``None`` if it can."""
    target = Path(path)
    suffix = target.suffix[1:].lower() or "png"
    from matplotlib.figure import Figure

    formats = sorted(Figure().canvas.get_supported_filetypes())
    if suffix not in formats:
        return f"--plot {path}: unknown format {suffix!r}; expected a file ending in " + ", ".join(
            f".{name}" for name in formats
        )
    directory = target.parent
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        return f"--plot {path}: {directory} {what}; give a path in an existing directory"
    if target.is_dir():
        return f"--plot {path}: is a directory; give a file name"
    return None


def _schedule_command(args: argparse.Namespace) -> int:
    try:
        schedule = parse(args.expression)
    except ScheduleSyntaxError as error:
        print(f"gradkit schedule: {error}", file=sys.stderr)
        return 2
    if not math.isfinite(args.base):
        print(
            f"gradkit schedule: invalid --base {args.base}; expected a finite number",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        problem = _plot_error(args.plot)
        if problem is not None:
            print(f"gradkit schedule: {problem}", file=sys.stderr)
            return 2
    if args.steps is None:
        if schedule.length is None:
            print(
                "gradkit schedule: this schedule never ends; give --steps",
                file=sys.stderr,
            )
            return 2
        args.steps = schedule.length + 1
    steps = args.steps
    ends = list(itertools.islice(schedule.iter_cycle_ends(steps), CYCLE_ENDS + 1))
    more_ends = len(ends) > CYCLE_ENDS
    ends = ends[:CYCLE_ENDS]
    extremes = value_range(schedule, steps, exhaustive=EXHAUSTIVE_STEPS)
    keys = _key_steps(schedule, steps, ends, extremes)
    print(f"schedule  {schedule}")
    length = "never ends" if schedule.length is None else f"{schedule.length} steps"
    print(f"length    {length}; showing steps 0..{steps - 1}, base {args.base:g}")
    print(f"{'step':>10}  {'value':>14}")
    marked = set(ends)
    for step in keys:
        note = "  cycle end" if step in marked else ""
        print(f"{step:>10}  {args.base * schedule.value(step):>14.8g}{note}")
    if more_ends:
        print(f"cycles    more than {CYCLE_ENDS}; the first {CYCLE_ENDS} cycle ends are shown")
    if not extremes.exact:
        print(
            "range     the least and greatest values are those of a sample of the steps "
            "(a product of schedules over many steps)"
        )
    if args.plot:
        drawn = _plot_steps(schedule, steps, keys, [extremes.low_step, extremes.high_step])
        values = [args.base * schedule.value(step) for step in drawn]
        try:
            _plot(schedule, drawn, values, ends, args.plot)
        except OSError as error:
            print(
                f"gradkit schedule: --plot {args.plot}: {error.strerror or error}", file=sys.stderr
            )
            return 2
        print(f"plot      {args.plot}")
    return 0


def _plot(
    schedule: Schedule, steps: list[int], values: list[float], ends: list[int], path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5), layout="constrained")
    try:
        axes.plot(steps, values, linewidth=1.5)
        for end in ends:
            axes.axvline(end, color="grey", linewidth=0.6, linestyle=":")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("value")
        axes.set_title(str(schedule), fontsize=9)
        axes.grid(alpha=0.3)
        suffix = Path(path).suffix[1:].lower() or "png"
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format=suffix, dpi=120)
    finally:
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
    schedule.add_argument(
        "--plot", metavar="PATH", help="write a plot (PNG, SVG, PDF, ...: by the file's extension)"
    )
    schedule.set_defaults(handler=_schedule_command)
