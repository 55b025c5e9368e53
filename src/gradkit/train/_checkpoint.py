"""Checkpoint files: atomic, checksummed, and loaded with ``weights_only=True``.

A file is what ``torch.save`` writes (a zip archive), so plain
``torch.load(path, weights_only=True)`` reads it too, with gradkit's integrity record as the
archive's comment: zip readers (torch's included) find the archive from its end and skip the
comment. The comment is one line of ASCII, :data:`_TRAILER_SIZE` bytes::

    gradkit-checkpoint 2 <length: 16 hex digits> <SHA-256: 64 hex digits>

where ``length`` counts the bytes before the comment and the SHA-256 is theirs (hex digits, so
the comment can never hold the zip end signature a reader searches for). A truncated file or a
changed byte is a :class:`CheckpointError` that says which; ``torch.load(weights_only=True)``
means a file cannot run code even if its checksum was forged. RNG states are stored as tensors
and lists, which ``weights_only`` accepts. Files of format 1 (a 64-byte header before the
``torch.save`` bytes, which plain ``torch.load`` cannot read) still load.

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

_MAGIC = b"GRADKIT-CHECKPOINT\n\0"  # format 1: 20 bytes
_HEADER = struct.Struct("<20sIQ32s")  # format 1: magic, version, payload length, SHA-256
_TRAILER_START = b"gradkit-checkpoint 2 "  # format 2: the zip comment
_TRAILER_SIZE = len(_TRAILER_START) + 16 + 1 + 64 + 1
_ZIP_START = b"PK\x03\x04"
_ZIP_END_SIZE = 22  # the zip end record without comment; its last 2 bytes: the comment size


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated, corrupted or not a gradkit checkpoint."""


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike[str], *, keep_previous: bool = False
) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    With ``keep_previous`` the file that ``path`` held is first renamed to
    ``previous.pt`` beside it, so a complete checkpoint exists at every instant; only when
    that file is itself a complete checkpoint (length and SHA-256 checked), since renaming a
    damaged one would destroy the good ``previous.pt``. Temporary files of an earlier save of
    ``path`` that was killed are removed first.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = bytearray(buffer.getbuffer())
    end = len(body) - _ZIP_END_SIZE
    if end < 0 or body[end : end + 4] != b"PK\x05\x06" or body[-2:] != b"\0\0":
        raise CheckpointError("torch.save wrote no zip archive without a comment; cannot save")
    body[-2:] = struct.pack("<H", _TRAILER_SIZE)  # the comment that follows
    trailer = b"%s%016x %s\n" % (
        _TRAILER_START,
        len(body),
        hashlib.sha256(body).hexdigest().encode(),
    )
    target = Path(path)
    _remove_temporaries_of(target)
    with atomic_output(target) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(body)
            stream.write(trailer)
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
    """Whether ``path`` is a checkpoint whose length and checksum are intact (no unpickling)."""
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
    name = str(path)
    if data.startswith(_MAGIC):
        return _verified_format_1(name, data)
    start = data.rfind(_TRAILER_START, max(0, len(data) - 65536))
    if start < 0:
        if not data.startswith(_ZIP_START):
            raise CheckpointError(
                f"checkpoint {name!r} is not a gradkit checkpoint (neither gradkit's record at "
                f"its end nor its old header; {len(data)} bytes)"
            )
        end = data[-_ZIP_END_SIZE:]
        if end.startswith(b"PK\x05\x06") and end.endswith(b"\0\0"):
            raise CheckpointError(
                f"checkpoint {name!r} is not a gradkit checkpoint: a complete zip archive (a "
                f"plain torch.save file?) without gradkit's checksum; read it with torch.load"
            )
        raise CheckpointError(
            f"checkpoint {name!r} is truncated (or not a gradkit checkpoint): it ends after "
            f"{len(data)} bytes without the record of length and SHA-256 that ends every "
            f"gradkit checkpoint"
        )
    fields = data[start + len(_TRAILER_START) : start + _TRAILER_SIZE].split()
    try:
        length, digest = int(fields[0], 16), bytes.fromhex(fields[1].decode("ascii"))
    except (IndexError, ValueError):
        raise CheckpointError(
            f"checkpoint {name!r} is truncated or corrupted: its record of length and SHA-256 "
            f"(at byte {start}) is cut short or unreadable"
        ) from None
    if length != start or start + _TRAILER_SIZE != len(data):
        raise CheckpointError(
            f"checkpoint {name!r} is truncated or padded: its record promises "
            f"{length + _TRAILER_SIZE} bytes, the file holds {len(data)}"
        )
    if hashlib.sha256(memoryview(data)[:start]).digest() != digest:
        raise CheckpointError(
            f"checkpoint {name!r} is corrupted or was modified: its SHA-256 does not match "
            f"the one recorded when it was written"
        )
    return memoryview(data)


def _verified_format_1(name: str, data: bytes) -> memoryview:
    """The payload of a format-1 file: a 64-byte header, then the ``torch.save`` bytes."""
    if len(data) < _HEADER.size:
        raise CheckpointError(
            f"checkpoint {name!r} is truncated: {len(data)} bytes, less than its header"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != 1:
        raise CheckpointError(
            f"checkpoint {name!r} has format version {version}; this gradkit reads 1 and 2"
        )
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(
            f"checkpoint {name!r} is truncated or padded: its header promises {length} "
            f"bytes of payload, the file holds {len(payload)}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {name!r} is corrupted or was modified: its SHA-256 does not match "
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
