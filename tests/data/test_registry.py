"""The dataset registry, the Splits contract, validation_split and the cache directory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

import gradkit.data
from gradkit.data import (
    DATASETS,
    DatasetSpec,
    Splits,
    cache_dir,
    get_dataset,
    load_dataset,
    validation_split,
)

CONTRACT = {
    "mnist1d": ((40,), 10),
    "digits": ((64,), 10),
    "cifar10": ((3, 32, 32), 10),
    "mnist": ((1, 28, 28), 10),
}


def test_the_registry_holds_the_contracted_datasets() -> None:
    assert set(DATASETS) == set(CONTRACT)
    for name, (shape, classes) in CONTRACT.items():
        spec = DATASETS[name]
        assert isinstance(spec, DatasetSpec) and spec.name == name
        assert spec.input_shape == shape and spec.classes == classes
        assert set(spec.splits) == {"train", "test"}
        assert spec.paper and spec.source and spec.summary
    assert DATASETS["mnist1d"].splits == {"train": 4000, "test": 1000}
    assert "arXiv 2011.14439" in DATASETS["mnist1d"].paper
    assert [name for name, spec in DATASETS.items() if spec.needs_root] == ["cifar10", "mnist"]


def test_the_public_api() -> None:
    assert sorted(gradkit.data.__all__) == sorted(
        ["DATASETS", "DatasetSpec", "Splits", "cache_dir", "get_dataset", "load_dataset",
         "validation_split"]
    )  # fmt: skip


def test_registry_entries_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["mnist1d"].classes = 11
    with pytest.raises(TypeError):
        DATASETS["new"] = DATASETS["mnist1d"]
    with pytest.raises(TypeError):
        DATASETS["mnist1d"].splits["train"] = 1


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_each_loader_gives_what_its_entry_says(
    name: str, cifar_dir: Callable, mnist_dir: Callable
) -> None:
    root = {"cifar10": lambda: cifar_dir(), "mnist": lambda: mnist_dir()[0]}.get(name)
    options = {"num_samples": 50} if name == "mnist1d" else {}
    splits = load_dataset(name, root=root() if root else None, **options)
    spec = DATASETS[name]
    assert isinstance(splits, Splits) and splits.name == name
    assert splits.input_shape == spec.input_shape and splits.classes == spec.classes
    assert len(splits.class_names) == spec.classes
    for split in (splits.train, splits.test):
        inputs, labels = split.tensors
        assert isinstance(split, TensorDataset)
        assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
        assert tuple(inputs.shape[1:]) == spec.input_shape
        assert int(labels.min()) >= 0 and int(labels.max()) < spec.classes
    if name == "digits":  # the other entries' sizes are those of the real files
        assert {"train": len(splits.train), "test": len(splits.test)} == spec.splits


def test_look_up_is_case_insensitive() -> None:
    assert get_dataset("MNIST1D") is DATASETS["mnist1d"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mnist1", "unknown dataset 'mnist1'; did you mean 'mnist1d' or 'mnist'? "
         "(known: mnist1d, digits, cifar10, mnist)"),
        ("cifar100", "unknown dataset 'cifar100'; did you mean 'cifar10'? "
         "(known: mnist1d, digits, cifar10, mnist)"),
        ("imagenet", "unknown dataset 'imagenet' (known: mnist1d, digits, cifar10, mnist)"),
    ],
)  # fmt: skip
def test_an_unknown_name_suggests_the_closest(name: str, message: str) -> None:
    for call in (lambda: get_dataset(name), lambda: load_dataset(name)):
        with pytest.raises(KeyError) as raised:
            call()
        assert raised.value.args[0] == message


def test_splits_check_their_tensors() -> None:
    good = TensorDataset(torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError) as raised:
        Splits("x", TensorDataset(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3)),
               good, (4,), 2)  # fmt: skip
    assert str(raised.value) == (
        "Splits 'x': train holds torch.float64 inputs and torch.float32 labels; "
        "expected torch.float32 and torch.int64"
    )
    with pytest.raises(ValueError) as raised:
        Splits("x", good, good, (2, 2), 2)
    assert str(raised.value) == "Splits 'x': train inputs have shape (3, 4); expected (n, 2, 2)"


def numbered(length: int) -> TensorDataset:
    return TensorDataset(torch.arange(length))


def members(subset: Subset) -> list[int]:
    return [int(subset[index][0]) for index in range(len(subset))]


def test_validation_split_is_disjoint_complete_and_ordered() -> None:
    train, validation = validation_split(numbered(1000), fraction=0.1, seed=0)
    assert isinstance(train, Subset) and isinstance(validation, Subset)
    assert (len(train), len(validation)) == (900, 100)
    train_members, validation_members = members(train), members(validation)
    assert not set(train_members) & set(validation_members)
    assert sorted(train_members + validation_members) == list(range(1000))
    assert train_members == sorted(train_members)
    assert validation_members == sorted(validation_members)
    # a random draw, not the first or last tenth
    assert validation_members != list(range(100))
    assert validation_members != list(range(900, 1000))


def test_validation_split_is_deterministic_per_seed() -> None:
    first = validation_split(numbered(500), fraction=0.2, seed=3)
    again = validation_split(numbered(500), fraction=0.2, seed=3)
    other = validation_split(numbered(500), fraction=0.2, seed=4)
    assert members(first[1]) == members(again[1])
    assert members(first[0]) == members(again[0])
    assert members(first[1]) != members(other[1])
    assert len(members(first[1])) == 100


def test_validation_split_of_a_loaded_split() -> None:
    splits = load_dataset("mnist1d", num_samples=100)
    train, validation = validation_split(splits.train, fraction=0.25, seed=0)
    assert (len(train), len(validation)) == (60, 20)
    inputs, label = validation[0]
    assert inputs.shape == (40,) and label.dtype == torch.int64


@pytest.mark.parametrize(
    ("dataset", "fraction", "seed", "error", "message"),
    [
        (numbered(10), 0.0, 0, ValueError,
         "validation_split: invalid fraction=0.0; expected a number in (0, 1)"),
        (numbered(10), 1, 0, ValueError,
         "validation_split: invalid fraction=1; expected a number in (0, 1)"),
        (numbered(10), "0.1", 0, ValueError,
         "validation_split: invalid fraction='0.1'; expected a number in (0, 1)"),
        (numbered(10), 0.01, 0, ValueError,
         "validation_split: fraction=0.01 of 10 samples leaves 10 and 0; both parts must be "
         "non-empty"),
        (numbered(10), 0.1, -1, ValueError,
         "validation_split: invalid seed=-1; expected an integer >= 0"),
        (numbered(10), 0.1, 1.5, ValueError,
         "validation_split: invalid seed=1.5; expected an integer >= 0"),
        (iter(range(3)), 0.1, 0, TypeError,
         "validation_split: dataset range_iterator has no len()"),
    ],
)  # fmt: skip
def test_validation_split_bad_arguments(
    dataset: object, fraction: object, seed: object, error: type, message: str
) -> None:
    with pytest.raises(error) as raised:
        validation_split(dataset, fraction=fraction, seed=seed)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("gradkit_cache", "xdg", "expected"),
    [
        ("/explicit/cache", "/xdg", "/explicit/cache"),
        ("~/gk", None, "{home}/gk"),
        (None, "/xdg", "/xdg/gradkit"),
        (None, "relative/xdg", "{home}/.cache/gradkit"),
        ("", "", "{home}/.cache/gradkit"),
        (None, None, "{home}/.cache/gradkit"),
    ],
)
def test_cache_dir(
    gradkit_cache: str | None,
    xdg: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable, value in (("GRADKIT_CACHE", gradkit_cache), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    assert cache_dir() == Path(expected.format(home=tmp_path))
