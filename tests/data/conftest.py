"""Fixtures for the data tests: an isolated cache, and small files in the real formats."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CIFAR_TRAIN = [f"data_batch_{number}" for number in range(1, 6)]
CIFAR_NAMES = [
    b"airplane", b"automobile", b"bird", b"cat", b"deer",
    b"dog", b"frog", b"horse", b"ship", b"truck",
]  # fmt: skip
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches under its own temporary directory, never the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADKIT_CACHE", str(cache))
    return cache


class Python2Pickler(pickle._Pickler):
    """Pickles str and bytes as Python 2 strings (BINSTRING), as cPickle wrote the originals."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_string
    dispatch[bytes] = save_string


def write_pickle(path: Path, content: object, protocol: int | str = "python2") -> None:
    """Pickle ``content``; ``"python2"`` writes what the CIFAR-10 python batches are: Python 2
    protocol-2 pickles whose strings are byte strings and whose arrays name numpy.core."""
    if protocol != "python2":
        path.write_bytes(pickle.dumps(content, protocol=protocol))
        return
    stream = io.BytesIO()
    Python2Pickler(stream, protocol=2).dump(content)
    path.write_bytes(
        stream.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    )


def cifar_batch(rng: np.random.Generator, size: int) -> dict[bytes, object]:
    return {
        b"batch_label": b"training batch",
        b"labels": [int(label) for label in rng.integers(0, 10, size)],
        b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
        b"filenames": [f"image_{index}.png".encode() for index in range(size)],
    }


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Callable[..., Path]:
    """``make(directory, per_batch=4, protocol="python2")``: a small CIFAR-10 python folder."""

    def make(
        directory: Path | None = None, per_batch: int = 4, protocol: int | str = "python2"
    ) -> Path:
        directory = tmp_path / "cifar-10-batches-py" if directory is None else directory
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for name in [*CIFAR_TRAIN, "test_batch"]:
            write_pickle(directory / name, cifar_batch(rng, per_batch), protocol)
        meta = {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
        write_pickle(directory / "batches.meta", meta, protocol)
        return directory

    return make


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` (uint8) in the IDX format, big-endian header first."""
    magic = 0x00000800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    content = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def mnist_arrays(train: int = 6, test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
    }


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """``make(directory, compress=())``: write the four IDX files; names in ``compress`` gzip."""

    def make(
        directory: Path | None = None, compress: tuple[str, ...] = ()
    ) -> tuple[Path, dict[str, np.ndarray]]:
        directory = tmp_path / "mnist" if directory is None else directory
        directory.mkdir(parents=True, exist_ok=True)
        arrays = mnist_arrays()
        for key, name in MNIST_FILES.items():
            write_idx(directory / name, arrays[key], compress=key in compress)
        return directory, arrays

    return make


@pytest.fixture
def formats() -> object:
    """The file writers, for tests that build broken files of their own."""

    class Formats:
        write_pickle = staticmethod(write_pickle)
        cifar_batch = staticmethod(cifar_batch)
        idx_bytes = staticmethod(idx_bytes)
        write_idx = staticmethod(write_idx)
        mnist_files = MNIST_FILES

    return Formats
