"""gradkit's schedules against torch.optim.lr_scheduler, step by step over their whole length.

Each torch scheduler drives a real ``torch.optim.SGD``; ``group['lr']`` is recorded before the
first ``scheduler.step()`` and after each one, so entry ``k`` is the rate of optimizer step
``k``. gradkit must give the same numbers twice: as ``base * schedule(k)`` (``schedule(k)`` in
absolute mode) and through :class:`ParamScheduler` driving an identical optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.optim import lr_scheduler as torch_schedulers

from gradkit.schedules import (
    ParamScheduler,
    Schedule,
    cosine,
    cyclic,
    exponential,
    linear,
    multistep,
    one_cycle,
    sgdr,
    step_decay,
    warmup,
)

BASE = 0.1
REL = 1e-12


def _optimizer(lr: float = BASE) -> torch.optim.SGD:
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    return torch.optim.SGD([param], lr=lr)


def _record(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    """``group['lr']`` of optimizer steps 0 .. steps-1."""
    values = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps - 1):
        optimizer.step()  # no gradients: a no-op, but torch wants it before scheduler.step()
        scheduler.step()
        values.append(optimizer.param_groups[0]["lr"])
    return values


@dataclass(frozen=True)
class Case:
    name: str
    torch_scheduler: Callable[[torch.optim.Optimizer], object]
    schedule: Schedule
    steps: int
    mode: str = "relative"
    # Absolute slack, as a fraction of the peak, for values computed with cancellation (see
    # the one-cycle linear cases); 0 means purely relative.
    abs_of_peak: float = 0.0

    def expected(self, k: int) -> float:
        value = self.schedule(k)
        return value if self.mode == "absolute" else BASE * value


def _sequential(optimizer: torch.optim.Optimizer) -> object:
    return torch_schedulers.SequentialLR(
        optimizer,
        [
            torch_schedulers.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=5),
            torch_schedulers.CosineAnnealingLR(optimizer, T_max=20, eta_min=0.002),
        ],
        milestones=[5],
    )


def _cyclic_cases() -> list[Case]:
    cases = []
    for mode in ("triangular", "triangular2", "exp_range"):
        for up, down in ((4, 7), (6, None), (9, 3)):
            cases.append(
                Case(
                    f"CyclicLR-{mode}-up{up}-down{down}",
                    lambda o, mode=mode, up=up, down=down: torch_schedulers.CyclicLR(
                        o,
                        base_lr=0.01,
                        max_lr=0.1,
                        step_size_up=up,
                        step_size_down=down,
                        mode=mode,
                        gamma=0.97,
                        cycle_momentum=False,
                    ),
                    cyclic(up, down, low=0.01, high=0.1, mode=mode, gamma=0.97),
                    steps=70,
                    mode="absolute",
                )
            )
    return cases


def _one_cycle_cases() -> list[Case]:
    cases = []
    for anneal in ("cos", "linear"):
        for three_phase in (False, True):
            for total, pct, div, final_div in ((50, 0.3, 25.0, 1e4), (37, 0.25, 10.0, 100.0)):
                cases.append(
                    Case(
                        f"OneCycleLR-{anneal}-three_phase={three_phase}-{total}",
                        lambda o, a=anneal, t=three_phase, n=total, p=pct, d=div, f=final_div: (
                            torch_schedulers.OneCycleLR(
                                o,
                                max_lr=BASE,
                                total_steps=n,
                                pct_start=p,
                                anneal_strategy=a,
                                three_phase=t,
                                div_factor=d,
                                final_div_factor=f,
                                cycle_momentum=False,
                            )
                        ),
                        one_cycle(
                            total,
                            pct_start=pct,
                            div=div,
                            final_div=final_div,
                            anneal=anneal,
                            three_phase=three_phase,
                        ),
                        steps=total,  # torch's whole length: steps 0 .. total_steps - 1
                        # Linear annealing computes (end - start) * pct + start; near the floor
                        # (peak / (div * final_div)) both libraries lose a few bits of the tiny
                        # result to cancellation (torch in absolute units, gradkit in multiples
                        # of the peak): they agree to one ulp of the peak, not 1e-12 relative.
                        abs_of_peak=1e-15 if anneal == "linear" else 0.0,
                    )
                )
    return cases


CASES = [
    Case(
        "CosineAnnealingLR-eta_min",
        lambda o: torch_schedulers.CosineAnnealingLR(o, T_max=30, eta_min=0.002),
        cosine(30, final=0.02),
        steps=31,
    ),
    Case(
        "CosineAnnealingLR-eta_min0",
        lambda o: torch_schedulers.CosineAnnealingLR(o, T_max=17),
        cosine(17),
        steps=18,
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_mult1",
        lambda o: torch_schedulers.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=0.001),
        sgdr(10, final=0.01),
        steps=60,
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_mult2",
        lambda o: torch_schedulers.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.001),
        sgdr(5, mult=2, final=0.01),
        steps=5 + 10 + 20 + 40 + 7,
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_mult3",
        lambda o: torch_schedulers.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=0.003),
        sgdr(2, mult=3, final=0.03),
        steps=2 + 6 + 18 + 54 + 5,
    ),
    *_cyclic_cases(),
    *_one_cycle_cases(),
    Case(
        "StepLR",
        lambda o: torch_schedulers.StepLR(o, step_size=7, gamma=0.5),
        step_decay(7, gamma=0.5),
        steps=50,
    ),
    Case(
        "MultiStepLR",
        lambda o: torch_schedulers.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.3),
        multistep([5, 12, 20], gamma=0.3),
        steps=30,
    ),
    Case(
        "ExponentialLR",
        lambda o: torch_schedulers.ExponentialLR(o, gamma=0.93),
        exponential(0.93),
        steps=60,
    ),
    Case(
        "LinearLR-up",
        lambda o: torch_schedulers.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=10),
        linear(10, start=0.2, end=1.0),
        steps=20,
    ),
    Case(
        "LinearLR-down",
        lambda o: torch_schedulers.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=8),
        linear(8, start=1.0, end=0.05),
        steps=15,
    ),
    Case(
        "SequentialLR-linear-cosine",
        _sequential,
        linear(5, start=0.1, end=1.0) >> cosine(20, final=0.02),
        steps=26,
    ),
]


def _assert_matches(actual: list[float], expected: list[float], case: Case) -> None:
    assert len(actual) == len(expected)
    peak = max(abs(v) for v in expected)
    for k, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got == pytest.approx(want, rel=REL, abs=case.abs_of_peak * peak), (
            f"{case.name}: step {k}: gradkit {got!r}, torch {want!r}"
        )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_schedule_values_equal_torch(case: Case) -> None:
    optimizer = _optimizer()
    reference = _record(optimizer, case.torch_scheduler(optimizer), case.steps)
    _assert_matches([case.expected(k) for k in range(case.steps)], reference, case)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_param_scheduler_drives_optimizer_like_torch(case: Case) -> None:
    torch_optimizer = _optimizer()
    reference = _record(torch_optimizer, case.torch_scheduler(torch_optimizer), case.steps)
    optimizer = _optimizer()
    scheduler = ParamScheduler(optimizer, case.schedule, mode=case.mode)
    values = _record(optimizer, scheduler, case.steps)
    # The adapter sets exactly base * s(k) (or s(k)) ...
    assert values == [case.expected(k) for k in range(case.steps)]
    assert scheduler.get_last_lr() == [values[-1]]
    # ... which is torch's sequence.
    _assert_matches(values, reference, case)


def test_one_cycle_linear_agrees_relatively_away_from_its_floor() -> None:
    """The absolute slack above is only needed near the floor: elsewhere 1e-12 relative holds."""
    for three_phase in (False, True):
        optimizer = _optimizer()
        scheduler = torch_schedulers.OneCycleLR(
            optimizer,
            max_lr=BASE,
            total_steps=50,
            anneal_strategy="linear",
            three_phase=three_phase,
            cycle_momentum=False,
        )
        reference = _record(optimizer, scheduler, 50)
        schedule = one_cycle(50, anneal="linear", three_phase=three_phase)
        for k, want in enumerate(reference):
            if want > 1e-3 * BASE:
                assert BASE * schedule(k) == pytest.approx(want, rel=REL), k
            else:
                assert BASE * schedule(k) == pytest.approx(want, rel=1e-9, abs=1e-15 * BASE), k


# --- where gradkit deliberately differs -------------------------------------------------------


def test_cosine_holds_final_where_torch_goes_back_up() -> None:
    optimizer = _optimizer()
    steps = 10
    reference = _record(
        optimizer, torch_schedulers.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.01), 31
    )
    schedule = cosine(steps, final=0.1)
    assert reference[steps] == pytest.approx(0.01, rel=REL)
    assert BASE * schedule(steps) == pytest.approx(reference[steps], rel=REL)
    # torch's cosine is periodic: back at the base rate at 2 * T_max.
    assert reference[2 * steps] == pytest.approx(BASE, rel=1e-9)
    assert all(reference[k] > 0.01 * (1 + 1e-9) for k in range(steps + 1, 2 * steps + 1))
    # gradkit's holds its final value.
    for k in (steps, steps + 1, 2 * steps, 3 * steps, 10**9):
        assert schedule(k) == 0.1


def test_one_cycle_holds_where_torch_raises() -> None:
    total = 10
    optimizer = _optimizer()
    scheduler = torch_schedulers.OneCycleLR(
        optimizer, max_lr=BASE, total_steps=total, cycle_momentum=False
    )
    values = _record(optimizer, scheduler, total)
    schedule = one_cycle(total)
    last = schedule(total - 1)
    assert BASE * last == pytest.approx(values[-1], rel=REL)
    assert last == pytest.approx(1 / 25 / 1e4, rel=REL)
    # torch extrapolates one step past the end, then refuses.
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] > values[-1] * 100
    optimizer.step()
    with pytest.raises(ValueError, match="Tried to step"):
        scheduler.step()
    # gradkit holds its last value.
    for k in (total, total + 1, 10 * total, 10**9):
        assert schedule(k) == last


@pytest.mark.parametrize("steps", [1, 2, 5, 8])
@pytest.mark.parametrize("start", [0.0, 0.25])
def test_warmup_peaks_one_step_before_linear_lr(steps: int, start: float) -> None:
    """warmup(n) runs step n-1 at the peak; LinearLR (gradkit's linear) reaches it at step n."""
    optimizer = _optimizer()
    scheduler = torch_schedulers.LinearLR(
        optimizer, start_factor=start if start > 0 else 1e-3, end_factor=1.0, total_iters=steps
    )
    reference = _record(optimizer, scheduler, steps + 3)
    assert warmup(steps, start)(steps - 1) == 1.0
    assert reference[steps] == pytest.approx(BASE, rel=REL)
    if steps > 1:
        assert reference[steps - 1] < BASE * (1 - 1e-9)
    if start > 0:
        # Shifted by one step, the two coincide: warmup(n, s)(k) == LinearLR(s, n) at k + 1.
        for k in range(steps + 2):
            assert BASE * warmup(steps, start)(k) == pytest.approx(reference[k + 1], rel=REL)
    # The LinearLR equivalent is linear():
    equivalent = linear(steps, start=start if start > 0 else 1e-3, end=1.0)
    for k, want in enumerate(reference):
        assert BASE * equivalent(k) == pytest.approx(want, rel=REL)


def test_sgdr_t_mult_restarts_match_torch_restart_steps() -> None:
    """The restart steps (where the value jumps back to the peak) coincide with torch's."""
    optimizer = _optimizer()
    scheduler = torch_schedulers.CosineAnnealingWarmRestarts(optimizer, T_0=3, T_mult=2)
    reference = _record(optimizer, scheduler, 3 + 6 + 12 + 24 + 1)
    torch_restarts = [k for k, v in enumerate(reference) if math.isclose(v, BASE, rel_tol=1e-12)]
    assert torch_restarts == [0, 3, 9, 21, 45]
    schedule = sgdr(3, mult=2)
    assert [k for k in range(len(reference)) if schedule(k) == 1.0] == torch_restarts
