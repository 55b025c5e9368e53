"""The runner: resume after a killed runner, a failing arm, parallel workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gradkit.studies import STORE_NAME, Store, expand, load_spec, run_study, write_report

RUNNER = (
    "import sys\n"
    "from gradkit.studies import run_study\n"
    "run_study(sys.argv[1], sys.argv[2], threads=1, progress=False)\n"
)


def test_resume_after_a_killed_runner_runs_only_the_missing_runs(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path, out = write_spec(steps=300), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(spec_path), str(out)], start_new_session=True
    )
    deadline = time.monotonic() + 60
    statuses: dict[str, str] = {}
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (out / STORE_NAME).exists():
                with Store(out / STORE_NAME) as store:
                    statuses = store.statuses()
                if sum(s == "done" for s in statuses.values()) >= 2:
                    break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    plans = expand(load_spec(spec_path))
    with Store(out / STORE_NAME) as store:
        before = {r.run_id: r for r in store.runs()}
    done_before = {i for i, r in before.items() if r.status == "done"}
    assert 2 <= len(done_before) < len(plans), "the kill came too late to test resuming"

    outcome = run_study(spec_path, out, threads=1, progress=False)

    assert set(outcome.ran) == {p.run_id for p in plans} - done_before
    assert outcome.skipped == len(done_before)
    assert outcome.failed == {}
    with Store(out / STORE_NAME) as store:
        after = {r.run_id: r for r in store.runs()}
    assert all(r.status == "done" for r in after.values()) and len(after) == len(plans)
    for run_id in done_before:  # kept as they were, not run again
        assert after[run_id].started == before[run_id].started
        assert after[run_id].metrics == before[run_id].metrics
    assert run_study(spec_path, out, threads=1, progress=False).ran == ()


def test_a_failing_arm_is_recorded_and_the_others_finish(
    write_spec: Callable[..., Path], broken_arm: str, tmp_path: Path
) -> None:
    spec_path, out = write_spec(extra=broken_arm), tmp_path / "out"
    outcome = run_study(spec_path, out, workers=2, threads=2, progress=False)
    plans = expand(load_spec(spec_path))
    broken = {p.run_id for p in plans if p.arm == "broken"}
    assert len(outcome.ran) == len(plans) == 12
    assert set(outcome.failed) == broken
    assert all(e.startswith("RuntimeError: mat1 and mat2") for e in outcome.failed.values())
    with Store(out / STORE_NAME) as store:
        runs = store.runs()
    assert {r.run_id for r in runs if r.status == "failed"} == broken
    assert all(r.status == "done" for r in runs if r.arm != "broken")
    assert all("Traceback" in (r.error or "") or r.error for r in runs if r.arm == "broken")
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())

    report = write_report(out)["markdown"].read_text(encoding="utf-8")
    assert "## Failed runs" in report
    assert report.count("| broken | lr=") == 4  # each failed run is listed with its point
    assert "| broken | — | 0 (4 failed) |" in report

    # failed runs are not retried unless asked
    assert run_study(spec_path, out, threads=1, progress=False).ran == ()
    again = run_study(spec_path, out, threads=1, progress=False, retry_failed=True)
    assert set(again.ran) == broken
