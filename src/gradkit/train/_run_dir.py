"""The run directory: refuse to train over an existing run, name the path a write failed on.

A run directory that already holds a run (its ``config.toml``, metrics or checkpoints) is only
continued with ``resume``: a new run there would start from step 0 over the old checkpoints and
append a second copy of every step to the old metrics. An empty directory is fine.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from gradkit.train._sections import ConfigError

__all__ = ["RUN_FILES", "RunDirError", "drop_partial_last_lines", "refuse_existing_run", "writing"]

RUN_FILES = (
    "config.toml",
    "steps.jsonl",
    "steps.csv",
    "evals.jsonl",
    "evals.csv",
    "summary.json",
    "checkpoints",
    "snapshots",
)
"""What a run leaves in its directory; any one of them marks the directory as a run's."""


class RunDirError(ConfigError):
    """A run directory that cannot be used: it holds another run, or cannot be written."""


def refuse_existing_run(run_dir: Path) -> None:
    """Raise :class:`RunDirError` if ``run_dir`` holds a run (see :data:`RUN_FILES`)."""
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if found:
        raise RunDirError(
            f"run dir {str(run_dir)!r} already holds a run ({', '.join(found)}); continue it "
            f"with --resume {run_dir} (train(..., resume=True)) or give a new directory"
        )


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file stands where a directory is needed",
    errno.ENAMETOOLONG: "the name is too long",
}


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` inside the block into a :class:`RunDirError` naming the path."""
    try:
        yield
    except OSError as error:
        where = error.filename if error.filename is not None else path
        reason = _REASONS.get(error.errno or 0, error.strerror or str(error))
        raise RunDirError(f"cannot write {str(where)!r}: {reason}") from None


def drop_partial_last_lines(paths: list[Path]) -> list[Path]:
    """Cut each file after its last newline: a process killed mid-write leaves a partial line.

    Returns the files that were cut.
    """
    cut = []
    for path in paths:
        if not path.exists():
            continue
        with open(path, "rb+") as stream:
            data = stream.read()
            if not data or data.endswith(b"\n"):
                continue
            stream.truncate(data.rfind(b"\n") + 1)
        cut.append(path)
    return cut
