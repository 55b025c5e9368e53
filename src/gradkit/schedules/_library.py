"""The schedules of the lecture, each a frozen dataclass with its formula.

``k`` is the number of optimizer steps taken (0 for the first step). Values are multipliers of a
base value unless a schedule is used in absolute mode (see
:class:`gradkit.schedules.ParamScheduler`).
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gradkit.schedules._base import Schedule


def _integer(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected an integer >= {minimum}")


def _optional_steps(owner: str, value: Any) -> None:
    if value is not None:
        _integer(owner, "steps", value, 1)


def _number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"<= {high:g}")
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected {allowed}")


def _cosine(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


def _ends(stop: int) -> list[int]:
    """The extreme steps of a monotone schedule over ``[0, stop)``: the first and the last."""
    return [0, stop - 1] if stop > 0 else []


def _within(stop: int, steps: Iterable[int]) -> list[int]:
    return sorted({step for step in steps if 0 <= step < stop})


def _power(base: float, exponent: int) -> float:
    """``base ** exponent`` as a float, ``inf`` where it overflows (a huge step count)."""
    try:
        return float(base**exponent)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Constant(Schedule):
    r"""A constant: :math:`v_k = c`. ``steps`` gives it a length (to use it inside ``>>``)."""

    value_: float = 1.0
    steps: int | None = None
    name = "constant"

    def __post_init__(self) -> None:
        _number(self.name, "value", self.value_)
        _optional_steps(self.name, self.steps)

    @property
    def length(self) -> int | None:
        return self.steps

    def value(self, step: int) -> float:
        return float(self.value_)

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step

    def __str__(self) -> str:
        steps = "" if self.steps is None else f", steps={self.steps}"
        return f"constant({float(self.value_)!r}{steps})"


@dataclass(frozen=True)
class Linear(Schedule):
    r"""Linear interpolation over ``steps``, as ``torch.optim.lr_scheduler.LinearLR``.

    .. math:: v_k = s + (e - s)\,\frac{\min(k, n)}{n}
    """

    steps: int
    start: float = 1.0
    end: float = 0.0
    name = "linear"

    def __post_init__(self) -> None:
        _integer(self.name, "steps", self.steps, 1)
        _number(self.name, "start", self.start)
        _number(self.name, "end", self.end)

    @property
    def length(self) -> int:
        return self.steps

    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(step, self.steps) / self.steps

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class Warmup(Schedule):
    r"""Gradual warm-up to the peak (Goyal et al., arXiv 1706.02677), reached at the last step.

    .. math:: v_k = s + (1 - s)\,\frac{\min(k + 1, n)}{n}

    so the first step already moves (:math:`v_0 = s + (1-s)/n`) and step :math:`n-1` runs at
    exactly 1. Put it in front of any schedule: ``warmup(500) >> cosine(10000)``.
    """

    steps: int
    start: float = 0.0
    name = "warmup"

    def __post_init__(self) -> None:
        _integer(self.name, "steps", self.steps, 1)
        _number(self.name, "start", self.start, low=0.0, high=1.0)

    @property
    def length(self) -> int:
        return self.steps

    def value(self, step: int) -> float:
        if step >= self.steps - 1:
            return 1.0
        return self.start + (1.0 - self.start) * (step + 1) / self.steps

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class Cosine(Schedule):
    r"""Cosine annealing from 1 to ``final`` over ``steps`` (Loshchilov & Hutter, 1608.03983).

    .. math:: v_k = f + (1 - f)\,\frac{1 + \cos(\pi \min(k, n)/n)}{2}

    Equal to ``CosineAnnealingLR(T_max=n, eta_min=f * base)`` for :math:`k \le n`; past the end
    torch's goes back up (its cosine is periodic), this one holds :math:`f`.
    """

    steps: int
    final: float = 0.0
    name = "cosine"

    def __post_init__(self) -> None:
        _integer(self.name, "steps", self.steps, 1)
        _number(self.name, "final", self.final)

    @property
    def length(self) -> int:
        return self.steps

    def value(self, step: int) -> float:
        return _cosine(1.0, self.final, min(step, self.steps) / self.steps)

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class Polynomial(Schedule):
    r"""Polynomial decay, as ``PolynomialLR`` when ``final = 0``.

    .. math:: v_k = f + (1 - f)\,\left(1 - \frac{\min(k, n)}{n}\right)^p
    """

    steps: int
    power: float = 1.0
    final: float = 0.0
    name = "polynomial"

    def __post_init__(self) -> None:
        _integer(self.name, "steps", self.steps, 1)
        _number(self.name, "power", self.power, low=0.0, low_open=True)
        _number(self.name, "final", self.final)

    @property
    def length(self) -> int:
        return self.steps

    def value(self, step: int) -> float:
        remaining = 1.0 - min(step, self.steps) / self.steps
        return self.final + (1.0 - self.final) * remaining**self.power

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class Exponential(Schedule):
    r"""Exponential decay, as ``ExponentialLR``: :math:`v_k = \gamma^{\min(k, n)}`."""

    gamma: float
    steps: int | None = None
    name = "exponential"

    def __post_init__(self) -> None:
        _number(self.name, "gamma", self.gamma, low=0.0, low_open=True)
        _optional_steps(self.name, self.steps)

    @property
    def length(self) -> int | None:
        return self.steps

    def value(self, step: int) -> float:
        if self.steps is not None:
            step = min(step, self.steps)
        return _power(self.gamma, step)

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class StepDecay(Schedule):
    r"""Step decay, as ``StepLR``: :math:`v_k = \gamma^{\lfloor \min(k,n) / s \rfloor}`."""

    every: int
    gamma: float = 0.1
    steps: int | None = None
    name = "step_decay"

    def __post_init__(self) -> None:
        _integer(self.name, "every", self.every, 1)
        _number(self.name, "gamma", self.gamma, low=0.0, low_open=True)
        _optional_steps(self.name, self.steps)

    @property
    def length(self) -> int | None:
        return self.steps

    def value(self, step: int) -> float:
        if self.steps is not None:
            step = min(step, self.steps)
        return _power(self.gamma, step // self.every)

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class MultiStep(Schedule):
    r"""Decay by ``gamma`` at each milestone, as ``MultiStepLR``.

    .. math:: v_k = \gamma^{|\{m \in M : m \le k\}|}

    Its length is the last milestone (nothing changes after it).
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1
    name = "multistep"

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if not self.milestones:
            raise ValueError("multistep: invalid milestones=[]; expected at least one step")
        for milestone in self.milestones:
            _integer(self.name, "milestones", milestone, 1)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(
                f"multistep: invalid milestones={list(self.milestones)!r}; "
                f"expected strictly increasing steps"
            )
        _number(self.name, "gamma", self.gamma, low=0.0, low_open=True)

    @property
    def length(self) -> int:
        return self.milestones[-1]

    def value(self, step: int) -> float:
        return float(self.gamma ** bisect.bisect_right(self.milestones, step))

    def extreme_steps(self, stop: int) -> list[int]:
        return _ends(stop)  # monotone in the step


@dataclass(frozen=True)
class SGDR(Schedule):
    r"""Cosine annealing with warm restarts (Loshchilov & Hutter, arXiv 1608.03983).

    Cycle :math:`i` lasts :math:`T_i = T_0\,m^i` steps and starts at the peak
    :math:`d^{\,i}`; inside it, with :math:`t` the steps since the restart,

    .. math:: v_k = f + (d^{\,i} - f)\,\frac{1 + \cos(\pi t / T_i)}{2}

    Equal to ``CosineAnnealingWarmRestarts(T_0, T_mult=m, eta_min=f * base)`` when
    :math:`d = 1`. With ``cycles`` it ends after that many cycles and holds :math:`f`; the last
    step of each cycle is a cycle end (snapshot ensembles, arXiv 1704.00109).
    """

    period: int
    mult: int = 1
    final: float = 0.0
    decay: float = 1.0
    cycles: int | None = None
    name = "sgdr"

    def __post_init__(self) -> None:
        _integer(self.name, "period", self.period, 1)
        _integer(self.name, "mult", self.mult, 1)
        _number(self.name, "final", self.final)
        _number(self.name, "decay", self.decay, low=0.0, low_open=True)
        if self.cycles is not None:
            _integer(self.name, "cycles", self.cycles, 1)

    def _cycle(self, step: int) -> tuple[int, int, int]:
        """(cycle index, steps since its start, its length)."""
        if self.mult == 1:
            return step // self.period, step % self.period, self.period
        # Start of cycle i: T0 (m^i - 1) / (m - 1).
        index = int(math.log(step * (self.mult - 1) / self.period + 1, self.mult))
        while self.period * (self.mult ** (index + 1) - 1) // (self.mult - 1) <= step:
            index += 1
        while index > 0 and self.period * (self.mult**index - 1) // (self.mult - 1) > step:
            index -= 1
        start = self.period * (self.mult**index - 1) // (self.mult - 1)
        return index, step - start, self.period * self.mult**index

    @property
    def length(self) -> int | None:
        if self.cycles is None:
            return None
        return sum(self.period * self.mult**i for i in range(self.cycles))

    def value(self, step: int) -> float:
        length = self.length
        if length is not None and step >= length:
            return float(self.final)
        index, since, period = self._cycle(step)
        return _cosine(_power(self.decay, index), self.final, since / period)

    def cycle_ends(self, horizon: int) -> list[int]:
        return list(self.iter_cycle_ends(horizon))

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        start, index = 0, 0
        while self.cycles is None or index < self.cycles:
            end = start + self.period * self.mult**index - 1
            if end >= horizon:
                return
            yield end
            start, index = end + 1, index + 1

    def extreme_steps(self, stop: int) -> list[int]:
        # Inside a cycle the value moves monotonically from its peak towards ``final``, so
        # each cycle's extremes are its first and its last step in range. With mult = 1
        # every cycle has the same shape and the peaks d**i, and with them the last values,
        # are monotone in i: the first two and the last two cycles hold the extremes. With
        # mult >= 2 there are at most log2(stop) cycles: take them all.
        length = self.length
        limit = stop if length is None else min(stop, length)
        steps = [length] if length is not None and length < stop else []
        if limit <= 0:
            return _within(stop, steps)
        if self.mult == 1:
            last = (limit - 1) // self.period
            chosen = sorted({i for i in (0, 1, last - 1, last) if 0 <= i <= last})
            cycles = [(self.period * i, self.period) for i in chosen]
        else:
            cycles, start, index = [], 0, 0
            while start < limit:
                cycles.append((start, self.period * self.mult**index))
                start, index = start + cycles[-1][1], index + 1
        for start, period in cycles:
            steps += [start, min(start + period, limit) - 1]
        return _within(stop, steps)


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True)
class Cyclic(Schedule):
    r"""Cyclical learning rates (Smith, arXiv 1506.01186), as ``CyclicLR``.

    With :math:`c = \lfloor 1 + k/(u + d) \rfloor` and :math:`x = 1 + k/(u+d) - c`,

    .. math::
        v_k = \ell + (h - \ell)\, \sigma(x)\, s(c, k),\qquad
        \sigma(x) = \begin{cases} x/r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases},\;
        r = \frac{u}{u + d}

    where :math:`s = 1` (``triangular``), :math:`2^{1-c}` (``triangular2``) or
    :math:`\gamma^k` (``exp_range``). The low points (:math:`k` a multiple of :math:`u + d`)
    are the cycle ends.
    """

    up: int
    down: int | None = None
    low: float = 0.1
    high: float = 1.0
    mode: str = "triangular"
    gamma: float = 1.0
    name = "cyclic"

    def __post_init__(self) -> None:
        _integer(self.name, "up", self.up, 1)
        if self.down is not None:
            _integer(self.name, "down", self.down, 1)
        _number(self.name, "low", self.low)
        _number(self.name, "high", self.high)
        if self.mode not in _CYCLIC_MODES:
            raise ValueError(
                f"cyclic: invalid mode={self.mode!r}; expected one of {', '.join(_CYCLIC_MODES)}"
            )
        _number(self.name, "gamma", self.gamma, low=0.0, low_open=True, high=1.0)

    @property
    def cycle_length(self) -> int:
        return self.up + (self.up if self.down is None else self.down)

    def value(self, step: int) -> float:
        total = self.cycle_length
        ratio = self.up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = math.ldexp(1.0, 1 - cycle)  # 2 ** (1 - cycle), 0.0 once it underflows
        else:
            scale = self.gamma**step
        return self.low + (self.high - self.low) * factor * scale

    def cycle_ends(self, horizon: int) -> list[int]:
        return list(self.iter_cycle_ends(horizon))

    def iter_cycle_ends(self, horizon: int) -> Iterator[int]:
        return iter(range(self.cycle_length, max(horizon, 0), self.cycle_length))

    def extreme_steps(self, stop: int) -> list[int]:
        # v = low + (high - low) g with g = factor * scale in [0, 1]: g = 0 at step 0, and its
        # greatest value lies on the first rise (later cycles are scaled down, never up). On
        # that rise g is k / up (triangular modes) or (k / up) gamma**k (exp_range), whose
        # peak over real k is at -1 / ln(gamma).
        peak = min(self.up, stop - 1)
        steps = [0, peak]
        if self.mode == "exp_range" and self.gamma < 1.0:
            top = -1.0 / math.log(self.gamma)
            steps += [min(math.floor(top), peak), min(math.ceil(top), peak)]
        return _within(stop, steps)


@dataclass(frozen=True)
class OneCycle(Schedule):
    r"""The one-cycle policy (Smith & Topin, arXiv 1708.07120), as ``OneCycleLR``.

    Relative to the peak 1: it rises from :math:`1/\text{div}` to 1 over the first
    ``pct_start`` of the steps, then anneals to :math:`1/(\text{div}\cdot\text{final\_div})`
    (``three_phase``: back to :math:`1/\text{div}` first, then down). Annealing is by cosine or
    linear. torch's raises past ``total_steps``; this one holds its last value.
    """

    steps: int
    pct_start: float = 0.3
    div: float = 25.0
    final_div: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False
    name = "one_cycle"

    def __post_init__(self) -> None:
        _integer(self.name, "steps", self.steps, 2)
        _number(self.name, "pct_start", self.pct_start, low=0.0, low_open=True, high=1.0)
        _number(self.name, "div", self.div, low=0.0, low_open=True)
        _number(self.name, "final_div", self.final_div, low=0.0, low_open=True)
        if self.anneal not in ("cos", "linear"):
            raise ValueError(
                f"one_cycle: invalid anneal={self.anneal!r}; expected 'cos' or 'linear'"
            )
        if not isinstance(self.three_phase, bool):
            raise ValueError(
                f"one_cycle: invalid three_phase={self.three_phase!r}; expected a bool"
            )
        # Phase i runs over (end of phase i-1, end of phase i], the first from step 0; each
        # must span a positive number of steps or its interpolation divides by zero.
        ends = [end for end, _, _ in self._phases()]
        if any(b <= a for a, b in zip([0.0, *ends], ends, strict=False)):
            raise ValueError(
                f"one_cycle: pct_start={self.pct_start!r} leaves an empty phase for "
                f"steps={self.steps}; expected pct_start * steps > 1 "
                f"(and < steps / 2 with three_phase)"
            )

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end step, start value, end value) of each phase, as torch computes them."""
        initial = 1.0 / self.div
        minimum = initial / self.final_div
        up_end = float(self.pct_start * self.steps) - 1
        if self.three_phase:
            return [
                (up_end, initial, 1.0),
                (float(2 * self.pct_start * self.steps) - 2, 1.0, initial),
                (self.steps - 1.0, initial, minimum),
            ]
        return [(up_end, initial, 1.0), (self.steps - 1.0, 1.0, minimum)]

    @property
    def length(self) -> int:
        return self.steps

    def value(self, step: int) -> float:
        step = min(step, self.steps - 1)
        start_step = 0.0
        phases = self._phases()
        for index, (end_step, start, end) in enumerate(phases):
            if step <= end_step or index == len(phases) - 1:
                fraction = (step - start_step) / (end_step - start_step)
                if self.anneal == "cos":
                    return _cosine(start, end, fraction)
                return (end - start) * fraction + start
            start_step = end_step
        raise AssertionError("unreachable")

    def extreme_steps(self, stop: int) -> list[int]:
        # Each phase is monotone, so its extremes are its first and last whole steps.
        steps = [0, stop - 1, self.steps - 1]
        for end_step, _, _ in self._phases():
            steps += [math.floor(end_step), math.floor(end_step) + 1]
        return _within(stop, steps)


def constant(value: float = 1.0, steps: int | None = None) -> Constant:
    """The constant ``value`` (for ``steps`` steps when used inside ``>>``)."""
    return Constant(value, steps)


def linear(steps: int, start: float = 1.0, end: float = 0.0) -> Linear:
    """Linear from ``start`` to ``end`` over ``steps`` (torch's ``LinearLR``)."""
    return Linear(steps, start, end)


def warmup(steps: int, start: float = 0.0) -> Warmup:
    """Linear warm-up reaching exactly 1 at its last step."""
    return Warmup(steps, start)


def cosine(steps: int, final: float = 0.0) -> Cosine:
    """Cosine from 1 to ``final`` over ``steps``."""
    return Cosine(steps, final)


def polynomial(steps: int, power: float = 1.0, final: float = 0.0) -> Polynomial:
    """Polynomial decay from 1 to ``final`` over ``steps``."""
    return Polynomial(steps, power, final)


def exponential(gamma: float, steps: int | None = None) -> Exponential:
    """``gamma ** k`` (held after ``steps`` if given)."""
    return Exponential(gamma, steps)


def step_decay(every: int, gamma: float = 0.1, steps: int | None = None) -> StepDecay:
    """Multiply by ``gamma`` every ``every`` steps (torch's ``StepLR``)."""
    return StepDecay(every, gamma, steps)


def multistep(milestones: list[int] | tuple[int, ...], gamma: float = 0.1) -> MultiStep:
    """Multiply by ``gamma`` at each milestone (torch's ``MultiStepLR``)."""
    return MultiStep(tuple(milestones), gamma)


def sgdr(
    period: int,
    mult: int = 1,
    final: float = 0.0,
    decay: float = 1.0,
    cycles: int | None = None,
) -> SGDR:
    """Cosine annealing with warm restarts: cycles of ``period * mult**i`` steps."""
    return SGDR(period, mult, final, decay, cycles)


def cyclic(
    up: int,
    down: int | None = None,
    low: float = 0.1,
    high: float = 1.0,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Cyclic:
    """Cyclical rates between ``low`` and ``high`` (torch's ``CyclicLR``)."""
    return Cyclic(up, down, low, high, mode, gamma)


def one_cycle(
    steps: int,
    pct_start: float = 0.3,
    div: float = 25.0,
    final_div: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> OneCycle:
    """The one-cycle policy over ``steps`` (torch's ``OneCycleLR``), relative to its peak."""
    return OneCycle(steps, pct_start, div, final_div, anneal, three_phase)
