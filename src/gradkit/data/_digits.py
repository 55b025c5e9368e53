"""scikit-learn's digits (Alpaydin & Kaynak 1998, UCI "Optical Recognition of Handwritten
Digits"): 1,797 images of 8x8 pixels, shipped with scikit-learn, so nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gradkit.data._checks import check_integer, check_open_fraction, split_sizes
from gradkit.data._splits import Splits, tensor_dataset

__all__ = ["load_digits"]

_OWNER = "digits"
_MAX_PIXEL = 16.0  # the digits' pixels are counts of a 4x4 block, 0 to 16


def load_digits(
    root: str | Path | None = None, *, test_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """scikit-learn's digits as flat ``(64,)`` inputs scaled to ``[0, 1]``, labels 0-9.

    The data set has no official split: ``round(1797 * test_fraction)`` samples, drawn by
    ``torch.randperm`` seeded with ``seed``, form the test split (359 at the defaults), the
    rest the training split, each in the original order.

    Args:
        root: must be ``None``; the digits ship with scikit-learn.
        test_fraction: the share of samples in the test split, in ``(0, 1)``.
        seed: seeds the split.
    """
    if root is not None:
        raise ValueError(
            f"{_OWNER}: root must be None (the digits ship with scikit-learn); got {root!r}"
        )
    check_open_fraction(_OWNER, "test_fraction", test_fraction)
    check_integer(_OWNER, "seed", seed, 0)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise ImportError(
            "digits: the digits data set ships with scikit-learn: pip install scikit-learn"
        ) from error
    bunch = sklearn_load_digits()
    inputs = np.asarray(bunch.data, dtype=np.float64) / _MAX_PIXEL
    labels = np.asarray(bunch.target, dtype=np.int64)
    _, test_size = split_sizes(_OWNER, "test_fraction", len(labels), test_fraction)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(seed)))
    test = np.sort(order[:test_size].numpy())
    train = np.sort(order[test_size:].numpy())
    return Splits(
        name=_OWNER,
        train=tensor_dataset(inputs[train], labels[train]),
        test=tensor_dataset(inputs[test], labels[test]),
        input_shape=(inputs.shape[1],),
        classes=10,
        class_names=tuple(str(digit) for digit in range(10)),
    )
