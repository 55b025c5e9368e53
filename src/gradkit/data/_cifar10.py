"""CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images") read from
the python version's pickled batches in a local directory; nothing is downloaded.

The batches are unpickled with a restricted unpickler that builds only dicts, lists, strings,
numbers and numpy arrays: a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gradkit.data._checks import check_bool
from gradkit.data._files import channel_statistics, find_files, to_unit_float
from gradkit.data._splits import Splits, tensor_dataset

__all__ = ["load_cifar10"]

_OWNER = "cifar10"
_TRAIN = tuple(f"data_batch_{number}" for number in range(1, 6))
_TEST = "test_batch"
_META = "batches.meta"
_CLASSES = 10
_PIXELS = 3 * 32 * 32
EXPECTED = (
    "the CIFAR-10 python batches data_batch_1 to data_batch_5, test_batch and batches.meta "
    "(in it or in its cifar-10-batches-py folder)"
)
HOW = (
    "download the python version (cifar-10-python.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there with tar -xzf; "
    "gradkit downloads nothing"
)


def _latin1(text: str, encoding: str) -> bytes:
    # Python 3 pickles bytes with protocol 2 as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _core in ("numpy.core", "numpy._core"):
    # The functions numpy's own pickles name, under the module names of numpy 1 and 2
    # (_frombuffer: arrays pickled with protocol 5).
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = np.zeros(1).__reduce__()[0]
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = np.float64(0).__reduce__()[0]
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = np.zeros(1).__reduce_ex__(5)[0]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return allowed


def _unpickle(path: Path) -> dict[str, Any]:
    """The dict pickled at ``path``, keys as ``str`` (the originals are Python 2 pickles)."""
    try:
        with open(path, "rb") as stream:
            content = _RestrictedUnpickler(stream, encoding="bytes").load()
    except Exception as error:  # every unpickling failure means the same to the user
        raise ValueError(
            f"{_OWNER}: {path} is truncated or is not a CIFAR-10 python batch "
            f"(a pickled dict); {HOW}"
        ) from error
    if not isinstance(content, dict):
        raise ValueError(
            f"{_OWNER}: {path} holds a pickled {type(content).__name__}; expected a dict"
        )
    return {
        key.decode("latin1") if isinstance(key, bytes) else key: value
        for key, value in content.items()
    }


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` of one batch file."""
    batch = _unpickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _PIXELS
    ):
        found = (
            f"a {data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise ValueError(
            f"{_OWNER}: {path}: 'data' is {found}; expected a uint8 array of shape (n, 3072)"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{_OWNER}: {path}: 'labels' is not a list of {data.shape[0]} integers, one per image"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= _CLASSES):
        raise ValueError(f"{_OWNER}: {path}: 'labels' holds values outside 0-9")
    # Each row holds the red, green and blue 32x32 planes, one after the other.
    return data.reshape(-1, 3, 32, 32), labels


def _read_names(path: Path) -> tuple[str, ...]:
    names = _unpickle(path).get("label_names")
    if not (
        isinstance(names, list)
        and len(names) == _CLASSES
        and all(isinstance(name, bytes | str) for name in names)
    ):
        raise ValueError(f"{_OWNER}: {path}: 'label_names' is not a list of 10 names")
    return tuple(name.decode() if isinstance(name, bytes) else name for name in names)


def load_cifar10(root: str | Path | None = None, *, normalize: bool = False) -> Splits:
    """CIFAR-10 from the python batches in ``root``: 50,000 training and 10,000 test images.

    Inputs are ``float32`` ``(3, 32, 32)`` in ``[0, 1]``; with ``normalize=True`` each channel
    is standardized by the mean and standard deviation of the training split, computed here
    (exactly, from the pixel histograms).

    Args:
        root: the directory that holds ``data_batch_1`` ... ``data_batch_5``, ``test_batch``
            and ``batches.meta``, or its parent (the folder ``cifar-10-batches-py`` that
            ``cifar-10-python.tar.gz`` unpacks to is looked in too).
        normalize: standardize each channel with the training split's statistics.
    """
    check_bool(_OWNER, "normalize", normalize)
    paths = find_files(
        _OWNER,
        root,
        (*_TRAIN, _TEST, _META),
        subdirectory="cifar-10-batches-py",
        expected=EXPECTED,
        how=HOW,
    )
    train_batches = [_read_batch(path) for path in paths[: len(_TRAIN)]]
    train_images = np.concatenate([images for images, _ in train_batches])
    train_labels = np.concatenate([labels for _, labels in train_batches])
    test_images, test_labels = _read_batch(paths[len(_TRAIN)])
    class_names = _read_names(paths[-1])
    statistics = channel_statistics(train_images) if normalize else None
    return Splits(
        name=_OWNER,
        train=tensor_dataset(to_unit_float(_OWNER, train_images, statistics), train_labels),
        test=tensor_dataset(to_unit_float(_OWNER, test_images, statistics), test_labels),
        input_shape=(3, 32, 32),
        classes=_CLASSES,
        class_names=class_names,
    )
