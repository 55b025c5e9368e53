"""The store: round trips, two writer processes at once lose nothing, no run done without
curves."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradkit.studies import RunPlan, Store

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gradkit.studies import RunPlan, Store

    path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    store = Store(path, timeout=30)
    while not go.exists():  # start together with the other writer
        time.sleep(0.005)
    for number in range(count):
        plan = RunPlan(f"{name}-{number}", name, {}, {}, number, {"optim": {"lr": 0.1}})
        store.start(plan, "concurrent")
        curves = [("step", step, "loss", 1.0 / (step + 1)) for step in range(40)]
        store.finish(plan.run_id, metrics={"test_accuracy": number / count}, seconds=0.1,
                     steps=40, curves=curves)
    store.close()
    """
)


def _plan(run_id: str, seed: int = 0) -> RunPlan:
    return RunPlan(run_id, "arm", {"train.batch_size": 32}, {"optim.lr": 0.1}, seed, {"a": {}})


def test_a_run_round_trips(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.start(_plan("r1"), "study")
        assert store.statuses() == {"r1": "running"}
        store.finish(
            "r1",
            metrics={"test_accuracy": 0.5, "loss": math.inf},
            seconds=1.5,
            steps=7,
            curves=[("eval", 5, "test_accuracy", 0.25), ("eval", 7, "test_accuracy", 0.5)],
        )
        store.start(_plan("r2", 1), "study")
        store.fail("r2", "RuntimeError: boom")
    with Store(tmp_path / "s.db") as store:
        done, failed = store.runs()
        assert (done.status, done.steps, done.seconds) == ("done", 7, 1.5)
        assert done.metrics == {"test_accuracy": 0.5, "loss": math.inf}
        assert done.grid == {"train.batch_size": 32} and done.sweep == {"optim.lr": 0.1}
        assert store.curve("r1", "eval", "test_accuracy") == [(5, 0.25), (7, 0.5)]
        assert (failed.status, failed.error, failed.seed) == ("failed", "RuntimeError: boom", 1)
        assert [r.run_id for r in store.runs(status="done")] == ["r1"]


def test_restarting_a_run_drops_its_old_curves(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.start(_plan("r1"), "study")
        store.finish("r1", metrics={}, seconds=1, steps=1, curves=[("step", 1, "loss", 2.0)])
        store.start(_plan("r1"), "study")
        assert store.statuses() == {"r1": "running"}
        assert store.curve("r1", "step", "loss") == []


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path, go, count = tmp_path / "s.db", tmp_path / "go", 60
    Store(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count), str(go)])
        for name in ("a", "b")
    ]
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    with Store(path) as store:
        runs = store.runs()
        assert len(runs) == 2 * count
        assert {r.run_id for r in runs} == {f"{n}-{i}" for n in "ab" for i in range(count)}
        assert all(r.status == "done" and r.steps == 40 for r in runs)
        for run in runs:
            assert len(store.curve(run.run_id, "step", "loss")) == 40


def test_a_run_without_curves_is_never_recorded_done(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.start(_plan("r1"), "study")
        with pytest.raises(ValueError, match=r"^store: run 'r1' has no curves \(its metrics"):
            store.finish("r1", metrics={"test_accuracy": 0.5}, seconds=1, steps=1, curves=[])
        assert store.statuses() == {"r1": "running"}  # nothing written: the next call reruns it
        assert store.runs()[0].metrics == {}
