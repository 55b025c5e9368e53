"""The run directory: no new run over an old one, one clear error when it cannot be written,
and a partial last metrics line (a kill mid-write) dropped at resume."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gradkit.train import ConfigError, TrainingData, load_checkpoint, read_jsonl, train
from gradkit.train._run_dir import RunDirError


def test_a_new_run_over_an_existing_run_is_refused(
    data: TrainingData, make_config: Callable
) -> None:
    config = make_config("train.steps=4", "checkpoint.every=2")
    first = train(config, data=data)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()}
    message = (
        f"run dir {str(first.run_dir)!r} already holds a run (config.toml, steps.jsonl, "
        f"steps.csv, evals.jsonl, evals.csv, summary.json, checkpoints); continue it with "
        f"--resume {first.run_dir} (train(..., resume=True)) or give a new directory"
    )
    with pytest.raises(RunDirError, match=re.escape(message)):
        train(config, data=data)
    with pytest.raises(ConfigError, match="already holds a run"):  # the default run dir too
        train(config, data=data, run_dir=first.run_dir)
    after = {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()}
    assert after == before


@pytest.mark.parametrize("leftover", ["steps.jsonl", "checkpoints"])
def test_one_file_of_a_run_is_enough_to_refuse(
    data: TrainingData, make_config: Callable, tmp_path: Path, leftover: str
) -> None:
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / leftover).mkdir() if leftover == "checkpoints" else (run_dir / leftover).touch()
    with pytest.raises(RunDirError, match=f"already holds a run \\({leftover}\\)"):
        train(make_config("train.steps=2"), data=data, run_dir=run_dir)
    (run_dir / leftover).rmdir() if leftover == "checkpoints" else (run_dir / leftover).unlink()
    # An empty existing directory is fine.
    assert train(make_config("train.steps=2"), data=data, run_dir=run_dir).steps == 2


def test_a_run_dir_under_a_file(data: TrainingData, make_config: Callable, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    run_dir = tmp_path / "file" / "run"
    message = f"cannot write {str(run_dir)!r}: a part of the path is a file, not a directory"
    with pytest.raises(RunDirError, match=re.escape(message)):
        train(make_config("train.steps=2"), data=data, run_dir=run_dir)


def test_a_run_dir_that_is_a_file(
    data: TrainingData, make_config: Callable, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(RunDirError, match="a file stands where a directory is needed"):
        train(make_config("train.steps=2"), data=data, run_dir=tmp_path / "file")


def test_a_read_only_location(
    data: TrainingData, make_config: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)  # root ignores chmod, so pretend
    run_dir = tmp_path / "ro" / "run"
    message = f"cannot write {str(run_dir)!r}: the file system is read-only"
    with pytest.raises(RunDirError, match=re.escape(message)):
        train(make_config("train.steps=2"), data=data, run_dir=run_dir)


def test_no_space_left_for_a_checkpoint(
    data: TrainingData, make_config: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradkit.train import _state

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_state, "save_checkpoint", full_disk)
    config = make_config("train.steps=4", "checkpoint.every=2")
    path = Path(config.log.root) / "run" / "checkpoints" / "last.pt"
    message = f"cannot write {str(path)!r}: no space left on the device"
    with pytest.raises(RunDirError, match=re.escape(message)):
        train(config, data=data)


def test_a_partial_last_metrics_line_is_dropped_at_resume(
    data: TrainingData, make_config: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    first = train(make_config("train.steps=10", "checkpoint.every=5"), data=data)
    run_dir = first.run_dir
    # A kill in the middle of writing step 11's records (after the checkpoint of step 10).
    with open(run_dir / "steps.jsonl", "a") as stream:
        stream.write('{"step": 11, "loss": 0.')
    with open(run_dir / "steps.csv", "a") as stream:
        stream.write("1")  # would read as a row of step 1
    capsys.readouterr()
    resumed = train(make_config("train.steps=20"), data=data, run_dir=run_dir, resume=True)
    assert resumed.steps == 20
    assert "dropped the partial last line of" in capsys.readouterr().err
    assert [r["step"] for r in read_jsonl(run_dir / "steps.jsonl")] == list(range(1, 21))
    rows = (run_dir / "steps.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, 21))
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 20
