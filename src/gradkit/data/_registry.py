"""The registry of datasets: one entry per name, read by the trainer, the studies and the tests."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gradkit._lookup import lookup
from gradkit.data import _cifar10, _mnist
from gradkit.data._cifar10 import load_cifar10
from gradkit.data._digits import load_digits
from gradkit.data._mnist import load_mnist
from gradkit.data._mnist1d import load_mnist1d
from gradkit.data._splits import Splits

__all__ = ["DATASETS", "DatasetSpec", "get_dataset", "load_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset.

    Attributes:
        name: the registry name, as used in configs and on the command line.
        input_shape: the shape of one input sample at the defaults (without the batch).
        classes: the number of classes.
        splits: the number of samples in each split at the defaults.
        paper: where the dataset comes from (an arXiv id where there is one).
        source: where its samples come from, and how to obtain files that are not shipped.
        loader: ``loader(root, **options) -> Splits``.
        needs_root: whether ``root`` (a local directory of files) is required.
        summary: one line for listings.
    """

    name: str
    input_shape: tuple[int, ...]
    classes: int
    splits: Mapping[str, int]
    paper: str
    source: str
    loader: Callable[..., Splits]
    needs_root: bool = False
    summary: str = ""

    def options(self) -> tuple[str, ...]:
        """The keyword options ``loader`` accepts (besides ``root``)."""
        parameters = inspect.signature(self.loader).parameters
        return tuple(name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY)

    def load(self, root: str | os.PathLike[str] | None = None, **options: Any) -> Splits:
        """Load both splits; unknown ``options`` are an error that names the closest ones."""
        allowed = self.options()
        for key in options:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listed = ", ".join(map(repr, allowed)) if allowed else "none"
                raise ValueError(
                    f"load_dataset: unknown option {key!r} for dataset {self.name!r}{hint}; "
                    f"expected one of {listed}"
                )
        return self.loader(root, **options)


def _sizes(train: int, test: int) -> Mapping[str, int]:
    return MappingProxyType({"train": train, "test": test})


_SPECS = (
    DatasetSpec(
        "mnist1d",
        (40,),
        10,
        _sizes(4000, 1000),
        "arXiv 2011.14439",
        "generated locally by the mnist1d package (make_dataset, seed 42), cached",
        load_mnist1d,
        summary="MNIST-1D: 1-D signals of length 40, the paper's frozen set by default",
    ),
    DatasetSpec(
        "digits",
        (64,),
        10,
        _sizes(1438, 359),
        "Alpaydin & Kaynak 1998 (UCI optical digits)",
        "ships with scikit-learn (sklearn.datasets.load_digits)",
        load_digits,
        summary="scikit-learn's 8x8 digits, flat, scaled to [0, 1]",
    ),
    DatasetSpec(
        "cifar10",
        (3, 32, 32),
        10,
        _sizes(50000, 10000),
        "Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images",
        f"{_cifar10.EXPECTED}; {_cifar10.HOW}",
        load_cifar10,
        needs_root=True,
        summary="CIFAR-10 from its python batches in a local directory",
    ),
    DatasetSpec(
        "mnist",
        (1, 28, 28),
        10,
        _sizes(60000, 10000),
        "LeCun et al. 1998, Gradient-based learning applied to document recognition",
        f"{_mnist.EXPECTED}; {_mnist.HOW}",
        load_mnist,
        needs_root=True,
        summary="MNIST from its IDX files in a local directory",
    ),
)

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every registered dataset by name."""


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry called ``name``; a ``KeyError`` suggests the closest names."""
    return lookup(DATASETS, name, "dataset")


def load_dataset(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> Splits:
    """Load the registered dataset ``name``: its train and test splits.

    Args:
        name: a key of :data:`DATASETS`.
        root: the local directory of files for ``cifar10`` and ``mnist``; the cache directory
            for ``mnist1d`` (``None``: :func:`gradkit.data.cache_dir`); ``None`` for ``digits``.
        options: the loader's options, e.g. ``num_samples`` and ``seed`` for ``mnist1d``,
            ``normalize`` for the image datasets (see ``DATASETS[name].options()``).

    Example:
        >>> splits = load_dataset("mnist1d", num_samples=40_000)
        >>> splits.train.tensors[0].shape
        torch.Size([32000, 40])
    """
    return get_dataset(name).load(root, **options)
