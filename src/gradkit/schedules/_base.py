"""Schedules: pure functions of the optimizer-step count, and their composition.

A schedule maps the number of optimizer steps already taken (0 for the first step) to a value,
usually a multiplier of a base value (the peak is 1). It has a ``length``: the step at which it
reaches its final value, after which it holds that value and never raises (``None`` for a
schedule that goes on, such as exponential decay or SGDR without a cycle count).

Schedules are frozen dataclasses: they compare by value, pickle, and print in the text form
that :func:`gradkit.schedules.parse` reads back (``str(s)``).
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, fields
from typing import Any


class Schedule:
    """Base class: a pure function ``step -> value`` with a length and cycle ends."""

    name: str = "schedule"

    @property
    def length(self) -> int | None:
        """Steps until the final value (held afterwards); ``None`` if it never ends."""
        return None

    def value(self, step: int) -> float:
        """The value at ``step`` (0-based count of optimizer steps taken); ``step >= 0``."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{self.name}: invalid step={step!r}; expected an integer >= 0")
        return self.value(int(step))

    def cycle_ends(self, horizon: int) -> list[int]:
        """Steps (``< horizon``) that close a cycle: take a snapshot after these steps."""
        return []

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        """:meth:`cycle_ends`, one at a time in increasing order (for horizons too long to list)."""
        return iter(self.cycle_ends(horizon))

    def extreme_steps(self, stop: int) -> list[int] | None:
        """A few steps in ``[0, stop)`` among which the schedule takes its least and its
        greatest value over all of ``[0, stop)``; ``None`` where that is not known.

        This is what makes the range of a schedule over ``10**11`` steps cheap to know
        exactly (see :func:`gradkit.schedules.value_range`).
        """
        return None

    def __rshift__(self, other: Schedule) -> Schedule:
        """``a >> b``: run ``a`` for its length, then ``b`` from its own step 0."""
        if not isinstance(other, Schedule):
            return NotImplemented
        return Sequence((*_pieces(self), *_pieces(other)))

    def __mul__(self, other: Any) -> Schedule:
        if isinstance(other, Schedule):
            return Product(self, other)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return Scaled(float(other), self)
        return NotImplemented

    __rmul__ = __mul__

    def __str__(self) -> str:
        return _call_text(self)

    def values(self, steps: int) -> list[float]:
        """The first ``steps`` values."""
        return [self.value(k) for k in range(steps)]


def _pieces(schedule: Schedule) -> tuple[Schedule, ...]:
    return schedule.pieces if isinstance(schedule, Sequence) else (schedule,)


def _format_number(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value)) + ".0"
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_format_number(v) for v in value) + "]"
    return str(value)


def _call_text(schedule: Schedule) -> str:
    """``name(required..., key=value)`` with the non-default optional fields."""
    parts = []
    for field in fields(schedule):  # type: ignore[arg-type]
        value = getattr(schedule, field.name)
        if field.default is MISSING and field.default_factory is MISSING:
            parts.append(_format_number(value))
        elif value != field.default:
            parts.append(f"{field.name}={_format_number(value)}")
    return f"{schedule.name}({', '.join(parts)})"


@dataclass(frozen=True)
class Sequence(Schedule):
    """Pieces one after the other, each with its own time starting at 0 (written ``a >> b``).

    Every piece but the last needs a finite length. A piece's cycle ends are shifted by the
    steps before it.
    """

    pieces: tuple[Schedule, ...]
    name = "sequence"

    def __post_init__(self) -> None:
        # Flatten nested sequences: re-basing is additive, so (a >> b) >> c is a >> b >> c.
        object.__setattr__(self, "pieces", tuple(p for s in self.pieces for p in _pieces(s)))
        if len(self.pieces) < 2:
            raise ValueError("sequence: expected at least two schedules")
        for piece in self.pieces[:-1]:
            if piece.length is None:
                raise ValueError(
                    f"sequence: {piece} never ends, so nothing after it would run; "
                    f"give it a length (e.g. steps=...) or put it last"
                )

    @property
    def starts(self) -> list[int]:
        starts, total = [], 0
        for piece in self.pieces:
            starts.append(total)
            total += piece.length or 0
        return starts

    @property
    def length(self) -> int | None:
        last = self.pieces[-1].length
        return None if last is None else self.starts[-1] + last

    def _locate(self, step: int) -> tuple[Schedule, int]:
        for piece, start in zip(self.pieces[:-1], self.starts, strict=False):
            assert piece.length is not None
            if step < start + piece.length:
                return piece, step - start
        return self.pieces[-1], step - self.starts[-1]

    def value(self, step: int) -> float:
        piece, local = self._locate(step)
        return piece.value(local)

    def cycle_ends(self, horizon: int) -> list[int]:
        return list(self.iter_cycle_ends(horizon))

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        for piece, start in zip(self.pieces, self.starts, strict=True):
            if start >= horizon:
                return
            stop = horizon - start if piece.length is None else min(horizon - start, piece.length)
            for end in piece.iter_cycle_ends(stop):
                yield start + end

    def extreme_steps(self, stop: int) -> list[int] | None:
        steps: list[int] = []
        last = len(self.pieces) - 1
        for number, (piece, start) in enumerate(zip(self.pieces, self.starts, strict=True)):
            if start >= stop:
                break
            local = stop - start
            if number < last:
                assert piece.length is not None
                local = min(local, piece.length)
            found = piece.extreme_steps(local)
            if found is None:
                return None
            steps += [start + step for step in found]
        return steps

    def __str__(self) -> str:
        return " >> ".join(
            f"({piece})" if isinstance(piece, Sequence) else str(piece) for piece in self.pieces
        )


@dataclass(frozen=True)
class Scaled(Schedule):
    """A schedule times a constant factor (written ``0.1 * s``)."""

    factor: float
    schedule: Schedule
    name = "scaled"

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor):
            raise ValueError(f"scaled: invalid factor={self.factor!r}; expected a finite number")

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def value(self, step: int) -> float:
        return self.factor * self.schedule.value(step)

    def cycle_ends(self, horizon: int) -> list[int]:
        return self.schedule.cycle_ends(horizon)

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        return self.schedule.iter_cycle_ends(horizon)

    def extreme_steps(self, stop: int) -> list[int] | None:
        # A factor keeps or swaps the least and the greatest value, at the same steps.
        return self.schedule.extreme_steps(stop)

    def __str__(self) -> str:
        inner = str(self.schedule)
        if isinstance(self.schedule, (Sequence, Scaled, Product)):
            inner = f"({inner})"
        return f"{_format_number(self.factor)} * {inner}"


@dataclass(frozen=True)
class Product(Schedule):
    """The product of two schedules, step by step (written ``a * b``)."""

    first: Schedule
    second: Schedule
    name = "product"

    @property
    def length(self) -> int | None:
        a, b = self.first.length, self.second.length
        return None if a is None or b is None else max(a, b)

    def value(self, step: int) -> float:
        return self.first.value(step) * self.second.value(step)

    def cycle_ends(self, horizon: int) -> list[int]:
        return sorted(set(self.first.cycle_ends(horizon)) | set(self.second.cycle_ends(horizon)))

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        previous = None
        merged = heapq.merge(
            self.first.iter_cycle_ends(horizon), self.second.iter_cycle_ends(horizon)
        )
        for end in merged:
            if end != previous:
                yield end
            previous = end

    # No extreme_steps: the product of two monotone pieces can peak anywhere between them.

    def __str__(self) -> str:
        def wrap(s: Schedule) -> str:
            return f"({s})" if isinstance(s, (Sequence, Scaled)) else str(s)

        # '*' parses left to right, so a product on the right needs its brackets.
        second = f"({self.second})" if isinstance(self.second, Product) else wrap(self.second)
        return f"{wrap(self.first)} * {second}"
