"""The Dask executor, on a loopback LocalCluster of 2 worker processes: the same records as the
local pool, a worker killed mid-study, a driver killed mid-study, a scheduler that never answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from gradkit.studies import (  # noqa: E402
    STORE_NAME,
    RunOutcome,
    SchedulerError,
    Store,
    expand,
    load_spec,
    run_study,
)

DRIVER = (
    "import sys\n"
    "from gradkit.studies import run_study\n"
    "run_study(sys.argv[1], sys.argv[2], scheduler=sys.argv[3], threads=1, progress=False)\n"
)


def LocalCluster(n_workers: int) -> Any:  # noqa: N802 (it stands for the class)
    """``n_workers`` worker processes of one thread each, on 127.0.0.1 only."""
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # any free port: two clusters must not both want 8787
        silence_logs=50,  # a killed worker is logged as an error: the tests kill on purpose
    )


def Client(cluster: Any) -> Any:  # noqa: N802
    return distributed.Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with LocalCluster(2) as local:
        yield local


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with Client(cluster) as connected:
        connected.wait_for_workers(2, timeout=60)
        yield connected


def deterministic(text: str) -> str:
    return text.replace("eval_batch_size = 600 }", "eval_batch_size = 600, deterministic = true }")


def stored(out: Path) -> dict[str, tuple[Any, ...]]:
    """Each run's status, metrics, steps and curves (less wall-clock ``time``) from a store."""
    with Store(out / STORE_NAME) as store:
        return {
            run.run_id: (
                run.status,
                {name: value for name, value in run.metrics.items() if name != "time"},
                run.steps,
                store.curve(run.run_id, "step", "loss"),
                store.curve(run.run_id, "eval", "test_accuracy"),
                store.curve(run.run_id, "eval", "val_loss"),
            )
            for run in store.runs()
        }


def test_a_cluster_records_what_the_local_pool_records(
    write_spec: Callable[..., Path], tiny_text: Callable[..., str], tmp_path: Path, cluster: Any
) -> None:
    spec = write_spec(deterministic(tiny_text()))
    local = run_study(spec, tmp_path / "local", workers=2, threads=2, progress=False)
    remote = run_study(spec, tmp_path / "dask", scheduler=cluster, threads=1, progress=False)

    plans = {plan.run_id for plan in expand(load_spec(spec))}
    assert sorted(remote.ran) == sorted(local.ran) == sorted(plans)
    assert remote.failed == local.failed == {}
    mine, theirs = stored(tmp_path / "local"), stored(tmp_path / "dask")
    assert mine == theirs
    assert all(record[0] == "done" and len(record[3]) == 20 for record in theirs.values())
    with Store(tmp_path / "dask" / STORE_NAME) as store:  # trained on the workers, not here
        workers = {row[0] for row in store._connection.execute("SELECT worker FROM runs")}
    assert workers and all(w and not w.endswith(f":{os.getpid()}") for w in workers)
    assert not (tmp_path / "dask" / "runs").exists()  # nothing trained in the study's folder
    assert run_study(spec, tmp_path / "dask", scheduler=cluster, progress=False).ran == ()


def test_a_worker_killed_mid_study_has_its_run_rerun_and_recorded_once(
    write_spec: Callable[..., Path], tmp_path: Path, cluster: Any, client: Any
) -> None:
    spec, out = write_spec(steps=300), tmp_path / "out"
    killed: list[str] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        outcome = run_study(spec, out, scheduler=cluster, threads=1, progress=False)
    finally:
        killer.join()

    assert killed, "never saw a worker training"
    plans = sorted(plan.run_id for plan in expand(load_spec(spec)))
    assert outcome.failed == {}
    assert sorted(outcome.ran) == plans  # each run recorded exactly once
    with Store(out / STORE_NAME) as store:
        runs = store.runs()
        assert sorted(r.run_id for r in runs) == plans and all(r.status == "done" for r in runs)
        for run in runs:
            assert len(store.curve(run.run_id, "step", "loss")) == 300
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def done_runs(path: Path) -> set[str]:
    """The runs a store says are done (read-only: no write lock)."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return set()
    try:
        rows = connection.execute("SELECT run_id FROM runs WHERE status = 'done'").fetchall()
    except sqlite3.OperationalError:
        return set()
    finally:
        connection.close()
    return {run_id for (run_id,) in rows}


def test_a_driver_killed_mid_study_resumes_with_only_the_missing_runs(
    write_spec: Callable[..., Path], tmp_path: Path, cluster: Any
) -> None:
    spec, out = write_spec(steps=300), tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(spec), str(out), cluster.scheduler_address],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            if len(done_runs(out / STORE_NAME)) >= 2:
                break
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    plans = {plan.run_id for plan in expand(load_spec(spec))}
    with Store(out / STORE_NAME) as store:
        before = {r.run_id: r for r in store.runs()}
    done_before = {i for i, r in before.items() if r.status == "done"}
    assert 2 <= len(done_before) < len(plans), "the kill came too late to test resuming"

    outcome = run_study(spec, out, scheduler=cluster.scheduler_address, progress=False)

    assert set(outcome.ran) == plans - done_before and len(outcome.ran) == len(set(outcome.ran))
    assert outcome.skipped == len(done_before) and outcome.failed == {}
    with Store(out / STORE_NAME) as store:
        after = {r.run_id: r for r in store.runs()}
    assert set(after) == plans and all(r.status == "done" for r in after.values())
    for run_id in done_before:  # kept as they were, not run again
        assert after[run_id].started == before[run_id].started
        assert after[run_id].metrics == before[run_id].metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_scheduler_that_does_not_answer_is_one_line_and_nothing_is_written(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec, out = write_spec(), tmp_path / "out"
    address = f"tcp://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "gradkit", "study", "run", str(spec), "--out", str(out)]
    done = subprocess.run(
        [*command, "--scheduler", address, "--connect-timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"gradkit study: --scheduler {address}: no Dask scheduler answered within 2 s ("
    )
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert not out.exists()

    with pytest.raises(SchedulerError, match="missing port number"):
        run_study(spec, out, scheduler="localhost", progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "2"], "--workers 2 sizes the local pool; with --scheduler"),
        (["--keep-runs"], "--keep-runs needs the local executor"),
        (["--connect-timeout", "0"], "--connect-timeout must be > 0 seconds, got 0.0"),
    ],
)
def test_options_that_cannot_go_with_a_scheduler(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    from gradkit.cli import main

    spec, out = write_spec(), tmp_path / "out"
    arguments = ["study", "run", str(spec), "--out", str(out), "--scheduler", "tcp://x:1"]
    assert main([*arguments, *options]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"gradkit study: {message}") and error.count("\n") == 1, error
    assert not out.exists()


def test_workers_with_other_versions_are_refused(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradkit

    monkeypatch.setattr(gradkit, "__version__", "0.0.1")  # in this process only
    with pytest.raises(SchedulerError, match=r"Dask worker tcp://127\.0\.0\.1:\d+ runs gradkit "):
        run_study(write_spec(), tmp_path / "out", scheduler=cluster, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_run_whose_workers_keep_dying_is_recorded_failed(tmp_path: Path) -> None:
    """After allowed-failures lost workers the scheduler gives up (KilledWorker): the run is
    recorded failed with that reason, the others done."""
    import dask

    from gradkit.studies._dask import run_on_dask
    from gradkit.studies._worker import failed_outcome

    def train_or_die(plan: str) -> RunOutcome:
        if plan == "doomed":
            os._exit(1)
        return RunOutcome(plan, metrics={"x": 1.0})

    class Plan(str):
        @property
        def run_id(self) -> str:
            return str(self)

    records: list[RunOutcome] = []
    # No second chance, and one task at a time on a worker (saturation 1.0), so "fine" never
    # waits on the worker that "doomed" takes down.
    settings = dask.config.set(
        {
            "distributed.scheduler.allowed-failures": 0,
            "distributed.scheduler.worker-saturation": 1.0,
        }
    )
    with settings, LocalCluster(n_workers=2) as local, Client(local) as connected:
        run_on_dask(
            connected,
            train_or_die,
            [Plan("doomed"), Plan("fine")],
            (),
            study="t",
            record=records.append,
            lost=lambda plan, error: failed_outcome(plan.run_id, error),
        )
    outcomes = {r.run_id: r for r in records}
    assert sorted(outcomes) == ["doomed", "fine"]
    assert outcomes["fine"].error is None
    assert outcomes["doomed"].error is not None
    assert outcomes["doomed"].error.startswith("KilledWorker: ")
