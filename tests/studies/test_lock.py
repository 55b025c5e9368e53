"""One runner per study: a second one refuses at once; readers are not held up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gradkit.cli import study
from gradkit.studies import STORE_NAME, run_study
from gradkit.studies._lock import LOCK_NAME, StudyLock, StudyLockedError


def test_a_second_runner_refuses_while_the_first_holds_the_study(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path, out = write_spec(), tmp_path / "out"
    with StudyLock(out):
        finished = subprocess.run(
            [sys.executable, "-m", "gradkit", "study", "run", str(spec_path), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert finished.returncode == 2, finished.stderr
    (line,) = finished.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"gradkit study: study directory '{out}' is in use by another runner")
    assert f"PID {os.getpid()} on " in line and ", started 20" in line
    assert finished.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # it wrote nothing


def test_run_study_refuses_in_the_same_process_and_the_lock_is_freed_after(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path, out = write_spec(), tmp_path / "out"
    with StudyLock(out), pytest.raises(StudyLockedError, match="in use by another runner"):
        run_study(spec_path, out, threads=1, progress=False)
    assert not (out / STORE_NAME).exists()
    with StudyLock(out) as lock, pytest.raises(StudyLockedError):  # released by the block above
        StudyLock(out).acquire()
    lock.acquire()
    lock.release()


def test_report_works_while_a_runner_holds_the_study(
    finished_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (finished_study / "REPORT.md").unlink()
    with StudyLock(finished_study):
        assert study.main(["report", str(finished_study)]) == 0
    assert "markdown" in capsys.readouterr().out
    assert (finished_study / "REPORT.md").exists()


def test_an_out_dir_under_a_file_is_one_line_and_exit_2(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    out = blocker / "out"
    assert study.main(["run", str(write_spec()), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"gradkit study: study directory '{out}': cannot create {LOCK_NAME} there (Not a "
        "directory); pass another --out\n"
    )


def test_a_file_system_without_locks_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    from gradkit.studies import StudyDirectoryError

    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(StudyDirectoryError, match="its file system cannot lock files"):
        StudyLock(tmp_path / "out").acquire()
