"""MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", arXiv 2011.14439).

The samples come from the generator of the ``mnist1d`` package (``mnist1d.data.make_dataset``),
run locally: nothing is downloaded. The result is cached as an ``.npz`` file under
:func:`gradkit.data.cache_dir` (or ``root``), named by a hash of the generation arguments and
the ``mnist1d`` version, written atomically; a file that cannot be read back intact is
regenerated.

The frozen set. At its default arguments (5,000 samples, ``train_split=0.8``, ``seed=42``, the
defaults of ``mnist1d.data.get_dataset_args()``) the generator gives the paper's frozen set,
``mnist1d_data.pkl``: 4,000 training and 1,000 test signals of length 40. Verified for
``mnist1d`` 0.0.2.post1 (numpy 2.4, scipy 1.17) against a JSON conversion of that pickle
(github.com/mdcfrancis/gomnist1d, ``data/mnist1d.json``): all 1,000 test labels, the last
training labels and the time axis ``t`` are identical, and the sampled signal values (training
rows 0, 19 and 3999, test rows 0 and 1) agree to one float64 ulp, identical once cast to
float32. ``tests/data/test_mnist1d.py`` pins a sample of those frozen values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import random
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gradkit.data._cache import cache_dir, read_arrays, write_arrays
from gradkit.data._checks import (
    check_bool,
    check_integer,
    check_number,
    check_open_fraction,
)
from gradkit.data._splits import Splits, tensor_dataset

__all__ = ["DEFAULTS", "cache_path", "load_mnist1d"]

_OWNER = "mnist1d"
_CLASSES = 10
_FORMAT = 1  # bump when the cached file's layout changes
_logger = logging.getLogger("gradkit.data")

DEFAULTS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "num_samples": 5000,
        "train_split": 0.8,
        "template_len": 12,
        "padding": (36, 60),
        "scale_coeff": 0.4,
        "max_translation": 48,
        "corr_noise_scale": 0.25,
        "iid_noise_scale": 0.02,
        "shear_scale": 0.75,
        "shuffle_seq": False,
        "final_seq_length": 40,
        "seed": 42,
    }
)
"""The generator's defaults (``mnist1d.data.get_dataset_args()`` without the download URL)."""

_INSTALL = "gradkit needs the mnist1d package to generate MNIST-1D: pip install mnist1d"


def _padding(value: Any) -> tuple[int, int]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    ok = ok and all(
        isinstance(end, numbers.Integral) and not isinstance(end, bool) for end in value
    )
    if not (ok and 0 <= value[0] <= value[1]):
        raise ValueError(
            f"{_OWNER}: invalid padding={value!r}; expected two integers (low, high) "
            "with 0 <= low <= high"
        )
    return int(value[0]), int(value[1])


def _arguments(options: dict[str, Any]) -> dict[str, Any]:
    """Validated generator arguments in canonical types (so 1 and 1.0 share a cache file)."""
    num_samples = options["num_samples"]
    check_integer(_OWNER, "num_samples", num_samples, 10)
    if num_samples % _CLASSES:
        raise ValueError(
            f"{_OWNER}: invalid num_samples={num_samples!r}; expected a multiple of 10 "
            "(the generator makes num_samples // 10 signals per class)"
        )
    train_split = options["train_split"]
    check_open_fraction(_OWNER, "train_split", train_split)
    if not 0 < int(num_samples * train_split) < num_samples:
        raise ValueError(
            f"{_OWNER}: train_split={train_split!r} of num_samples={num_samples} leaves an "
            "empty split"
        )
    seed = options["seed"]
    check_integer(_OWNER, "seed", seed, 0)
    if seed >= 2**32:
        raise ValueError(f"{_OWNER}: invalid seed={seed!r}; expected an integer < 2**32")
    for name in ("template_len", "max_translation", "final_seq_length"):
        check_integer(_OWNER, name, options[name], 1)
    for name in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        check_number(_OWNER, name, options[name])
    check_bool(_OWNER, "shuffle_seq", options["shuffle_seq"])
    arguments: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        value = options[name]
        if name == "padding":
            arguments[name] = list(_padding(value))
        elif isinstance(default, bool):
            arguments[name] = bool(value)
        elif isinstance(default, int):
            arguments[name] = int(value)
        else:
            arguments[name] = float(value)
    return arguments


def _generator_version() -> str:
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError as error:
        raise ImportError(_INSTALL) from error


def _key(arguments: dict[str, Any], version: str) -> str:
    """The canonical text of what determines the samples: arguments, generator, file format."""
    return json.dumps(
        {"arguments": arguments, "mnist1d": version, "format": _FORMAT}, sort_keys=True
    )


def cache_path(directory: Path, key: str) -> Path:
    """The cache file for ``key`` in ``directory``."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return directory / f"mnist1d-{digest}.npz"


def _generate(arguments: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset``; the global RNGs it reseeds are restored after."""
    try:
        from mnist1d.data import make_dataset
        from mnist1d.utils import ObjectView
    except ImportError as error:
        raise ImportError(_INSTALL) from error
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(ObjectView(dict(arguments)))
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {
        "x_train": np.asarray(data["x"], dtype=np.float32),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _problem(arrays: dict[str, np.ndarray], arguments: dict[str, Any], key: str) -> str | None:
    """Why ``arrays`` (read from a cache file) are not the dataset for ``key``, or ``None``."""
    stored = arrays.get("key")
    if stored is None or stored.shape != () or str(stored) != key:
        return "it was written for other arguments"
    train = int(arguments["num_samples"] * arguments["train_split"])
    sizes = {"train": train, "test": arguments["num_samples"] - train}
    length = arguments["final_seq_length"]
    for split, size in sizes.items():
        inputs, labels = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if inputs is None or labels is None:
            return f"it has no {split} split"
        if inputs.dtype != np.float32 or inputs.shape != (size, length):
            return f"its {split} inputs are {inputs.dtype} {inputs.shape}"
        if labels.dtype != np.int64 or labels.shape != (size,):
            return f"its {split} labels are {labels.dtype} {labels.shape}"
        if not np.isfinite(inputs).all() or labels.min() < 0 or labels.max() >= _CLASSES:
            return f"its {split} split holds non-finite inputs or labels outside [0, 10)"
    return None


def load_mnist1d(
    root: str | Path | None = None,
    *,
    num_samples: int = DEFAULTS["num_samples"],
    train_split: float = DEFAULTS["train_split"],
    seed: int = DEFAULTS["seed"],
    shuffle_seq: bool = DEFAULTS["shuffle_seq"],
    template_len: int = DEFAULTS["template_len"],
    padding: tuple[int, int] = DEFAULTS["padding"],
    scale_coeff: float = DEFAULTS["scale_coeff"],
    max_translation: int = DEFAULTS["max_translation"],
    corr_noise_scale: float = DEFAULTS["corr_noise_scale"],
    iid_noise_scale: float = DEFAULTS["iid_noise_scale"],
    shear_scale: float = DEFAULTS["shear_scale"],
    final_seq_length: int = DEFAULTS["final_seq_length"],
) -> Splits:
    """MNIST-1D (arXiv 2011.14439), generated locally and cached.

    The defaults give the paper's frozen set: 4,000 training and 1,000 test signals of length
    40 (see the module docstring for what was verified). The inputs are the generator's
    signals cast to ``float32``, as the paper's models consume them; the labels are the
    digits 0-9. The options are the generator's own arguments: ``num_samples`` (a multiple of
    10; tens of thousands for large-batch studies) is split ``train_split`` : rest into train
    and test after the generator's shuffle, so a different ``num_samples`` gives different
    samples. Generation takes about half a millisecond per sample on one core (some 25 s for
    50,000), once; later loads read the cache file in milliseconds.

    Args:
        root: the directory to cache the generated file in; ``None`` for
            :func:`gradkit.data.cache_dir` ``/ "mnist1d"``.
        num_samples, train_split, seed, shuffle_seq, template_len, padding, scale_coeff,
            max_translation, corr_noise_scale, iid_noise_scale, shear_scale,
            final_seq_length: ``mnist1d.data.make_dataset``'s arguments.
    """
    options = dict(locals())  # the keyword options above, by name
    del options["root"]
    arguments = _arguments(options)
    key = _key(arguments, _generator_version())
    directory = cache_dir() / "mnist1d" if root is None else Path(root).expanduser()
    path = cache_path(directory, key)

    cached = read_arrays(path)
    problem = cached if isinstance(cached, str) else _problem(cached, arguments, key)
    if problem is None and not isinstance(cached, str):
        arrays = cached
    else:
        if problem != "missing":
            _logger.warning("mnist1d: regenerating the cache file %s: %s", path, problem)
        arrays = _generate(arguments)
        try:
            write_arrays(path, {**arrays, "key": np.array(key)})
        except OSError as error:
            _logger.warning("mnist1d: could not cache the generated data at %s: %s", path, error)
    return Splits(
        name="mnist1d",
        train=tensor_dataset(arrays["x_train"], arrays["y_train"]),
        test=tensor_dataset(arrays["x_test"], arrays["y_test"]),
        input_shape=(arguments["final_seq_length"],),
        classes=_CLASSES,
        class_names=tuple(str(digit) for digit in range(_CLASSES)),
    )
