"""Checkpoint files: exact round trip, clear errors for damaged files, the fallback to previous."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradkit.train import (
    CheckpointError,
    TrainingData,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    train,
)
from gradkit.train._checkpoint import (
    _HEADER,
    _MAGIC,
    _TRAILER_SIZE,
    capture_rng_state,
    remove_stale_temporaries,
    restore_rng_state,
)


def test_round_trip(tmp_path: Path) -> None:
    state = {"step": 3, "weights": torch.randn(4, 5), "nested": {"betas": (0.9, 0.99)}}
    path = save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["nested"] == {"betas": (0.9, 0.99)}
    assert torch.equal(loaded["weights"], state["weights"])


def test_rng_states_survive_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leave a cached gaussian in numpy's state
    path = save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def _written(tmp_path: Path) -> Path:
    return save_checkpoint({"weights": torch.arange(1000.0)}, tmp_path / "c.pt")


def _format_1(payload: bytes) -> bytes:
    """A file of checkpoint format 1 (gradkit before 0.2): a 64-byte header, then the payload."""
    return _HEADER.pack(_MAGIC, 1, len(payload), hashlib.sha256(payload).digest()) + payload


def test_plain_torch_load_reads_a_checkpoint(tmp_path: Path) -> None:
    state = {"step": 3, "weights": torch.randn(4, 5), "nested": {"betas": (0.9, 0.99)}}
    path = save_checkpoint(state, tmp_path / "c.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])
    assert torch.load(path, weights_only=True, mmap=True)["nested"] == {"betas": (0.9, 0.99)}
    assert zipfile.ZipFile(path).comment.startswith(b"gradkit-checkpoint 2 ")


def test_format_1_still_loads(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"step": 7, "weights": torch.arange(3.0)}, buffer)
    path = tmp_path / "old.pt"
    path.write_bytes(_format_1(buffer.getvalue()))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["weights"], torch.arange(3.0))
    path.write_bytes(path.read_bytes()[:-100])
    payload = len(buffer.getvalue())
    message = (
        f"checkpoint {str(path)!r} is truncated or padded: its header promises {payload} "
        f"bytes of payload, the file holds {payload - 100}"
    )
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [1, 50, 100, 5000])
def test_truncated(tmp_path: Path, cut: int) -> None:
    path = _written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(
        CheckpointError, match=f"checkpoint {re.escape(repr(str(path)))} is truncated"
    ):
        load_checkpoint(path)


def test_padded(tmp_path: Path) -> None:
    path = _written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data + b"\0" * 10)
    message = f"is truncated or padded: its record promises {len(data)} bytes, the file holds"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)


@pytest.mark.parametrize("where", [10, 600, -50])  # a tensor, the zip directory, the checksum
def test_tampered(tmp_path: Path, where: int) -> None:
    path = _written(tmp_path)
    data = bytearray(path.read_bytes())
    data[where] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupted or was modified: its SHA-256"):
        load_checkpoint(path)


def test_a_plain_torch_save_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.arange(3.0)}, path)
    with pytest.raises(CheckpointError, match=r"a complete zip archive \(a plain torch\.save file"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a gradkit checkpoint"),
        (b"hello", "is not a gradkit checkpoint"),
        (b"PK\x03\x04" + bytes(100), "is truncated (or not a gradkit checkpoint)"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


class _Exploit:
    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.target),))  # type: ignore[attr-defined]


def test_a_forged_checksum_still_cannot_run_code(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.target = str(target)  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    torch.save({"model": exploit}, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    payload = buffer.getvalue()
    path = tmp_path / "evil.pt"
    path.write_bytes(_format_1(payload))
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    # The same in format 2: a zip comment with a correct checksum.
    save_checkpoint({"step": 1}, path)  # a valid file, then the evil body with a forged record
    body = bytearray(payload)
    body[-2:] = struct.pack("<H", _TRAILER_SIZE)
    digest = hashlib.sha256(body).hexdigest()
    path.write_bytes(
        bytes(body) + b"gradkit-checkpoint 2 %016x %s\n" % (len(body), digest.encode())
    )
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not target.exists()


def test_keep_previous(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path, keep_previous=True)
    save_checkpoint({"step": 2}, path, keep_previous=True)
    assert load_checkpoint(path)["step"] == 2
    assert load_checkpoint(tmp_path / "previous.pt")["step"] == 1
    path.write_bytes(path.read_bytes()[:200])
    reasons: list[str] = []
    used, state = latest_checkpoint(tmp_path, report=reasons.append)
    assert used == tmp_path / "previous.pt" and state["step"] == 1
    assert "truncated" in reasons[0]
    (tmp_path / "previous.pt").unlink()
    with pytest.raises(CheckpointError, match="no usable checkpoint in"):
        latest_checkpoint(tmp_path)


def test_a_damaged_last_checkpoint_resumes_from_previous(
    data: TrainingData, make_config: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = train(make_config("train.steps=30", name="reference"), data=data)
    config = make_config("train.steps=30", name="damaged")
    damaged = train(config, data=data)
    last = damaged.run_dir / "checkpoints" / "last.pt"
    blob = bytearray(last.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    last.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="is corrupted or was modified"):
        load_checkpoint(last)
    resumed = train(config, data=data, run_dir=damaged.run_dir, resume=True)
    assert "skipping" in capsys.readouterr().err
    assert resumed.steps == 30
    expected = load_checkpoint(reference.run_dir / "checkpoints" / "last.pt")["model"]
    for name, value in load_checkpoint(last)["model"].items():
        assert torch.equal(value, expected[name]), name


class _KilledSave(BaseException):
    """Stands for SIGKILL: nothing after it runs (atomic_output's cleanup aside)."""


def _kill_before_last_pt_is_renamed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Make ``os.replace`` 'kill' the process at the rename of the new ``last.pt``."""
    replace, renames = os.replace, []

    def dying_replace(source: Any, target: Any) -> None:
        renames.append((Path(source).name, Path(target).name))
        if Path(source).name.startswith(".last.pt.") and Path(target).name == "last.pt":
            raise _KilledSave
        replace(source, target)

    monkeypatch.setattr(os, "replace", dying_replace)
    return renames


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_last_checkpoint_is_never_rotated_over_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path, keep_previous=True)
    save_checkpoint({"step": 2}, path, keep_previous=True)
    save_checkpoint({"step": 3}, tmp_path / "best.pt")
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    renames = _kill_before_last_pt_is_renamed(monkeypatch)
    with pytest.raises(_KilledSave):
        save_checkpoint({"step": 4}, path, keep_previous=True)
    assert ("last.pt", "previous.pt") not in renames
    monkeypatch.undo()
    used, state = latest_checkpoint(tmp_path)
    assert used == tmp_path / "previous.pt" and state["step"] == 1
    # Without the kill, the new checkpoint replaces the damaged one and previous.pt stays.
    save_checkpoint({"step": 4}, path, keep_previous=True)
    assert load_checkpoint(path)["step"] == 4
    assert load_checkpoint(tmp_path / "previous.pt")["step"] == 1


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path: Path) -> None:
    stale = [tmp_path / ".last.pt.k1ll3d.tmp", tmp_path / ".best.pt.abc.tmp"]
    for file in stale:
        file.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    save_checkpoint({"step": 1}, tmp_path / "last.pt", keep_previous=True)
    assert not stale[0].exists() and stale[1].exists()
    assert remove_stale_temporaries(tmp_path) == [stale[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]


def test_best_is_never_a_silent_fallback(tmp_path: Path) -> None:
    save_checkpoint({"step": 3}, tmp_path / "best.pt")
    (tmp_path / "last.pt").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match=r"best\.pt is not used to resume"):
        latest_checkpoint(tmp_path)
