"""Drive any param-group key of any torch optimizer with a schedule."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from gradkit.schedules._base import Schedule
from gradkit.schedules._parse import parse
from gradkit.schedules._range import value_range

_KEY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z_0-9]*)(?:\[(?P<index>\d+)\])?")


class ScheduledValueError(ValueError):
    """A schedule gives a param-group key a value outside its range (a negative lr, say)."""


@dataclass(frozen=True)
class _Allowed:
    """The values a param-group key may take: finite, and within ``[low, high]``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return "a finite number"
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


_ALLOWED = {
    "lr": _Allowed(0.0),
    "weight_decay": _Allowed(0.0),
    "momentum": _Allowed(0.0, 1.0),
    "dampening": _Allowed(0.0, 1.0),
    "betas": _Allowed(0.0, 1.0, high_open=True),
    "eps": _Allowed(0.0, low_open=True),
}
"""The range of the keys whose range is known; any other key must stay finite."""


class ParamScheduler(LRScheduler):
    r"""A ``torch.optim.lr_scheduler.LRScheduler`` that sets ``group[key]`` from a schedule.

    After :math:`k` calls to :meth:`step` (one per optimizer step), every param group gets

    .. math::
        \text{group[key]} = b \cdot s(k) \;(\text{relative}),\qquad s(k) \;(\text{absolute})

    where :math:`b` is the group's value when the scheduler was created. ``key`` is any
    param-group entry: ``"lr"``, ``"momentum"``, ``"weight_decay"``, or one element of a tuple
    such as ``"betas[0]"``. Several schedulers may drive different keys of one optimizer.

    The values must stay in the key's range (``lr``, ``weight_decay`` >= 0; ``momentum``,
    ``dampening`` in [0, 1]; ``betas[i]`` in [0, 1); ``eps`` > 0; any key finite), or a
    :class:`ScheduledValueError` names the key, the step and the value. Each value is checked
    as it is set; up front, the range over ``steps`` scheduler steps (or, without ``steps``,
    over the schedule's length, after which it holds) is checked too, exactly where the
    schedule knows its extremes (see :func:`gradkit.schedules.value_range`).

    The base values are stored in the param groups (``initial_lr`` as torch does, else
    ``initial_<key>``) and in :meth:`state_dict`. Since a schedule is a pure function of the
    step count, loading a state dict restores the exact sequence whatever the order in which
    the optimizer, the schedulers and their states were rebuilt.

    Example:
        >>> scheduler = ParamScheduler(optimizer, "warmup(500) >> cosine(10000, final=0.01)")
        >>> for batch in data:
        ...     train_step(batch)  # optimizer.step() inside
        ...     scheduler.step()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule | str,
        key: str = "lr",
        *,
        mode: Literal["relative", "absolute"] = "relative",
        steps: int | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"ParamScheduler: expected a torch.optim.Optimizer, got {optimizer!r}")
        if isinstance(schedule, str):
            schedule = parse(schedule)
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"ParamScheduler: schedule must be a Schedule or its text form, got {schedule!r}"
            )
        if mode not in ("relative", "absolute"):
            raise ValueError(
                f"ParamScheduler: invalid mode={mode!r}; expected 'relative' or 'absolute'"
            )
        match = _KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise ValueError(
                f"ParamScheduler: invalid key={key!r}; expected a param-group key such as "
                f"'lr', 'momentum' or 'betas[0]'"
            )
        self.schedule = schedule
        self.key = key
        self.mode = mode
        self._name = match["name"]
        self._index = None if match["index"] is None else int(match["index"])
        self._base_key = "initial_lr" if key == "lr" else f"initial_{key}"
        for number, group in enumerate(optimizer.param_groups):
            current = self._read(group, number)
            group.setdefault(self._base_key, _copy(current))
        self.base_values = [group[self._base_key] for group in optimizer.param_groups]
        self._allowed = _ALLOWED.get(self._name, _Allowed())
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 0
        ):
            raise ValueError(f"ParamScheduler: invalid steps={steps!r}; expected an integer >= 0")
        horizon = steps if steps is not None else schedule.length
        if horizon is not None:
            # The values after 0, 1, ..., horizon scheduler steps are all set at some point.
            self._check_range(horizon + 1)
        super().__init__(optimizer)

    def _read(self, group: dict[str, Any], number: int) -> Any:
        if self._name not in group:
            raise KeyError(
                f"ParamScheduler: param group {number} has no key {self._name!r} "
                f"(it has {sorted(k for k in group if k != 'params')})"
            )
        value = group[self._name]
        if self._index is None:
            return value
        if not isinstance(value, (tuple, list)) or self._index >= len(value):
            raise ValueError(
                f"ParamScheduler: key={self.key!r} indexes {self._name}={value!r}, "
                f"which has no element {self._index}"
            )
        return value[self._index]

    def _write(self, group: dict[str, Any], value: float) -> None:
        if self._index is not None:
            items = list(group[self._name])
            items[self._index] = value
            group[self._name] = type(group[self._name])(items)
        elif isinstance(group[self._name], Tensor):
            group[self._name].fill_(value)
        else:
            group[self._name] = value

    def _check_range(self, stop: int) -> None:
        """Every value over ``[0, stop)`` in range; at the extremes the schedule names."""
        found = value_range(self.schedule, stop)
        for number, base in enumerate(self.base_values):
            scale = 1.0 if self.mode == "absolute" else float(base)
            for step in (found.low_step, found.high_step):
                self._check(scale * self.schedule(step), step, number)

    def _check(self, value: float, step: int, number: int) -> None:
        if not self._allowed.admits(value):
            groups = "" if len(self.base_values) == 1 else f" (param group {number})"
            raise ScheduledValueError(
                f"ParamScheduler: the schedule {self.schedule} sets {self.key}={value:.10g} at "
                f"step {step}{groups}; expected {self.key} {self._allowed}"
            )

    def values_at(self, step: int) -> list[float]:
        """The value of ``key`` in each param group after ``step`` scheduler steps."""
        factor = self.schedule(step)
        if self.mode == "absolute":
            return [factor for _ in self.base_values]
        return [float(base) * factor for base in self.base_values]

    def get_lr(self) -> list[float | Tensor]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step and set the key's new value in every group."""
        if epoch is not None:
            raise TypeError(
                "ParamScheduler.step takes no epoch: schedules count optimizer steps; "
                "rebuild the position with load_state_dict"
            )
        self._step_count += 1
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        values = self.values_at(self.last_epoch)
        for number, value in enumerate(values):
            self._check(value, self.last_epoch, number)
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            self._write(group, value)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_value(self) -> list[Any]:
        """The key's current value in each group."""
        return [self._read(group, i) for i, group in enumerate(self.optimizer.param_groups)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "schedule": str(self.schedule),
            "key": self.key,
            "mode": self.mode,
            "base_values": [_copy(value) for value in self.base_values],
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name in ("schedule", "key", "mode"):
            mine = str(self.schedule) if name == "schedule" else getattr(self, name)
            if state_dict[name] != mine:
                raise ValueError(
                    f"ParamScheduler: the state was saved with {name}={state_dict[name]!r} "
                    f"but this scheduler has {name}={mine!r}"
                )
        if len(state_dict["base_values"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"ParamScheduler: the state has {len(state_dict['base_values'])} param groups, "
                f"the optimizer {len(self.optimizer.param_groups)}"
            )
        self.base_values = list(state_dict["base_values"])
        for group, base in zip(self.optimizer.param_groups, self.base_values, strict=True):
            group[self._base_key] = _copy(base)
        self.last_epoch = state_dict["last_epoch"]
        self._step_count = state_dict["_step_count"]
        self._apply()


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value
