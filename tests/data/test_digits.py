"""scikit-learn's digits: scaled to [0, 1], a deterministic split, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from gradkit.data import load_dataset


def sorted_rows(array: np.ndarray) -> np.ndarray:
    return array[np.lexsort(array.T[::-1])]


def test_digits_are_scaled_and_complete() -> None:
    splits = load_dataset("digits")
    assert splits.name == "digits" and splits.input_shape == (64,) and splits.classes == 10
    (x_train, y_train), (x_test, y_test) = splits.train.tensors, splits.test.tensors
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    inputs = torch.cat([x_train, x_test])
    assert inputs.min().item() == 0.0 and inputs.max().item() == 1.0
    reference = load_digits()
    # the two splits together are scikit-learn's samples, each pixel divided by 16
    rows = np.column_stack([inputs.numpy(), torch.cat([y_train, y_test]).numpy()])
    expected = np.column_stack([reference.data / 16, reference.target]).astype(np.float32)
    np.testing.assert_array_equal(sorted_rows(rows), sorted_rows(expected))


def test_the_split_is_deterministic_and_seeded() -> None:
    first, again = load_dataset("digits", seed=0), load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(first.test.tensors[0], again.test.tensors[0])
    assert not torch.equal(first.test.tensors[0], other.test.tensors[0])
    half = load_dataset("digits", test_fraction=0.5)
    assert (len(half.train), len(half.test)) == (899, 898)  # round(898.5) == 898


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"root": Path("/data")}, "digits: root must be None (the digits ship with "
         "scikit-learn); got PosixPath('/data')"),
        ({"test_fraction": 0}, "digits: invalid test_fraction=0; expected a number in (0, 1)"),
        ({"test_fraction": 0.0001}, "digits: test_fraction=0.0001 of 1797 samples leaves 1797 "
         "and 0; both parts must be non-empty"),
        ({"seed": -3}, "digits: invalid seed=-3; expected an integer >= 0"),
        ({"normalize": True}, "load_dataset: unknown option 'normalize' for dataset 'digits'; "
         "expected one of 'test_fraction', 'seed'"),
    ],
)  # fmt: skip
def test_bad_arguments(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("digits", **arguments)
    assert str(raised.value) == message


def test_without_scikit_learn_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError) as raised:
        load_dataset("digits")
    assert str(raised.value) == (
        "digits: the digits data set ships with scikit-learn: pip install scikit-learn"
    )
