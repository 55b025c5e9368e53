"""Finding a data set's files in a directory the user gave, with errors that say how to get them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def find_files(
    owner: str,
    root: str | Path | None,
    names: Sequence[str],
    *,
    subdirectory: str,
    suffixes: Sequence[str] = ("",),
    expected: str,
    how: str,
) -> list[Path]:
    """The path of each of ``names`` in ``root`` or ``root / subdirectory``.

    Each name may carry one of ``suffixes`` (the first that exists wins). The first of the two
    directories that holds every file is used; otherwise a ``FileNotFoundError`` lists the
    missing files, ``expected`` (what belongs there) and ``how`` (how to obtain it).
    """
    if root is None:
        raise ValueError(f"{owner}: root is required: the directory that holds {expected}; {how}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(
            f"{owner}: {base} is not a directory; expected {expected} there; {how}"
        )
    candidates = [base / subdirectory, base] if (base / subdirectory).is_dir() else [base]
    missing: list[str] = []
    for directory in reversed(candidates):  # ``base`` first; the error names the deepest one
        found, missing = [], []
        for name in names:
            paths = [directory / f"{name}{suffix}" for suffix in suffixes]
            existing = [path for path in paths if path.is_file()]
            if existing:
                found.append(existing[0])
            else:
                missing.append(name + "".join(f"[{suffix}]" for suffix in suffixes if suffix))
        if not missing:
            return found
    raise FileNotFoundError(
        f"{owner}: {directory} lacks {', '.join(missing)}; expected {expected}; {how}"
    )


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``uint8`` images ``(n, channels, h, w)``,
    in units of the ``[0, 1]`` scale (pixel / 255).

    Exact: the moments come from integer histograms, so 50,000 images cost no float
    round-off and no float copy of the data.
    """
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(mean / 255.0)
        stds.append(np.sqrt(variance) / 255.0)
    return np.array(means), np.array(stds)


def to_unit_float(
    owner: str, images: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """``uint8`` images as ``float32`` in ``[0, 1]``, then standardized per channel by
    ``statistics`` (mean, std) when given."""
    result = images.astype(np.float32)
    result /= 255.0
    if statistics is not None:
        mean, std = statistics
        if not (std > 0).all():
            raise ValueError(
                f"{owner}: cannot normalize: the training images are constant in channel "
                f"{int(np.argmin(std))}"
            )
        shape = (1, -1, 1, 1)
        result -= mean.astype(np.float32).reshape(shape)
        result /= std.astype(np.float32).reshape(shape)
    return result
