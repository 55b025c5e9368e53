"""The on-disk cache of generated datasets: where it lives, and checked ``.npz`` files in it."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gradkit._io import atomic_output


def cache_dir() -> Path:
    """The directory gradkit caches generated data in.

    ``$GRADKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/gradkit``, else ``~/.cache/gradkit``.
    A relative ``$XDG_CACHE_HOME`` is ignored, as the XDG base-directory specification asks.
    """
    explicit = os.environ.get("GRADKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "gradkit"
    return Path.home() / ".cache" / "gradkit"


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically."""
    with atomic_output(path) as temporary, open(temporary, "wb") as stream:
        # A file object, not a name: np.savez would append ".npz" to the temporary name.
        np.savez(stream, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray] | str:
    """The arrays in the ``.npz`` file at ``path``, or why they could not be read.

    Every member is read in full, so the zip CRC of each one is checked: a truncated or
    altered file is reported here rather than used.
    """
    try:
        # Our own handle: np.load leaks the one it opens when the file is not a zip archive.
        with open(path, "rb") as stream:
            if stream.read(4) != b"PK\x03\x04":  # else np.load would try it as a pickle
                return "not an .npz (zip) archive"
            stream.seek(0)
            with np.load(stream, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        return f"unreadable ({type(error).__name__}: {error})"
