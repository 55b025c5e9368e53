"""The least and greatest value of a schedule over a run, without visiting every step."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gradkit.schedules._base import Product, Scaled, Schedule, Sequence

__all__ = ["ValueRange", "boundary_steps", "value_range"]

EXHAUSTIVE_STEPS = 1 << 16
"""Up to this many steps, a schedule whose extremes are not known is evaluated at every step."""

SAMPLES = 4096
"""Evenly spaced steps evaluated, besides the boundaries, where neither of the above applies."""

CYCLE_ENDS = 1000
"""Cycle ends (and the steps after them) taken as boundaries, at most."""


@dataclass(frozen=True)
class ValueRange:
    """The least and greatest value of a schedule over ``[0, stop)`` and where they are.

    ``low_step`` and ``high_step`` are the first such steps among those evaluated. ``exact`` is
    ``False`` when the range comes from a sample (boundaries plus evenly spaced steps): then
    a step that was not evaluated may lie outside it.
    """

    low: float
    low_step: int
    high: float
    high_step: int
    exact: bool


def boundary_steps(schedule: Schedule, stop: int, *, cycle_ends: int = CYCLE_ENDS) -> set[int]:
    """Steps in ``[0, stop)`` where a schedule's shape may change: both ends; the start, the
    length and the step before each of these for every schedule inside it; and the first
    ``cycle_ends`` cycle ends with the step after each."""
    steps = {0, 1, stop - 1}
    for offset, part in _parts(schedule, 0):
        steps |= {offset - 1, offset}
        if part.length is not None:
            steps |= {offset + part.length - 1, offset + part.length}
    for end in itertools.islice(schedule.iter_cycle_ends(stop), cycle_ends):
        steps |= {end, end + 1}
    return {step for step in steps if 0 <= step < stop}


def _parts(schedule: Schedule, offset: int) -> Iterator[tuple[int, Schedule]]:
    """``schedule`` and the schedules inside it, each with the step at which its time is 0."""
    yield offset, schedule
    if isinstance(schedule, Sequence):
        for piece, start in zip(schedule.pieces, schedule.starts, strict=True):
            yield from _parts(piece, offset + start)
    elif isinstance(schedule, Scaled):
        yield from _parts(schedule.schedule, offset)
    elif isinstance(schedule, Product):
        yield from _parts(schedule.first, offset)
        yield from _parts(schedule.second, offset)


def value_range(schedule: Schedule, stop: int, *, exhaustive: int = 0) -> ValueRange:
    """The least and greatest of ``schedule(k)`` for ``0 <= k < stop`` (``stop >= 1``).

    Every step is evaluated when ``stop <= exhaustive``. Otherwise the schedule's
    :meth:`~gradkit.schedules.Schedule.extreme_steps` give the exact range in a few
    evaluations (sums of pieces, scalings and every schedule of the library but products);
    without them, every step up to :data:`EXHAUSTIVE_STEPS`, and beyond that the boundaries
    plus :data:`SAMPLES` evenly spaced steps (``exact=False``).

    Example:
        >>> value_range(parse("cosine(100_000_000_000) * -1"), 10**11).low
        -1.0
    """
    if stop < 1:
        raise ValueError(f"value_range: invalid stop={stop!r}; expected an integer >= 1")
    steps: Iterable[int]
    exact = True
    extremes = None if stop <= exhaustive else schedule.extreme_steps(stop)
    if extremes is not None:
        steps = sorted(set(extremes))
    elif stop <= max(exhaustive, EXHAUSTIVE_STEPS):
        steps = range(stop)
    else:
        spaced = {round(i * (stop - 1) / (SAMPLES - 1)) for i in range(SAMPLES)}
        steps = sorted(spaced | boundary_steps(schedule, stop))
        exact = False
    low = high = None
    low_step = high_step = 0
    for step in steps:
        value = schedule.value(step)
        if math.isnan(value):  # not ordered: it is both ends of the range
            return ValueRange(value, step, value, step, exact)
        if low is None or value < low:
            low, low_step = value, step
        if high is None or value > high:
            high, high_step = value, step
    assert low is not None and high is not None
    return ValueRange(low, low_step, high, high_step, exact)
