"""Drive any param-group key of any torch optimizer with a schedule."""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from gradkit.schedules._base import Schedule
from gradkit.schedules._parse import parse

_KEY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z_0-9]*)(?:\[(?P<index>\d+)\])?")


class ParamScheduler(LRScheduler):
    r"""A ``torch.optim.lr_scheduler.LRScheduler`` that sets ``group[key]`` from a schedule.

    After :math:`k` calls to :meth:`step` (one per optimizer step), every param group gets

    .. math::
        \text{group[key]} = b \cdot s(k) \;(\text{relative}),\qquad s(k) \;(\text{absolute})

    where :math:`b` is the group's value when the scheduler was created. ``key`` is any
    param-group entry: ``"lr"``, ``"momentum"``, ``"weight_decay"``, or one element of a tuple
    such as ``"betas[0]"``. Several schedulers may drive different keys of one optimizer.

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
        for group, value in zip(
            self.optimizer.param_groups, self.values_at(self.last_epoch), strict=True
        ):
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
