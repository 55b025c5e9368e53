"""What every loader returns (:class:`Splits`), and the split helpers shared by the loaders."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from gradkit.data._checks import check_integer, check_open_fraction, split_sizes


@dataclass(frozen=True)
class Splits:
    """A loaded dataset: its train and test splits and what a model needs to know about them.

    Attributes:
        name: the registry name (``"mnist1d"``, ``"digits"``, ``"cifar10"``, ``"mnist"``).
        train: ``TensorDataset(inputs, labels)``, inputs ``float32`` of shape
            ``(n, *input_shape)``, labels ``int64`` in ``[0, classes)``.
        test: the same for the test split.
        input_shape: the shape of one input sample (without the batch).
        classes: the number of classes.
        class_names: the names of the classes, in label order, where the files carry them.
    """

    name: str
    train: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, ...]
    classes: int
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for split, dataset in (("train", self.train), ("test", self.test)):
            inputs, labels = dataset.tensors
            if inputs.dtype != torch.float32 or labels.dtype != torch.int64:
                raise TypeError(
                    f"Splits {self.name!r}: {split} holds {inputs.dtype} inputs and "
                    f"{labels.dtype} labels; expected torch.float32 and torch.int64"
                )
            if tuple(inputs.shape[1:]) != self.input_shape:
                raise ValueError(
                    f"Splits {self.name!r}: {split} inputs have shape {tuple(inputs.shape)}; "
                    f"expected (n, {', '.join(map(str, self.input_shape))})"
                )


def tensor_dataset(inputs: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """``TensorDataset`` of ``float32`` inputs and ``int64`` labels (copies only to convert)."""
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
    )


def validation_split(
    dataset: Dataset, fraction: float = 0.1, seed: int = 0
) -> tuple[Subset, Subset]:
    """Split ``dataset`` into ``(train_part, validation_part)``, disjoint and deterministic.

    ``round(len(dataset) * fraction)`` samples, drawn by ``torch.randperm`` with a generator
    seeded with ``seed``, form the validation part; the rest the training part. Both keep the
    dataset's order. The same dataset length, fraction and seed give the same split on every
    machine.

    Example:
        >>> splits = load_dataset("mnist1d")
        >>> train_part, val_part = validation_split(splits.train, fraction=0.1, seed=0)
    """
    owner = "validation_split"
    if not isinstance(dataset, Sized):
        raise TypeError(f"{owner}: dataset {type(dataset).__name__} has no len()")
    check_open_fraction(owner, "fraction", fraction)
    check_integer(owner, "seed", seed, 0)
    _, held_out = split_sizes(owner, "fraction", len(dataset), fraction)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(dataset), generator=generator)
    validation = torch.sort(order[:held_out]).values.tolist()
    train = torch.sort(order[held_out:]).values.tolist()
    return Subset(dataset, train), Subset(dataset, validation)
