"""One runner per study: an exclusive lock on the study's output directory.

The runner holds an advisory lock (``flock``) on ``<out>/runner.lock`` for as long as it runs.
The operating system drops the lock when the holding process ends, however it ends, so a
crashed runner never leaves a stale lock behind; the file itself stays, holding the PID, host
and start time of the last runner, which the refusal message quotes.

The lock is taken on a descriptor that is not inherited (Python's default, PEP 446), and the
runner's workers are spawned (fork + exec), so no worker holds the lock after its runner died.
Readers (``gradkit study report``) never take it: the store allows reading while a run writes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "StudyDirectoryError", "StudyLock", "StudyLockedError"]

LOCK_NAME = "runner.lock"
"""The lock file's name in a study's output directory."""


class StudyLockedError(RuntimeError):
    """Another runner holds the study's output directory."""


class StudyDirectoryError(RuntimeError):
    """The study's output directory cannot be made or locked (a file in the way, no permission,
    a read-only mount, a file system without locks); the message names the directory."""


def _try_lock(descriptor: int) -> bool:
    """Take an exclusive lock on ``descriptor`` without waiting; whether it was taken."""
    if sys.platform == "win32":  # pragma: no cover - no flock on Windows
        import msvcrt

        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote in the file (it may not have written yet)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["started"])))
        return f"PID {int(record['pid'])} on {record['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its PID is not recorded yet"


class StudyLock:
    """The exclusive lock of one study output directory (a context manager).

    Example:
        >>> with StudyLock("studies/warmup"):
        ...     ...  # the only runner of this study until the block ends

    Raises:
        StudyLockedError: on entering, when another runner (any process) holds the lock.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`StudyLockedError` at once."""
        if self._descriptor is not None:
            raise RuntimeError("StudyLock: already held by this object")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StudyDirectoryError(
                f"study directory '{self.out_dir}': cannot create {self.path.name} there "
                f"({error.strerror or error}); pass another --out"
            ) from None
        try:
            locked = _try_lock(descriptor)
        except OSError as error:  # ENOLCK, EOPNOTSUPP: a file system without flock
            os.close(descriptor)
            raise StudyDirectoryError(
                f"study directory '{self.out_dir}': its file system cannot lock files "
                f"({error.strerror or error}), so two runners could not be kept apart; pass an "
                "--out on a local disk"
            ) from None
        if not locked:
            os.close(descriptor)
            raise StudyLockedError(
                f"study directory '{self.out_dir}' is in use by another runner "
                f"({_holder(self.path)}); wait for it to finish or stop it, or pass another --out"
            )
        # The lock is ours: say who holds it (one write, so a reader sees all of it or nothing).
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.write(descriptor, json.dumps(record).encode("utf-8"))
        self._descriptor = descriptor

    def release(self) -> None:
        """Drop the lock (closing the descriptor drops it)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
