"""value_range, extreme_steps and lazy cycle ends: exact over huge runs, cheap to compute."""

from __future__ import annotations

import itertools

import pytest

from gradkit.schedules import parse, value_range

EXPRESSIONS = [
    "constant(0.5)",
    "linear(7, start=0.2, end=1.5)",
    "warmup(6, start=0.1)",
    "cosine(9, final=0.3)",
    "polynomial(8, power=0.5, final=-0.2)",
    "exponential(0.8, steps=5)",
    "step_decay(3, gamma=1.5)",
    "multistep([2, 5, 9], gamma=0.5)",
    "sgdr(3, decay=0.7, final=0.2)",
    "sgdr(2, mult=2, decay=1.3, final=0.5, cycles=3)",
    "sgdr(4, final=1.5, decay=0.5)",
    "cyclic(3, down=5, low=0.9, high=0.2)",
    "cyclic(4, mode=triangular2)",
    "cyclic(6, down=2, mode=exp_range, gamma=0.7)",
    "one_cycle(30)",
    "one_cycle(25, three_phase=true, anneal=linear)",
    "-2 * (warmup(4) >> cosine(10, final=0.1) >> sgdr(3))",
    "warmup(3) * cosine(12)",
]


@pytest.mark.parametrize("text", EXPRESSIONS)
@pytest.mark.parametrize("stop", [1, 2, 5, 13, 40])
def test_the_range_is_that_of_every_step(text: str, stop: int) -> None:
    schedule = parse(text)
    values = schedule.values(stop)
    found = value_range(schedule, stop)
    assert found.exact
    assert found.low == min(values) and found.high == max(values)
    assert schedule(found.low_step) == found.low and schedule(found.high_step) == found.high


@pytest.mark.parametrize("text", [t for t in EXPRESSIONS if "*" not in t or "(" in t[:3]])
def test_library_schedules_know_their_extremes(text: str) -> None:
    schedule = parse(text)
    steps = schedule.extreme_steps(40)
    assert steps is not None and len(steps) <= 40
    assert all(0 <= step < 40 for step in steps)


def test_a_huge_run_costs_a_few_evaluations() -> None:
    schedule = parse("warmup(1000) >> cosine(100000000000, final=-0.001)")
    found = value_range(schedule, 10**12)
    assert found.exact
    assert (found.low, found.high, found.high_step) == (-0.001, 1.0, 999)
    assert len(schedule.extreme_steps(10**12)) < 20
    restarts = value_range(parse("sgdr(1000, decay=0.99)"), 10**11)
    assert restarts.exact and restarts.high == 1.0 and restarts.low == 0.0


def test_a_product_over_a_huge_run_is_sampled_with_its_boundaries() -> None:
    schedule = parse("warmup(1000) * cosine(100000000000)")
    found = value_range(schedule, 10**11)
    assert not found.exact
    assert found.high_step == 999  # the warm-up's last step, a boundary
    assert found.low == 0.0


@pytest.mark.parametrize(
    "text", ["cyclic(10)", "sgdr(10)", "warmup(5) >> sgdr(3)", "sgdr(4) * cyclic(3)"]
)
def test_cycle_ends_come_one_at_a_time(text: str) -> None:
    schedule = parse(text)
    first = list(itertools.islice(schedule.iter_cycle_ends(10**15), 5))
    assert first == schedule.cycle_ends(1000)[:5]
    assert schedule.cycle_ends(100) == list(schedule.iter_cycle_ends(100))
