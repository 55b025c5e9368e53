"""The runner: resume after a killed runner, a failing arm, parallel workers, workers that
die with their runner, runs never done without curves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gradkit.studies import STORE_NAME, Store, expand, load_spec, run_plan, run_study, write_report
from gradkit.studies._lock import LOCK_NAME

RUNNER = (
    "import sys\n"
    "from gradkit.studies import run_study\n"
    "run_study(sys.argv[1], sys.argv[2], threads=1, progress=False)\n"
)
POOL_RUNNER = (
    "import sys\n"
    "from gradkit.studies import run_study\n"
    "run_study(sys.argv[1], sys.argv[2], workers=2, threads=2, progress=False)\n"
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


def _children(parent: int) -> set[int]:
    """The PIDs of the live processes whose parent is ``parent`` (from /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                children.add(int(entry.name))
    return children


def _open_files(pid: int) -> set[str]:
    """The paths process ``pid`` has open (from /proc)."""
    paths = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            paths.add(os.readlink(link))
    return paths


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended, whoever reaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_runner_and_a_rerun_finishes_every_run_once(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec_path, out = write_spec(steps=300), tmp_path / "out"
    runner = subprocess.Popen(
        [sys.executable, "-c", POOL_RUNNER, str(spec_path), str(out)], start_new_session=True
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.poll() is None:
            time.sleep(0.02)
            workers = {p for p in _children(runner.pid) if "spawn_main" in _command(p)}
            if len(workers) == 2 and _training(out / "runs") >= 2:
                break
        assert len(workers) == 2, "never saw both workers training"
        lock = str((out / LOCK_NAME).resolve())
        assert lock in _open_files(runner.pid)  # the runner holds the study's lock ...
        assert not any(lock in _open_files(pid) for pid in workers)  # ... and no worker does
        os.kill(runner.pid, signal.SIGKILL)  # the runner only: its workers are on their own
        runner.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers), "orphaned workers lived on"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)  # whatever is left of the group
        runner.wait()
    with Store(out / STORE_NAME) as store:
        done_before = {r.run_id for r in store.runs(status="done")}
    plans = expand(load_spec(spec_path))
    assert len(done_before) <= len(plans) - 2  # the two killed mid-run are not done

    outcome = run_study(spec_path, out, workers=2, threads=2, progress=False)

    assert outcome.failed == {}
    assert sorted(outcome.ran) == sorted({p.run_id for p in plans} - done_before)  # once each
    with Store(out / STORE_NAME) as store:
        runs = store.runs()
        assert sorted(r.run_id for r in runs) == sorted(p.run_id for p in plans)
        assert all(r.status == "done" for r in runs)
        for run in runs:
            assert len(store.curve(run.run_id, "step", "loss")) == 300
            assert store.curve(run.run_id, "eval", "test_accuracy")[-1][0] == 300


def _command(pid: int) -> str:
    """The command line of process ``pid`` (from /proc; empty once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _training(run_root: Path) -> int:
    """How many attempts train now: each has its folder ``<run_id>.<random>`` under run_root."""
    try:
        return sum(1 for entry in run_root.iterdir() if "." in entry.name)
    except OSError:
        return 0


def test_a_run_trains_in_a_folder_of_its_own(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    plan = expand(load_spec(write_spec()))[0]
    runs, store_path = tmp_path / "runs", str(tmp_path / STORE_NAME)
    other = runs / plan.run_id  # as if another process were training the same run there
    other.mkdir(parents=True)
    (other / "steps.jsonl").write_text('{"step": 1, "loss": 2.0}\n', encoding="utf-8")

    assert run_plan(plan, store_path, "tiny", str(runs), 1, False) == (plan.run_id, None)

    assert (other / "steps.jsonl").read_text(encoding="utf-8") == '{"step": 1, "loss": 2.0}\n'
    assert [p.name for p in runs.iterdir()] == [plan.run_id]  # its own folder is gone
    with Store(store_path) as store:
        assert store.statuses() == {plan.run_id: "done"}
        assert len(store.curve(plan.run_id, "step", "loss")) == 20

    run_plan(plan, store_path, "tiny", str(runs), 1, True)  # kept: it replaces the old folder
    umask = os.umask(0)
    os.umask(umask)
    assert (runs / plan.run_id).stat().st_mode & 0o777 == 0o777 & ~umask  # not made private
    assert sorted(p.name for p in (runs / plan.run_id).iterdir()) == [
        "checkpoints",
        "config.toml",
        "evals.csv",
        "evals.jsonl",
        "steps.csv",
        "steps.jsonl",
        "summary.json",
    ]


def test_a_run_whose_metrics_files_come_back_empty_is_failed_not_done(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradkit.studies import _worker

    monkeypatch.setattr(_worker, "read_curves", lambda run_dir: [])
    plan = expand(load_spec(write_spec()))[0]
    store_path = str(tmp_path / STORE_NAME)

    run_id, error = run_plan(plan, store_path, "tiny", str(tmp_path / "runs"), 1, False)

    assert error == (
        f"ValueError: store: run {run_id!r} has no curves (its metrics files were missing or "
        "empty), so it is not recorded as done"
    )
    with Store(store_path) as store:
        (run,) = store.runs()
    assert run.status == "failed" and run.error is not None and run.error.startswith(error)
