"""Checkpoint files: atomic, checksummed, and loaded with ``weights_only=True``.

A file is a 64-byte header (magic, format version, payload length, SHA-256 of the payload) and
then the payload, written by ``torch.save``. A truncated file or a changed byte is a
:class:`CheckpointError` that says which and where; ``torch.load(weights_only=True)`` means a
file cannot run code even if its checksum was forged. RNG states are stored as tensors and
lists, which ``weights_only`` accepts.

``last.pt`` is replaced by rename only once the new file is complete and on disk, and the one
it replaces is kept as ``previous.pt``: if ``last.pt`` is damaged later, the run resumes from
``previous.pt`` (:func:`latest_checkpoint`). A damaged ``last.pt`` is never rotated into
``previous.pt`` (that would discard the last good checkpoint): the next save replaces it and
leaves ``previous.pt`` alone. Temporary files left by a save that was killed are removed by the
next save (and at resume, :func:`remove_stale_temporaries`). ``best.pt`` is never a fallback:
it holds another state (the best evaluation's), not the run's latest.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradkit._io import atomic_output

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "remove_stale_temporaries",
    "restore_rng_state",
    "save_checkpoint",
]

_MAGIC = b"GRADKIT-CHECKPOINT\n\0"  # 20 bytes
_VERSION = 1
_HEADER = struct.Struct("<20sIQ32s")  # magic, version, payload length, SHA-256: 64 bytes


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated, corrupted or not a gradkit checkpoint."""


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike[str], *, keep_previous: bool = False
) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    With ``keep_previous`` the file that ``path`` held is first renamed to
    ``previous.pt`` beside it, so a complete checkpoint exists at every instant; only when
    that file is itself a complete checkpoint (header and SHA-256 checked), since renaming a
    damaged one would destroy the good ``previous.pt``. Temporary files of an earlier save of
    ``path`` that was killed are removed first.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = _HEADER.pack(_MAGIC, _VERSION, len(payload), hashlib.sha256(payload).digest())
    target = Path(path)
    _remove_temporaries_of(target)
    with atomic_output(target) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(header)
            stream.write(payload)
        if keep_previous and target.exists() and _is_complete(target):
            os.replace(target, target.with_name("previous.pt"))
    return target


def _remove_temporaries_of(target: Path) -> None:
    """Remove the temporary files :func:`~gradkit._io.atomic_output` made for ``target``."""
    for temporary in target.parent.glob(f".{target.name}.*.tmp"):
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of checkpoint saves in ``directory`` that were killed.

    Only the one process that writes a run's checkpoints may call this, and not during a save.
    Returns the files removed.
    """
    found = list(Path(directory).glob(".*.pt.*.tmp"))
    for temporary in found:
        temporary.unlink(missing_ok=True)
    return found


def _is_complete(path: Path) -> bool:
    """Whether ``path`` is a checkpoint whose header and checksum are intact (no unpickling)."""
    try:
        _verified_payload(path, path.read_bytes())
    except (CheckpointError, OSError):
        return False
    return True


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
    payload = _verified_payload(path, data)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses anything that could run code
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded safely: {error}"
        ) from None


def _verified_payload(path: Path, data: bytes) -> memoryview:
    """The ``torch.save`` bytes of a checkpoint file's ``data``, once its checksum matches."""
    if len(data) < _HEADER.size or not data.startswith(_MAGIC):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a gradkit checkpoint (no gradkit header; "
            f"{len(data)} bytes)"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version}; this gradkit reads {_VERSION}"
        )
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or padded: its header promises {length} "
            f"bytes of payload, the file holds {len(payload)}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupted or was modified: its SHA-256 does not match "
            f"the one recorded when it was written"
        )
    return payload


def latest_checkpoint(
    directory: str | os.PathLike[str], *, report: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Load ``last.pt`` from ``directory``, or ``previous.pt`` when ``last.pt`` is damaged.

    ``report`` (e.g. ``print``) is told why a damaged ``last.pt`` was passed over. Raises
    :class:`CheckpointError` listing every reason when neither loads.
    """
    directory = Path(directory)
    problems = []
    for name in ("last.pt", "previous.pt"):
        path = directory / name
        if not path.exists():
            problems.append(f"{path} does not exist")
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
            if report is not None:
                report(f"gradkit: skipping {path}: {error}")
            continue
        return path, state
    if (directory / "best.pt").exists():
        problems.append(
            "best.pt is not used to resume (it holds the state of the best evaluation, not the "
            "latest); copy it to last.pt to resume from that state on purpose"
        )
    raise CheckpointError("no usable checkpoint in " + str(directory) + ": " + "; ".join(problems))


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python RNG states, as tensors, lists and numbers."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the RNGs to a state from :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
