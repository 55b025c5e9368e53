"""Batch-size schedules: increase the batch instead of decaying the rate (arXiv 1711.00489)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Sampler

from gradkit.schedules._base import Schedule
from gradkit.schedules._parse import parse


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected an integer >= 1")
    return int(value)


class ScheduledBatchSampler(Sampler[list[int]]):
    r"""Batches whose size follows a schedule of the optimizer-step count.

    The batch of step :math:`k` has :math:`\max(1, \operatorname{round}(B \cdot s(k)))`
    samples (at most ``max_batch_size``), where :math:`B` is ``batch_size`` and :math:`s` the
    schedule (e.g. ``multistep([3000, 6000], gamma=2.0)`` doubles the batch where a step decay
    would halve the rate; Smith et al., arXiv 1711.00489). Each epoch is a permutation of the
    data (seeded by ``seed + epoch``, like ``DistributedSampler``), cut into consecutive
    batches, so every sample is seen exactly once per epoch whatever the sizes; the last batch
    of an epoch holds what is left.

    Use it as a ``DataLoader``'s ``batch_sampler``: each ``iter()`` yields the rest of the
    current epoch, then moves to the next. Its position is the number of batches taken; since
    sizes are a pure function of the step, ``state_dict()`` is just that count, and
    ``load_state_dict`` (or ``start_step``) resumes exactly. With worker prefetching, save the
    number of batches your loop *consumed* (``{"step": n}``), not the sampler's own count.

    For the same global batch through gradient accumulation, :meth:`micro_batches` splits
    each batch into pieces of at most ``micro_batch_size``.
    """

    def __init__(
        self,
        data_size: int | Sized,
        batch_size: int,
        schedule: Schedule | str | None = None,
        *,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        start_step: int = 0,
    ) -> None:
        owner = "ScheduledBatchSampler"
        if isinstance(data_size, Sized) and not isinstance(data_size, numbers.Integral):
            data_size = len(data_size)
        self.data_size = _positive_int(owner, "data_size", data_size)
        self.batch_size = _positive_int(owner, "batch_size", batch_size)
        if isinstance(schedule, str):
            schedule = parse(schedule)
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"{owner}: schedule must be a Schedule, its text form or None")
        self.schedule = schedule
        self.max_batch_size = (
            None
            if max_batch_size is None
            else _positive_int(owner, "max_batch_size", max_batch_size)
        )
        if not isinstance(shuffle, bool):
            raise ValueError(f"{owner}: invalid shuffle={shuffle!r}; expected True or False")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"{owner}: invalid seed={seed!r}; expected an integer")
        self.shuffle = shuffle
        self.seed = int(seed)
        self.load_state_dict({"step": start_step})

    def batch_size_at(self, step: int) -> int:
        """The size of the batch of optimizer step ``step`` (before the end-of-epoch cut)."""
        factor = 1.0 if self.schedule is None else self.schedule(step)
        if not math.isfinite(self.batch_size * factor):
            raise ValueError(
                f"ScheduledBatchSampler: the schedule gives batch size {self.batch_size} * "
                f"{factor!r} at step {step}; expected a finite number"
            )
        size = max(1, round(self.batch_size * factor))
        return size if self.max_batch_size is None else min(size, self.max_batch_size)

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.data_size))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.data_size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order(self.epoch)
        while self.offset < self.data_size:
            size = min(self.batch_size_at(self.step), self.data_size - self.offset)
            batch = order[self.offset : self.offset + size]
            self.offset += size
            self.step += 1
            if self.offset >= self.data_size:
                # Move to the next epoch before handing out its last batch, as load_state_dict
                # would: a loop that stops after that batch must not find an empty epoch.
                self.epoch, self.offset = self.epoch + 1, 0
                yield batch
                return
            yield batch

    def __len__(self) -> int:
        """Batches left in the current epoch."""
        offset, step, count = self.offset, self.step, 0
        while offset < self.data_size:
            offset += self.batch_size_at(step)
            step += 1
            count += 1
        return count

    def state_dict(self) -> dict[str, int]:
        """``{"step": batches taken}``: everything else follows from the schedule and seed."""
        return {"step": self.step}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Move to the position after ``state_dict["step"]`` batches (from the start)."""
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"ScheduledBatchSampler: invalid step={step!r}; expected >= 0")
        self.epoch, self.offset, self.step = 0, 0, 0
        while self.step < step:
            self.offset += min(self.batch_size_at(self.step), self.data_size - self.offset)
            self.step += 1
            if self.offset >= self.data_size:
                self.epoch, self.offset = self.epoch + 1, 0

    @staticmethod
    def micro_batches(batch: list[int], micro_batch_size: int) -> list[list[int]]:
        """Split a batch into consecutive pieces of at most ``micro_batch_size``.

        Accumulating ``loss(piece) * len(piece) / len(batch)`` over the pieces gives the
        gradient of the mean loss over the whole batch.
        """
        size = _positive_int("micro_batches", "micro_batch_size", micro_batch_size)
        return [batch[i : i + size] for i in range(0, len(batch), size)]


def scale_learning_rate(
    lr: float, batch_size: int, reference_batch_size: int = 256, rule: str = "linear"
) -> float:
    r"""Scale a learning rate tuned at ``reference_batch_size`` to ``batch_size``.

    ``linear``: :math:`\eta\,B/B_0` (Goyal et al., arXiv 1706.02677, with gradual warm-up);
    ``sqrt``: :math:`\eta\sqrt{B/B_0}` (Krizhevsky, arXiv 1404.5997; Hoffer et al.,
    arXiv 1705.08741); ``none``: :math:`\eta`.
    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr >= 0:
        raise ValueError(f"scale_learning_rate: invalid lr={lr!r}; expected a number >= 0")
    batch_size = _positive_int("scale_learning_rate", "batch_size", batch_size)
    reference = _positive_int("scale_learning_rate", "reference_batch_size", reference_batch_size)
    ratio = batch_size / reference
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "none":
        return float(lr)
    raise ValueError(
        f"scale_learning_rate: invalid rule={rule!r}; expected 'linear', 'sqrt' or 'none'"
    )
