"""Boundary values, composition (``>>``, ``*``), holding past the end, text round trip, pickling."""

from __future__ import annotations

import copy
import itertools
import math
import pickle

import pytest

import gradkit.schedules as gs
from gradkit.schedules import (
    SGDR,
    Constant,
    Cosine,
    Cyclic,
    Exponential,
    Linear,
    MultiStep,
    OneCycle,
    Polynomial,
    Product,
    Scaled,
    Schedule,
    Sequence,
    StepDecay,
    Warmup,
    constant,
    cosine,
    cyclic,
    exponential,
    linear,
    multistep,
    one_cycle,
    parse,
    polynomial,
    sgdr,
    step_decay,
    warmup,
)

# --- warm-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 100, 1000])
@pytest.mark.parametrize("start", [0.0, 0.3, 1.0])
def test_warmup_reaches_the_peak_exactly_at_its_last_step(steps: int, start: float) -> None:
    schedule = warmup(steps, start)
    values = schedule.values(steps + 5)
    assert values[steps - 1] == 1.0
    assert all(v == 1.0 for v in values[steps - 1 :])
    assert max(values) == 1.0
    assert all(v <= 1.0 for v in values)
    # Strictly rising before the peak (unless it starts there), and the first step moves.
    if start < 1.0:
        assert all(a < b for a, b in itertools.pairwise(values[:steps]))
        assert values[0] == pytest.approx(start + (1 - start) / steps, rel=1e-15)
        assert values[0] > start
    assert schedule.length == steps


@pytest.mark.parametrize("steps", [1, 3, 10, 333])
def test_warmup_then_cosine_peaks_once_and_never_exceeds(steps: int) -> None:
    schedule = warmup(steps) >> cosine(50, final=0.1)
    values = schedule.values(steps + 60)
    assert values[steps - 1] == 1.0
    assert values[steps] == 1.0  # cosine's step 0
    assert max(values) == 1.0
    assert values.index(1.0) == steps - 1
    assert values[steps + 50] == pytest.approx(0.1, rel=1e-15)


# --- SGDR -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("period", "mult"), [(5, 2), (4, 3), (1, 2), (7, 1)])
def test_sgdr_restarts_on_the_right_steps(period: int, mult: int) -> None:
    schedule = sgdr(period, mult=mult, decay=0.5)
    lengths = [period * mult**i for i in range(5)]
    starts = [sum(lengths[:i]) for i in range(5)]
    ends = [start + length - 1 for start, length in zip(starts, lengths, strict=True)]
    horizon = starts[-1] + lengths[-1]
    assert schedule.cycle_ends(horizon) == ends
    assert schedule.cycle_ends(ends[2] + 1) == ends[:3]
    assert schedule.cycle_ends(ends[2]) == ends[:2]  # horizon is exclusive
    for index, start in enumerate(starts):
        assert schedule(start) == 0.5**index  # the decayed peak, exactly (final = 0)
        if start > 0:
            assert start - 1 in ends
            # The last step of the previous cycle: t = T - 1 of its cosine.
            length = lengths[index - 1]
            last = 0.5 ** (index - 1) * (1 + math.cos(math.pi * (length - 1) / length)) / 2
            assert schedule(start - 1) == pytest.approx(last, rel=1e-12)
    # Inside a cycle the value falls monotonically; the cycle end is the lowest step.
    for start, length in zip(starts, lengths, strict=True):
        cycle = [schedule(start + t) for t in range(length)]
        assert all(a > b for a, b in itertools.pairwise(cycle))


def test_sgdr_restart_values_with_final_and_decay() -> None:
    schedule = sgdr(4, mult=3, final=0.1, decay=0.5, cycles=3)
    starts = [0, 4, 16]
    assert schedule.length == 4 + 12 + 36
    assert schedule.cycle_ends(10**6) == [3, 15, 51]
    for index, start in enumerate(starts):
        assert schedule(start) == pytest.approx(0.5**index, rel=1e-15)
    # Mid-cycle: f + (d^i - f) (1 + cos(pi t / T)) / 2.
    assert schedule(16 + 9) == pytest.approx(0.1 + (0.25 - 0.1) * (1 + math.cos(math.pi / 4)) / 2)
    for k in (52, 53, 10**9):
        assert schedule(k) == 0.1


def test_sgdr_cycle_index_is_exact_for_many_cycles() -> None:
    """The cycle index uses a logarithm; every restart of a long run must still be exact."""
    for period, mult in ((3, 2), (1, 2), (5, 3), (2, 7)):
        schedule = sgdr(period, mult=mult)
        for index in range(1, 30):
            start = period * (mult**index - 1) // (mult - 1)
            if start > 10**15:
                break
            previous = period * mult ** (index - 1)
            assert schedule(start) == 1.0, (period, mult, index)
            # The step before is the last of the previous cycle: t = T_(i-1) - 1.
            last = (1 + math.cos(math.pi * (previous - 1) / previous)) / 2
            assert schedule(start - 1) == pytest.approx(last, rel=1e-9, abs=1e-300)
            assert schedule(start + 1) == pytest.approx(
                (1 + math.cos(math.pi / (previous * mult))) / 2, rel=1e-12
            )


# --- cyclic -----------------------------------------------------------------------------------


def test_cyclic_cycle_ends_are_its_low_points() -> None:
    schedule = cyclic(3, 5, low=0.2, high=1.0)
    assert schedule.cycle_ends(30) == [8, 16, 24]
    for end in schedule.cycle_ends(30):
        assert schedule(end) == 0.2
    assert schedule(3) == 1.0
    assert schedule.length is None


# --- sequences --------------------------------------------------------------------------------


def test_sequence_rebases_time_and_shifts_cycle_ends() -> None:
    a = warmup(5)
    b = sgdr(4, mult=2, cycles=2)
    schedule = a >> b
    assert isinstance(schedule, Sequence)
    assert schedule.pieces == (a, b)
    assert schedule.starts == [0, 5]
    assert schedule.length == 5 + 4 + 8
    assert schedule(5) == b(0) == 1.0
    for k in range(40):
        assert schedule(5 + k) == b(k)
    for k in range(5):
        assert schedule(k) == a(k)
    assert b.cycle_ends(100) == [3, 11]
    assert schedule.cycle_ends(100) == [8, 16]
    assert schedule.cycle_ends(16) == [8]


def test_sequence_of_three_flattens_and_each_piece_restarts() -> None:
    a, b, c = cosine(4, final=0.5), sgdr(3, cycles=2), cyclic(2, low=0.0)
    left, right = (a >> b) >> c, a >> (b >> c)
    assert left == right
    assert left.pieces == (a, b, c)
    assert left.starts == [0, 4, 10]
    assert left.length is None
    assert left(4) == b(0)
    assert left(10) == c(0)
    assert left(10 + 7) == c(7)
    assert left.cycle_ends(20) == [4 + 2, 4 + 5, 10 + 4, 10 + 8]


def test_sequence_with_an_infinite_piece_in_the_middle_raises() -> None:
    with pytest.raises(ValueError, match=r"sequence: exponential\(0\.9\) never ends"):
        cosine(5) >> exponential(0.9) >> cosine(5)
    with pytest.raises(ValueError, match="never ends"):
        sgdr(5) >> constant(1.0)
    with pytest.raises(ValueError, match="at least two"):
        Sequence((cosine(5),))
    # Infinite last is fine.
    assert (cosine(5) >> sgdr(5)).length is None


# --- holding past the end ---------------------------------------------------------------------

FINITE: list[tuple[Schedule, float]] = [
    (constant(2.5, steps=3), 2.5),
    (linear(10, start=0.2, end=0.9), 0.9),
    (warmup(7, start=0.1), 1.0),
    (cosine(20, final=0.05), 0.05),
    (polynomial(12, power=2.0, final=0.1), 0.1),
    (exponential(0.9, steps=8), 0.9**8),
    (step_decay(3, gamma=0.5, steps=10), 0.5**3),
    (multistep([3, 7], gamma=0.1), 0.1**2),
    (sgdr(3, mult=2, final=0.01, decay=0.8, cycles=3), 0.01),
    (one_cycle(20), None),
    (one_cycle(30, anneal="linear", three_phase=True), None),
    (warmup(5) >> cosine(10, final=0.1), 0.1),
    (0.5 * cosine(10, final=0.2), 0.1),
    (cosine(10, final=0.5) * linear(4, start=1.0, end=0.5), 0.25),
    (warmup(3) >> sgdr(2, mult=2, cycles=2) >> linear(5, end=0.3), 0.3),
]


@pytest.mark.parametrize("schedule, final", FINITE, ids=lambda v: str(v))
def test_finite_schedules_hold_their_last_value_and_never_raise(
    schedule: Schedule, final: float | None
) -> None:
    length = schedule.length
    assert length is not None
    held = schedule(length)
    if final is not None:
        assert held == pytest.approx(final, rel=1e-12)
    for k in (length, length + 1, length + 17, 10 * length, 10**9):
        assert schedule(k) == held
    values = schedule.values(length + 3)
    assert all(math.isfinite(v) for v in values)


def test_one_cycle_holds_its_floor() -> None:
    schedule = one_cycle(20, div=25.0, final_div=1e4)
    assert schedule(19) == pytest.approx(1 / 25 / 1e4, rel=1e-12)
    assert schedule(20) == schedule(19)
    assert schedule(10**9) == schedule(19)


INFINITE = [constant(0.5), exponential(0.9), step_decay(3), sgdr(5, mult=2), cyclic(2)]


@pytest.mark.parametrize("schedule", INFINITE, ids=str)
def test_infinite_schedules_have_no_length_and_evaluate_far_out(schedule: Schedule) -> None:
    assert schedule.length is None
    for k in (0, 1, 1000, 10**9):
        assert math.isfinite(schedule(k))
    assert (cosine(5) * schedule).length is None


# --- Scaled and Product -----------------------------------------------------------------------


def test_scaled_values_length_and_cycle_ends() -> None:
    base = sgdr(4, cycles=2, final=0.1)
    left, right = 0.5 * base, base * 0.5
    assert left == right == Scaled(0.5, base)
    assert left.length == base.length == 8
    assert left.cycle_ends(100) == base.cycle_ends(100) == [3, 7]
    for k in range(12):
        assert left(k) == 0.5 * base(k)
    assert (2 * cosine(4))(0) == 2.0
    assert (-1.5 * cosine(4, final=0.5))(4) == -0.75
    with pytest.raises(ValueError, match="scaled: invalid factor=nan"):
        Scaled(float("nan"), base)
    with pytest.raises(TypeError):
        _ = cosine(4) * "2"
    with pytest.raises(TypeError):
        _ = True * cosine(4)


def test_product_values_length_and_cycle_ends() -> None:
    a = sgdr(3, cycles=3)
    b = cyclic(2, 2, low=0.5, high=1.0)
    c = linear(20, end=0.5)
    product = a * c
    assert product == Product(a, c)
    assert product.length == 20
    for k in range(25):
        assert product(k) == a(k) * c(k)
    assert product(10**9) == a(9) * 0.5 == 0.0
    infinite = a * b
    assert infinite.length is None
    assert infinite.cycle_ends(13) == sorted({2, 5, 8} | {4, 8, 12})
    assert infinite(7) == a(7) * b(7)


def test_values_is_the_list_of_the_first_steps() -> None:
    schedule = warmup(3) >> cosine(5)
    assert schedule.values(8) == [schedule(k) for k in range(8)]
    assert schedule.values(0) == []


# --- text round trip and pickling -------------------------------------------------------------

NON_DEFAULT: list[Schedule] = [
    constant(2.5),
    constant(0.5, steps=7),
    Constant(3),
    linear(10, start=0.2, end=0.9),
    warmup(7, start=0.1),
    cosine(100, final=0.01),
    cosine(100, final=1e-5),
    polynomial(50, power=2.5, final=0.1),
    exponential(0.95, steps=40),
    step_decay(10, gamma=0.5, steps=100),
    multistep([10, 20, 35], gamma=0.3),
    sgdr(10, mult=2, final=0.01, decay=0.5, cycles=4),
    cyclic(4, 7, low=0.2, high=0.9, mode="exp_range", gamma=0.99),
    cyclic(3, mode="triangular2", low=-0.5),
    one_cycle(100, pct_start=0.25, div=10.0, final_div=100.0, anneal="linear", three_phase=True),
    warmup(5) >> cosine(10, final=0.1),
    warmup(5, start=0.01) >> sgdr(10, mult=2, cycles=3) >> exponential(0.99),
    0.1 * sgdr(10, mult=2),
    -2.0 * cosine(10),
    1e20 * cosine(3),
    0.5 * (warmup(3) >> cosine(4)),
    (warmup(3) >> cosine(4)) * cyclic(2),
    (0.5 * cosine(10)) * linear(5),
    (warmup(2) >> cosine(3)) >> (0.5 * linear(4)),
]
DEFAULTS: list[Schedule] = [
    constant(),
    linear(10),
    warmup(7),
    cosine(100),
    polynomial(50),
    exponential(0.95),
    step_decay(10),
    multistep([10]),
    sgdr(10),
    cyclic(4),
    one_cycle(100),
]


def test_round_trip_covers_every_schedule_class() -> None:
    classes = {type(s) for s in NON_DEFAULT}
    expected = {
        Constant,
        Linear,
        Warmup,
        Cosine,
        Polynomial,
        Exponential,
        StepDecay,
        MultiStep,
        SGDR,
        Cyclic,
        OneCycle,
        Sequence,
        Scaled,
        Product,
    }
    assert expected <= classes
    public = {
        obj
        for obj in vars(gs).values()
        if isinstance(obj, type) and issubclass(obj, Schedule) and obj is not Schedule
    }
    assert public <= classes


@pytest.mark.parametrize("schedule", NON_DEFAULT + DEFAULTS, ids=str)
def test_str_round_trips_through_parse(schedule: Schedule) -> None:
    text = str(schedule)
    again = parse(text)
    assert again == schedule
    assert type(again) is type(schedule)
    assert str(again) == text
    assert again.values(40) == schedule.values(40)
    assert again.length == schedule.length


def test_str_omits_defaults_and_shows_non_defaults() -> None:
    assert str(cosine(100)) == "cosine(100)"
    assert str(cosine(100, final=0.01)) == "cosine(100, final=0.01)"
    assert str(sgdr(10, mult=2, cycles=4)) == "sgdr(10, mult=2, cycles=4)"
    assert str(multistep([10, 20], gamma=0.5)) == "multistep([10, 20], gamma=0.5)"
    assert str(cyclic(4, mode="triangular2")) == "cyclic(4, mode=triangular2)"
    assert str(one_cycle(10, three_phase=True)) == "one_cycle(10, three_phase=true)"
    assert str(warmup(5) >> cosine(10)) == "warmup(5) >> cosine(10)"
    assert str(0.1 * cosine(10)) == "0.1 * cosine(10)"


NESTED: list[Schedule] = [
    cosine(10) * (linear(5) * warmup(3)),
    2.0 * (3.0 * cosine(10)),
    0.5 * (cosine(10) * linear(5)),
]


@pytest.mark.parametrize("schedule", NESTED, ids=str)
def test_str_round_trips_nested_products_and_scalings(schedule: Schedule) -> None:
    again = parse(str(schedule))
    assert again.values(20) == pytest.approx(schedule.values(20), rel=1e-15)
    assert again == schedule


@pytest.mark.parametrize("schedule", NON_DEFAULT + DEFAULTS, ids=str)
def test_schedules_pickle_copy_and_compare_equal(schedule: Schedule) -> None:
    for again in (pickle.loads(pickle.dumps(schedule)), copy.deepcopy(schedule)):
        assert again == schedule
        assert hash(again) == hash(schedule)
        assert again.values(30) == schedule.values(30)
        assert str(again) == str(schedule)


def test_equality_is_by_value() -> None:
    assert cosine(10, final=0.1) == cosine(10, final=0.1)
    assert cosine(10, final=0.1) != cosine(10, final=0.2)
    assert multistep([1, 2]) == MultiStep((1, 2))
    assert warmup(3) >> cosine(4) == warmup(3) >> cosine(4)
    assert warmup(3) >> cosine(4) != cosine(4) >> warmup(3)
    assert len({cosine(10), cosine(10), cosine(11)}) == 2


def test_a_nested_sequence_is_flattened_and_round_trips() -> None:
    a, b, c = gs.warmup(3), gs.cosine(5), gs.constant(0.5)
    nested = gs.Sequence((gs.Sequence((a, b)), c))
    assert nested.pieces == (a, b, c)
    assert nested == a >> b >> c
    assert gs.parse(str(nested)) == nested
    assert [nested(k) for k in range(10)] == [(a >> b >> c)(k) for k in range(10)]
