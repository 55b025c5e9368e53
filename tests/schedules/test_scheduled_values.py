"""ParamScheduler refuses values outside a key's range, naming the key, the step and the value."""

from __future__ import annotations

import pytest
import torch

from gradkit.schedules import ParamScheduler, ScheduledValueError


def _adam() -> torch.optim.Adam:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.01, betas=(0.9, 0.999))


def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    ("make", "schedule", "key", "mode", "message"),
    [
        (_adam, "cosine(200) * -1", "lr", "relative", "sets lr=-0.01 at step 0; expected lr >= 0"),
        (_adam, "linear(10, start=0.9, end=1.8)", "betas[0]", "absolute",
         "sets betas[0]=1.8 at step 10; expected betas[0] in [0, 1)"),
        (_adam, "constant(0.0)", "eps", "absolute", "sets eps=0 at step 0; expected eps > 0"),
        (_sgd, "linear(5, start=1.0, end=1.2)", "momentum", "relative",
         "at step 5; expected momentum in [0, 1]"),
    ],
)  # fmt: skip
def test_an_out_of_range_schedule_is_refused_up_front(
    make, schedule: str, key: str, mode: str, message: str
) -> None:
    with pytest.raises(ScheduledValueError, match="ParamScheduler: the schedule ") as caught:
        ParamScheduler(make(), schedule, key, mode=mode)
    assert str(caught.value).endswith(message)


def test_steps_bounds_the_up_front_check() -> None:
    # 1 - 2k/10 is negative from step 6: fine for a run of 5 steps (values set: steps 0..5).
    ParamScheduler(_adam(), "linear(10, start=1.0, end=-1.0)", steps=5)
    with pytest.raises(ScheduledValueError, match=r"sets lr=-0\.002 at step 6; expected lr >= 0"):
        ParamScheduler(_adam(), "linear(10, start=1.0, end=-1.0)", steps=6)


def test_a_huge_run_is_checked_without_enumerating_it() -> None:
    expected = r"sets lr=-0\.005 at step 1000000000000; expected lr >= 0"
    with pytest.raises(ScheduledValueError, match=expected):
        ParamScheduler(_adam(), "cosine(100000000000, final=-0.5)", steps=10**12)


def test_each_value_is_checked_as_it_is_set() -> None:
    # A schedule that never ends cannot be checked up front without steps.
    scheduler = ParamScheduler(_sgd(), "cyclic(2, low=0.5, high=1.5)", "momentum", mode="absolute")
    scheduler.step()
    with pytest.raises(ScheduledValueError, match=r"sets momentum=1\.5 at step 2; expected"):
        scheduler.step()
