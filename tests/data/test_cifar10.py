"""CIFAR-10 from its python batches: the layout, normalization, and every broken directory."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gradkit.data import load_dataset

HOW = (
    "download the python version (cifar-10-python.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there with tar -xzf; "
    "gradkit downloads nothing"
)
EXPECTED = (
    "the CIFAR-10 python batches data_batch_1 to data_batch_5, test_batch and batches.meta "
    "(in it or in its cifar-10-batches-py folder)"
)


def raw_batches(directory: Path) -> list[dict]:
    names = [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]
    return [pickle.loads((directory / name).read_bytes(), encoding="bytes") for name in names]


@pytest.mark.parametrize("protocol", ["python2", 2, 5])
def test_reads_the_python_batches(cifar_dir: Callable[..., Path], protocol: int | str) -> None:
    directory = cifar_dir(protocol=protocol)
    if protocol == "python2":  # what the real files hold
        assert b"cnumpy.core.multiarray\n_reconstruct" in (directory / "test_batch").read_bytes()
    batches = raw_batches(directory)
    splits = load_dataset("cifar10", root=directory)
    assert splits.name == "cifar10" and splits.classes == 10
    assert splits.input_shape == (3, 32, 32)
    assert splits.class_names[:3] == ("airplane", "automobile", "bird")
    inputs, labels = splits.train.tensors
    assert inputs.shape == (20, 3, 32, 32) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert labels.tolist() == [label for batch in batches[:5] for label in batch[b"labels"]]
    # sample 6 is the third of data_batch_2; a row is the red, green, blue 32x32 planes
    row = batches[1][b"data"][2]
    assert inputs[6, 1, 2, 3].item() == np.float32(row[1024 + 2 * 32 + 3]) / np.float32(255)
    assert inputs[6, 2, 31, 0].item() == np.float32(row[2048 + 31 * 32]) / np.float32(255)
    expected = torch.from_numpy(batches[1][b"data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(inputs[4:8], expected)
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    test_inputs, test_labels = splits.test.tensors
    assert test_inputs.shape == (4, 3, 32, 32)
    assert test_labels.tolist() == batches[5][b"labels"]


def test_the_parent_of_cifar_10_batches_py_works(
    cifar_dir: Callable[..., Path], tmp_path: Path
) -> None:
    cifar_dir(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", root=tmp_path).train) == 20
    assert len(load_dataset("cifar10", root=str(tmp_path)).test) == 4


def test_normalize_uses_the_training_statistics(cifar_dir: Callable[..., Path]) -> None:
    directory = cifar_dir()
    plain = load_dataset("cifar10", root=directory)
    normalized = load_dataset("cifar10", root=directory, normalize=True)
    train = plain.train.tensors[0].double()
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True, correction=0)
    for split_plain, split_normalized in ((plain.train, normalized.train),
                                          (plain.test, normalized.test)):  # fmt: skip
        expected = (split_plain.tensors[0].double() - mean) / std
        torch.testing.assert_close(split_normalized.tensors[0].double(), expected, atol=1e-5,
                                   rtol=0)  # fmt: skip
    normalized_train = normalized.train.tensors[0].double()
    zeros = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(normalized_train.mean(dim=(0, 2, 3)), zeros, atol=1e-5, rtol=0)
    assert torch.equal(plain.train.tensors[1], normalized.train.tensors[1])


def test_a_malicious_pickle_runs_no_code(cifar_dir: Callable[..., Path], tmp_path: Path) -> None:
    directory = cifar_dir()
    marker = tmp_path / "owned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    (directory / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(ValueError) as raised:
        load_dataset("cifar10", root=directory)
    assert str(raised.value) == (
        f"cifar10: {directory / 'data_batch_1'} is truncated or is not a CIFAR-10 python batch "
        f"(a pickled dict); {HOW}"
    )
    assert "is not allowed" in str(raised.value.__cause__)
    assert not marker.exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _rewrite(name: str, change: Callable[[dict], object]) -> Callable[[Path, object], None]:
    def apply(directory: Path, formats: object) -> None:
        path = directory / name
        batch = pickle.loads(path.read_bytes(), encoding="bytes")
        formats.write_pickle(path, change(batch))

    return apply


def _set(key: bytes, value: object) -> Callable[[dict], dict]:
    return lambda batch: {**batch, key: value}


BAD_DIRECTORIES = [
    (
        "missing test_batch",
        lambda directory, formats: (directory / "test_batch").unlink(),
        FileNotFoundError,
        "cifar10: {dir} lacks test_batch; expected " + EXPECTED + "; " + HOW,
    ),
    (
        "missing two",
        lambda directory, formats: [
            (directory / name).unlink() for name in ("data_batch_3", "batches.meta")
        ],
        FileNotFoundError,
        "cifar10: {dir} lacks data_batch_3, batches.meta; expected " + EXPECTED + "; " + HOW,
    ),
    (
        "truncated",
        lambda directory, formats: _truncate(directory / "data_batch_3"),
        ValueError,
        "cifar10: {dir}/data_batch_3 is truncated or is not a CIFAR-10 python batch "
        "(a pickled dict); " + HOW,
    ),
    (
        "not a pickle",
        lambda directory, formats: (directory / "test_batch").write_text("hello\n"),
        ValueError,
        "cifar10: {dir}/test_batch is truncated or is not a CIFAR-10 python batch "
        "(a pickled dict); " + HOW,
    ),
    (
        "a list",
        lambda directory, formats: formats.write_pickle(directory / "data_batch_1", [1, 2]),
        ValueError,
        "cifar10: {dir}/data_batch_1 holds a pickled list; expected a dict",
    ),
    (
        "float data",
        _rewrite("data_batch_2", lambda b: _set(b"data", b[b"data"].astype(np.float32))(b)),
        ValueError,
        "cifar10: {dir}/data_batch_2: 'data' is a float32 array of shape (4, 3072); "
        "expected a uint8 array of shape (n, 3072)",
    ),
    (
        "no data",
        _rewrite("data_batch_2", lambda b: {b"labels": b[b"labels"]}),
        ValueError,
        "cifar10: {dir}/data_batch_2: 'data' is NoneType; "
        "expected a uint8 array of shape (n, 3072)",
    ),
    (
        "short rows",
        _rewrite("test_batch", lambda b: _set(b"data", b[b"data"][:, :1024])(b)),
        ValueError,
        "cifar10: {dir}/test_batch: 'data' is a uint8 array of shape (4, 1024); "
        "expected a uint8 array of shape (n, 3072)",
    ),
    (
        "labels short",
        _rewrite("data_batch_5", lambda b: _set(b"labels", b[b"labels"][:3])(b)),
        ValueError,
        "cifar10: {dir}/data_batch_5: 'labels' is not a list of 4 integers, one per image",
    ),
    (
        "label 10",
        _rewrite("data_batch_5", _set(b"labels", [0, 1, 10, 2])),
        ValueError,
        "cifar10: {dir}/data_batch_5: 'labels' holds values outside 0-9",
    ),
    (
        "nine names",
        _rewrite("batches.meta", lambda m: _set(b"label_names", m[b"label_names"][:9])(m)),
        ValueError,
        "cifar10: {dir}/batches.meta: 'label_names' is not a list of 10 names",
    ),
]


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [case[1:] for case in BAD_DIRECTORIES],
    ids=[case[0] for case in BAD_DIRECTORIES],
)
def test_a_broken_directory_names_the_file_and_what_was_expected(
    cifar_dir: Callable[..., Path], formats: object, damage, error: type, message: str
) -> None:
    directory = cifar_dir()
    damage(directory, formats)
    with pytest.raises(error) as raised:
        load_dataset("cifar10", root=directory)
    assert type(raised.value) is error
    assert str(raised.value) == message.format(dir=directory)


def test_no_root_or_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("cifar10")
    assert str(raised.value) == (
        f"cifar10: root is required: the directory that holds {EXPECTED}; {HOW}"
    )
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset("cifar10", root=missing)
    assert str(raised.value) == (
        f"cifar10: {missing} is not a directory; expected {EXPECTED} there; {HOW}"
    )


def test_an_empty_parent_names_the_deeper_folder(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py lacks data_batch_1, "):
        load_dataset("cifar10", root=tmp_path)


def test_normalize_must_be_a_bool(cifar_dir: Callable[..., Path]) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("cifar10", root=cifar_dir(), normalize="yes")
    assert str(raised.value) == "cifar10: invalid normalize='yes'; expected True or False"
