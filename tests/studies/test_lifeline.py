"""Worker processes end with their parent: the watchdog thread (the portable way), the race."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

CHILD = (
    "import os, threading, time\n"
    "from gradkit.studies import _lifeline\n"
    "threading.Thread(target=_lifeline._watch, args=(os.getppid(),), daemon=True).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)
PARENT = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE)\n"
    "assert child.stdout.readline() == b'ready\\n'\n"
    "print(child.pid, flush=True)\n"  # and end, leaving the child an orphan
)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_watchdog_ends_a_process_whose_parent_ended() -> None:
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, CHILD], capture_output=True, text=True, timeout=120
    )
    assert parent.returncode == 0, parent.stderr
    child = int(parent.stdout)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _gone(child):
            time.sleep(0.05)
        assert _gone(child), "the orphan outlived its parent"
    finally:
        if not _gone(child):
            os.kill(child, 9)


def test_a_worker_whose_runner_died_before_it_started_exits_at_once() -> None:
    code = (
        "import os, time\n"
        "from gradkit.studies._lifeline import die_with_parent\n"
        "die_with_parent(os.getppid() + 1)\n"  # not its parent: as if the runner were gone
        "time.sleep(120)\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert finished.returncode == 1
