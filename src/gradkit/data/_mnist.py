"""MNIST (LeCun et al. 1998, "Gradient-based learning applied to document recognition") read
from the four IDX files in a local directory, plain or gzip-compressed; nothing is downloaded.

IDX: a big-endian header, the magic number ``0x00000803`` (unsigned bytes, 3 dimensions) for
images or ``0x00000801`` (unsigned bytes, 1 dimension) for labels, then one 32-bit size per
dimension, then the data, row-major.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from gradkit.data._checks import check_bool
from gradkit.data._files import channel_statistics, find_files, to_unit_float
from gradkit.data._splits import Splits, tensor_dataset

__all__ = ["load_mnist"]

_OWNER = "mnist"
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_SIDE = 28
_CLASSES = 10
_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
EXPECTED = (
    "the MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or gzip-compressed (.gz) "
    "(in it or in its MNIST/raw folder)"
)
HOW = (
    "download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ "
    "(the mirror torchvision uses of http://yann.lecun.com/exdb/mnist/) into it; "
    "gradkit downloads nothing"
)


def _content(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"{_OWNER}: {path} is truncated or is not a gzip file; expected a gzip-compressed "
            "IDX file"
        ) from error


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The ``uint8`` array in the IDX file at ``path``, whose magic number must be ``magic``."""
    content = _content(path)
    dimensions = magic & 0xFF
    header = 4 + 4 * dimensions
    found = int.from_bytes(content[:4], "big")
    if len(content) >= 4 and found != magic:
        what = "images" if magic == _IMAGES_MAGIC else "labels"
        raise ValueError(
            f"{_OWNER}: {path} has magic number {found:#010x}; expected {magic:#010x} "
            f"(IDX {what}: unsigned bytes, {dimensions} dimension{'s' * (dimensions > 1)})"
        )
    if len(content) < header:
        raise ValueError(
            f"{_OWNER}: {path} is truncated: {len(content)} bytes, shorter than the "
            f"{header}-byte IDX header"
        )
    shape = tuple(
        int.from_bytes(content[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(dimensions)
    )
    size, data = math.prod(shape), len(content) - header
    if data != size:
        state = "is truncated" if data < size else "is too long"
        raise ValueError(
            f"{_OWNER}: {path} {state}: its header gives shape {shape}, {size} bytes of data; "
            f"found {data}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC).astype(np.int64)
    if images.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(
            f"{_OWNER}: {images_path} holds {images.shape[1]}x{images.shape[2]} images; "
            f"expected {_SIDE}x{_SIDE}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{_OWNER}: {images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels"
        )
    if labels.size and labels.max() >= _CLASSES:
        raise ValueError(f"{_OWNER}: {labels_path} holds labels outside 0-9")
    return images[:, None], labels


def load_mnist(root: str | Path | None = None, *, normalize: bool = False) -> Splits:
    """MNIST from the IDX files in ``root``: 60,000 training and 10,000 test images.

    Inputs are ``float32`` ``(1, 28, 28)`` in ``[0, 1]``; with ``normalize=True`` they are
    standardized by the training split's mean and standard deviation, computed here.

    Args:
        root: the directory that holds the four IDX files (plain or ``.gz``), or the root
            that torchvision writes them under (``MNIST/raw`` is looked in too).
        normalize: standardize with the training split's statistics.
    """
    check_bool(_OWNER, "normalize", normalize)
    paths = find_files(
        _OWNER,
        root,
        _NAMES,
        subdirectory="MNIST/raw",
        suffixes=("", ".gz"),
        expected=EXPECTED,
        how=HOW,
    )
    train_images, train_labels = _read_split(paths[0], paths[1])
    test_images, test_labels = _read_split(paths[2], paths[3])
    statistics = channel_statistics(train_images) if normalize else None
    return Splits(
        name=_OWNER,
        train=tensor_dataset(to_unit_float(_OWNER, train_images, statistics), train_labels),
        test=tensor_dataset(to_unit_float(_OWNER, test_images, statistics), test_labels),
        input_shape=(1, _SIDE, _SIDE),
        classes=_CLASSES,
        class_names=tuple(str(digit) for digit in range(_CLASSES)),
    )
