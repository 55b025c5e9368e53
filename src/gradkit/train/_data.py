"""The data of a run: train/validation/test tensors and the batches of each step."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from gradkit._lookup import did_you_mean
from gradkit.schedules import ScheduledBatchSampler, parse
from gradkit.train._config import Config, ConfigError

__all__ = ["TrainingData", "as_tensors", "load_training_data", "step_batches"]


@dataclass(frozen=True)
class TrainingData:
    """The splits a run uses. ``validation`` is ``None`` unless the config asks for one.

    Any dataset whose items are ``(input, label)`` pairs works; ``TensorDataset`` and
    ``Subset`` of one are indexed without a per-sample loop.
    """

    train: Dataset[Any]
    test: Dataset[Any]
    validation: Dataset[Any] | None = None
    name: str = "custom"
    classes: int | None = None


def load_training_data(config: Config) -> TrainingData:
    """Load ``config.data`` from :mod:`gradkit.data` and hold out the validation part."""
    from gradkit.data import load_dataset, validation_split

    data = config.data
    _check_data_config(config)
    try:
        splits = load_dataset(data.name, root=data.root, **data.options)
    except KeyError as error:
        raise ConfigError(f"config: data.name: {error.args[0]}") from None
    except OSError as error:  # a missing or unreadable directory or file
        raise ConfigError(f"config: data.root: {error}") from None
    except ValueError as error:  # an option's value, or a file that is not what it should be
        raise ConfigError(f"config: data: {error}") from None
    classes = getattr(splits, "classes", None)
    if isinstance(classes, Sequence) and not isinstance(classes, str):
        classes = len(classes)
    return with_validation(
        TrainingData(
            splits.train, splits.test, name=getattr(splits, "name", data.name), classes=classes
        ),
        config,
        validation_split,
    )


def _check_data_config(config: Config) -> None:
    """Unknown ``data.options`` and a missing ``data.root``, as errors that name the key."""
    from gradkit.data import get_dataset

    data = config.data
    try:
        spec = get_dataset(data.name)
    except KeyError as error:
        raise ConfigError(f"config: data.name: {error.args[0]}") from None
    allowed = spec.options()
    for key in data.options:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise ConfigError(
                f"config: data.options.{key}: dataset {spec.name!r} has no option {key!r}"
                f"{did_you_mean(key, allowed)} (allowed: {listed})"
            )
    if spec.needs_root and not data.root:
        raise ConfigError(
            f"config: data.root: not set, and dataset {spec.name!r} is read from a local "
            f"directory; set data.root=DIR, the directory that holds {spec.source}"
        )


def with_validation(data: TrainingData, config: Config, split: Any = None) -> TrainingData:
    """``data`` with ``config.data.validation_fraction`` of its train split held out."""
    fraction = config.data.validation_fraction
    if not fraction or data.validation is not None:
        return data
    if split is None:
        from gradkit.data import validation_split as split
    train, validation = split(data.train, fraction=fraction, seed=config.data.validation_seed)
    return TrainingData(train, data.test, validation, data.name, data.classes)


def as_tensors(dataset: Dataset[Any]) -> tuple[Tensor, Tensor]:
    """The inputs and labels of ``dataset`` as two tensors (no copy for a ``TensorDataset``)."""
    if isinstance(dataset, TensorDataset):
        inputs, labels = dataset.tensors[:2]
        return inputs, labels
    if isinstance(dataset, Subset):
        inputs, labels = as_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return inputs[index], labels[index]
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor(
        [int(y) for _, y in items]
    )


def make_sampler(config: Config, data_size: int, start_step: int) -> ScheduledBatchSampler:
    """The sampler of global batches: one batch per optimizer step, resumable by step count."""
    schedule = config.schedule
    return ScheduledBatchSampler(
        data_size,
        config.train.batch_size,
        None if schedule.batch is None else parse(schedule.batch),
        max_batch_size=schedule.max_batch_size,
        seed=config.train.seed,
        start_step=start_step,
    )


def step_batches(sampler: ScheduledBatchSampler) -> Iterator[list[int]]:
    """The global batch of each step, epoch after epoch, forever."""
    while True:
        yield from sampler


def split_for_rank(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's contiguous share of a global batch (sizes differ by at most one)."""
    start = rank * len(batch) // world_size
    stop = (rank + 1) * len(batch) // world_size
    if stop == start:
        raise RuntimeError(
            f"a batch of {len(batch)} samples cannot be shared by {world_size} processes; "
            "make the data size or the batch size larger"
        )
    return batch[start:stop]


def micro_batches(share: list[int], micro_batch_size: int | None) -> list[list[int]]:
    """Pieces of this process's share, for gradient accumulation."""
    if micro_batch_size is None or micro_batch_size >= len(share):
        return [share]
    pieces = math.ceil(len(share) / micro_batch_size)
    return [share[i * micro_batch_size : (i + 1) * micro_batch_size] for i in range(pieces)]
