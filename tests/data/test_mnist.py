"""MNIST from its IDX files, plain or gzip-compressed: the format, and every broken file."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gradkit.data import load_dataset

HOW = (
    "download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ "
    "(the mirror torchvision uses of http://yann.lecun.com/exdb/mnist/) into it; "
    "gradkit downloads nothing"
)
EXPECTED = (
    "the MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or gzip-compressed (.gz) "
    "(in it or in its MNIST/raw folder)"
)
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    "compress",
    [(), ("train_images", "train_labels", "test_images", "test_labels"), ("test_labels",)],
    ids=["plain", "gz", "mixed"],
)
def test_reads_the_idx_files(mnist_dir: Callable, compress: tuple[str, ...]) -> None:
    directory, arrays = mnist_dir(compress=compress)
    splits = load_dataset("mnist", root=directory)
    assert splits.name == "mnist" and splits.input_shape == (1, 28, 28)
    assert splits.classes == 10
    for split in ("train", "test"):
        inputs, labels = getattr(splits, split).tensors
        images = torch.from_numpy(arrays[f"{split}_images"])
        assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
        assert torch.equal(inputs, images[:, None].float() / 255)
        assert labels.tolist() == arrays[f"{split}_labels"].tolist()


def test_the_torchvision_layout_works(mnist_dir: Callable, tmp_path: Path) -> None:
    mnist_dir(tmp_path / "MNIST" / "raw", compress=("train_images",))
    assert len(load_dataset("mnist", root=tmp_path).train) == 6


def test_plain_files_win_over_gz(mnist_dir: Callable, formats: object) -> None:
    directory, arrays = mnist_dir()
    broken = directory / f"{TRAIN_IMAGES}.gz"
    broken.write_bytes(b"not gzip")  # a stale download next to the unpacked file
    assert torch.equal(
        load_dataset("mnist", root=directory).train.tensors[0][:, 0],
        torch.from_numpy(arrays["train_images"]).float() / 255,
    )


def test_normalize_uses_the_training_statistics(mnist_dir: Callable) -> None:
    directory, arrays = mnist_dir()
    normalized = load_dataset("mnist", root=directory, normalize=True)
    train = arrays["train_images"].astype(np.float64) / 255
    mean, std = train.mean(), train.std()
    for split in ("train", "test"):
        expected = (arrays[f"{split}_images"][:, None].astype(np.float64) / 255 - mean) / std
        np.testing.assert_allclose(getattr(normalized, split).tensors[0].numpy(), expected,
                                   atol=1e-5, rtol=0)  # fmt: skip


def test_normalizing_constant_images_fails(mnist_dir: Callable, formats: object) -> None:
    directory, _ = mnist_dir()
    formats.write_idx(directory / TRAIN_IMAGES, np.full((6, 28, 28), 7, dtype=np.uint8))
    with pytest.raises(ValueError) as raised:
        load_dataset("mnist", root=directory, normalize=True)
    assert str(raised.value) == (
        "mnist: cannot normalize: the training images are constant in channel 0"
    )


def _write(name: str, content: Callable[[object], bytes]) -> Callable[[Path, object], None]:
    def apply(directory: Path, formats: object) -> None:
        (directory / name).write_bytes(content(formats))

    return apply


def _images(formats: object, shape: tuple[int, ...] = (6, 28, 28), **kwargs: object) -> bytes:
    return formats.idx_bytes(np.zeros(shape, dtype=np.uint8), **kwargs)


def _labels(formats: object, values: list[int], **kwargs: object) -> bytes:
    return formats.idx_bytes(np.array(values, dtype=np.uint8), **kwargs)


def _replace_with_gz(name: str, content: Callable[[bytes], bytes]) -> Callable:
    def apply(directory: Path, formats: object) -> None:
        plain = directory / name
        (directory / f"{name}.gz").write_bytes(content(gzip.compress(plain.read_bytes())))
        plain.unlink()

    return apply


BAD_FILES = [
    (
        "missing one",
        lambda directory, formats: (directory / "t10k-labels-idx1-ubyte").unlink(),
        FileNotFoundError,
        "mnist: {dir} lacks t10k-labels-idx1-ubyte[.gz]; expected " + EXPECTED + "; " + HOW,
    ),
    (
        "missing two",
        lambda directory, formats: [(directory / name).unlink()
                                    for name in (TRAIN_IMAGES, "t10k-images-idx3-ubyte")],
        FileNotFoundError,
        "mnist: {dir} lacks train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]; "
        "expected " + EXPECTED + "; " + HOW,
    ),
    (
        "labels file as images",
        _write(TRAIN_IMAGES, lambda f: _labels(f, [1, 2, 3])),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte has magic number 0x00000801; expected "
        "0x00000803 (IDX images: unsigned bytes, 3 dimensions)",
    ),
    (
        "images file as labels",
        _write(TRAIN_LABELS, lambda f: _images(f)),
        ValueError,
        "mnist: {dir}/train-labels-idx1-ubyte has magic number 0x00000803; expected "
        "0x00000801 (IDX labels: unsigned bytes, 1 dimension)",
    ),
    (
        "float images",
        _write(TRAIN_IMAGES, lambda f: _images(f, magic=0x00000D03)),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte has magic number 0x00000d03; expected "
        "0x00000803 (IDX images: unsigned bytes, 3 dimensions)",
    ),
    (
        "truncated data",
        _write(TRAIN_IMAGES, lambda f: _images(f)[:-100]),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte is truncated: its header gives shape "
        "(6, 28, 28), 4704 bytes of data; found 4604",
    ),
    (
        "trailing bytes",
        _write(TRAIN_LABELS, lambda f: _labels(f, [1] * 6) + b"\x00\x00"),
        ValueError,
        "mnist: {dir}/train-labels-idx1-ubyte is too long: its header gives shape (6,), "
        "6 bytes of data; found 8",
    ),
    (
        "truncated header",
        _write(TRAIN_IMAGES, lambda f: _images(f)[:10]),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte is truncated: 10 bytes, shorter than the "
        "16-byte IDX header",
    ),
    (
        "empty",
        _write(TRAIN_LABELS, lambda f: b""),
        ValueError,
        "mnist: {dir}/train-labels-idx1-ubyte is truncated: 0 bytes, shorter than the "
        "8-byte IDX header",
    ),
    (
        "truncated gz",
        _replace_with_gz(TRAIN_IMAGES, lambda content: content[: len(content) // 2]),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte.gz is truncated or is not a gzip file; "
        "expected a gzip-compressed IDX file",
    ),
    (
        "not gzip",
        _replace_with_gz(TRAIN_LABELS, lambda content: b"plain text, not gzip"),
        ValueError,
        "mnist: {dir}/train-labels-idx1-ubyte.gz is truncated or is not a gzip file; "
        "expected a gzip-compressed IDX file",
    ),
    (
        "gz of a truncated file",
        _replace_with_gz(TRAIN_LABELS, lambda content: gzip.compress(
            gzip.decompress(content)[:-1])),
        ValueError,
        "mnist: {dir}/train-labels-idx1-ubyte.gz is truncated: its header gives shape (6,), "
        "6 bytes of data; found 5",
    ),
    (
        "27 rows",
        _write(TRAIN_IMAGES, lambda f: _images(f, (6, 27, 28))),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte holds 27x28 images; expected 28x28",
    ),
    (
        "count mismatch",
        _write(TRAIN_LABELS, lambda f: _labels(f, [1] * 5)),
        ValueError,
        "mnist: {dir}/train-images-idx3-ubyte holds 6 images but "
        "{dir}/train-labels-idx1-ubyte holds 5 labels",
    ),
    (
        "label 10",
        _write("t10k-labels-idx1-ubyte", lambda f: _labels(f, [1, 10, 2])),
        ValueError,
        "mnist: {dir}/t10k-labels-idx1-ubyte holds labels outside 0-9",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_a_broken_file_names_the_path_and_what_was_expected(
    mnist_dir: Callable, formats: object, damage, error: type, message: str
) -> None:
    directory, _ = mnist_dir()
    damage(directory, formats)
    with pytest.raises(error) as raised:
        load_dataset("mnist", root=directory)
    assert type(raised.value) is error
    assert str(raised.value) == message.format(dir=directory)


def test_no_root_or_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("mnist", root=None)
    assert (
        str(raised.value) == f"mnist: root is required: the directory that holds {EXPECTED}; {HOW}"
    )
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset("mnist", root=tmp_path / "absent")
    assert str(raised.value) == (
        f"mnist: {tmp_path / 'absent'} is not a directory; expected {EXPECTED} there; {HOW}"
    )
