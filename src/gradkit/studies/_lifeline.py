"""Worker processes die with their runner.

A pool worker whose runner was killed would otherwise live on as an orphan (parent 1) and keep
training the runs already queued to it, while a new runner of the same study trains them too.
:func:`die_with_parent` is the pool's initializer; it makes the worker end as soon as its
parent does, two ways:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when its parent
  exits. The signal follows the parent *thread* that spawned the worker, so the pool must be
  created and fed from a thread that outlives it (the runner's calling thread does);
- everywhere, a daemon thread that polls ``os.getppid()`` and exits the process when the
  parent changed (the worker was re-parented).

The parent may die before the initializer runs; comparing ``os.getppid()`` with the PID the
runner passed closes that race.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["POLL_SECONDS", "die_with_parent"]

POLL_SECONDS = 0.5
"""How often the watchdog thread checks the worker's parent."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this process when process ``parent`` (its runner) ends."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the runner died before the lines above ran
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="die-with-parent", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)  # no cleanup: the runner that would receive the result is gone
