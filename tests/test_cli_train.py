"""``gradkit train``: the default run, config file and overrides, --help, --resume, errors.

``gradkit.cli.train.main`` is what ``gradkit train ...`` runs (the verb's own entry point).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gradkit.cli import train as train_verb
from gradkit.train import Config, load_checkpoint, load_config, read_jsonl

FAST = ["log.progress=off", "train.eval_every=0", "checkpoint.every=0"]


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        train_verb.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for text in ("--resume", "optim.lr", "train.steps", "schedule.lr", "data.validation_fraction"):
        assert text in out


def test_no_arguments_trains_the_default_recipe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake_train(config: Config, **options: Any) -> Any:
        seen.update(config=config, **options)
        raise SystemExit(0)

    monkeypatch.setattr(train_verb, "train", fake_train)
    with pytest.raises(SystemExit):
        train_verb.main([])
    assert seen["config"] == Config()
    assert seen["config"].model.name == "cnn" and seen["config"].data.name == "mnist1d"
    assert seen["run_dir"] is None and seen["resume"] is False


def test_default_recipe_smoke(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_verb.main(["train.steps=30", *FAST]) == 0
    out = capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()  # runs/<timestamp>
    assert f"run        {Path('runs') / run.name}" in out
    assert "steps      30" in out and "test       accuracy" in out
    config = load_config(run / "config.toml")
    assert config == load_config(None, ["train.steps=30", *FAST])
    assert read_jsonl(run / "evals.jsonl")[-1]["test_accuracy"] > 0.15  # chance is 0.1


def _tiny(tmp_path: Path) -> list[str]:
    return [
        "model.name=logistic",
        "train.steps=10",
        f"log.root={str(tmp_path)!r}",
        "log.name=tiny",
        *FAST,
    ]


def test_config_file_overrides_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[optim]\nname = "sgd"\nlr = 0.5\n')
    assert train_verb.main([str(path), *_tiny(tmp_path), "optim.lr=0.1"]) == 0
    run = tmp_path / "tiny"
    saved = load_config(run / "config.toml")
    assert (saved.optim.name, saved.optim.lr, saved.train.steps) == ("sgd", 0.1, 10)
    capsys.readouterr()
    assert train_verb.main(["--resume", str(run), "train.steps=15"]) == 0
    assert "steps      15" in capsys.readouterr().out
    assert [r["step"] for r in read_jsonl(run / "steps.jsonl")] == list(range(1, 16))
    assert load_config(run / "config.toml").train.steps == 15


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optim.l=0.1"], "gradkit train: config: unknown key 'optim.l'; did you mean 'optim.lr'?"),
        (["missing.toml"], "gradkit train: config: no such file 'missing.toml'"),
        (["--resume", "nowhere"], "gradkit train: config: --resume nowhere: no config.toml there"),
        (
            ["c.toml", "--resume", "somewhere"],
            "gradkit train: config: give either a config file (c.toml) or --resume",
        ),
    ],
)
def test_errors(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_verb.main(arguments) == 2
    assert capsys.readouterr().err.startswith(message)


def test_resume_before_the_first_checkpoint_starts_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "tiny"
    run.mkdir()
    (run / "config.toml").write_text('[model]\nname = "logistic"\n[train]\nsteps = 5\n')
    (run / "steps.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # from the lost session
    assert train_verb.main(["--resume", str(run), *FAST]) == 0
    assert "holds no checkpoint yet; starting from step 0" in capsys.readouterr().err
    assert [r["step"] for r in read_jsonl(run / "steps.jsonl")] == [1, 2, 3, 4, 5]
    assert read_jsonl(run / "steps.jsonl")[0]["loss"] != 9.0


def test_resume_with_damaged_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_verb.main(_tiny(tmp_path)) == 0
    for name in ("last.pt", "previous.pt"):
        path = tmp_path / "tiny" / "checkpoints" / name
        if path.exists():
            path.write_bytes(path.read_bytes()[:-1])
    capsys.readouterr()
    assert train_verb.main(["--resume", str(tmp_path / "tiny")]) == 1
    assert "gradkit train: no usable checkpoint in" in capsys.readouterr().err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


def test_run_dir_of_an_existing_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "tiny"
    assert train_verb.main([*_tiny(tmp_path), "--run-dir", str(run)]) == 0
    steps = (run / "steps.jsonl").read_text()
    capsys.readouterr()
    assert train_verb.main([*_tiny(tmp_path), "--run-dir", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"gradkit train: run dir {str(run)!r} already holds a run (")
    assert line.endswith(
        f"continue it with --resume {run} (train(..., resume=True)) or give a new directory"
    )
    assert (run / "steps.jsonl").read_text() == steps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optim.name=sgd",
            "gradkit train: config: optim.name cannot change on resume ('adamw' -> 'sgd')",
        ),
        (
            "model.options.width=32",
            "gradkit train: config: model.options.width cannot change on resume",
        ),
    ],
)
def test_resume_refuses_a_new_model_or_optimizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    run = tmp_path / "tiny"
    tiny = [a for a in _tiny(tmp_path) if not a.startswith("model.")] + ["model.name=mlp"]
    assert train_verb.main([*tiny, "model.options.width=8", "train.steps=4"]) == 0
    saved = (run / "config.toml").read_text()
    capsys.readouterr()
    assert train_verb.main(["--resume", str(run), "train.steps=8", override]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(message) and line.endswith(
        "start a new run (a new directory) to change it"
    )
    assert (run / "config.toml").read_text() == saved


def test_a_run_dir_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    run = tmp_path / "file" / "run"
    assert train_verb.main([*_tiny(tmp_path), "--run-dir", str(run)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"gradkit train: cannot write {str(run)!r}: a part of the path is a file, not a directory"
    )


def test_no_space_left_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert train_verb.main(_tiny(tmp_path)) == 2
    path = tmp_path / "tiny" / "config.toml"
    assert _one_line(capsys.readouterr().err) == (
        f"gradkit train: cannot write {str(path)!r}: no space left on the device"
    )


def test_a_scheduled_value_out_of_range_mid_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a sampled up-front check (a product of schedules over > 65,536 steps) lets a bad
    # value through to the step that sets it; the CLI must still end in one line, exit 2.
    from gradkit.schedules import ScheduledValueError

    message = "ParamScheduler: the schedule x sets lr=-0.5 at step 70000; expected lr >= 0"

    def fake_train(config: Config, **options: Any) -> Any:
        raise ScheduledValueError(message)

    monkeypatch.setattr(train_verb, "train", fake_train)
    assert train_verb.main(_tiny(tmp_path)) == 2
    assert _one_line(capsys.readouterr().err) == f"gradkit train: {message}"


def test_the_summary_says_what_best_was_selected_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_verb.main(_tiny(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "best       none: no validation split (data.validation_fraction = 0) and " in out
    run = tmp_path / "val"
    arguments = [*_tiny(tmp_path), "data.validation_fraction=0.2", "--run-dir", str(run)]
    assert train_verb.main(arguments) == 0
    best = load_config(run / "config.toml")
    assert best.data.validation_fraction == 0.2
    out = capsys.readouterr().out
    assert "best       val_accuracy " in out and str(run / "checkpoints" / "best.pt") in out


def test_only_rank_0_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradkit.train import RunResult
    from gradkit.train._report import TrainingInterrupted

    metrics = {"test_accuracy": 0.5, "test_loss": 1.0}
    for rank in (1, 0):
        result = RunResult(Path("runs/x"), 10, 1.0, metrics, rank=rank)
        monkeypatch.setattr(train_verb, "train", lambda config, result=result, **_: result)
        assert train_verb.main(["model.name=logistic"]) == 0
        assert ("test       accuracy 50.00%" in capsys.readouterr().out) == (rank == 0)
    for rank in (1, 0):
        stopped = TrainingInterrupted(Path("runs/x"), 3, Path("runs/x/checkpoints/last.pt"), rank)

        def interrupted(config: Config, stopped: Any = stopped, **_: Any) -> Any:
            raise stopped

        monkeypatch.setattr(train_verb, "train", interrupted)
        assert train_verb.main(["model.name=logistic"]) == 130
        assert bool(capsys.readouterr().err) == (rank == 0)


@pytest.mark.parametrize(
    ("number", "how"),
    [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "stopped by SIGTERM")],
)
def test_ctrl_c_saves_and_says_how_to_resume(tmp_path: Path, number: int, how: str) -> None:
    """Ctrl-C, and SIGTERM as Slurm, kill or torchrun send it: the step ends, is saved, and the
    command says how to resume, with exit status 128 + the signal."""
    run = tmp_path / "run"
    settings = [
        "model.name=logistic",
        "log.progress=off",
        "log.tensorboard=off",
        "train.eval_every=0",
        "train.threads=1",
        "checkpoint.every=5",
    ]
    command = [sys.executable, "-m", "gradkit", "train", *settings, "train.steps=1000000"]
    process = subprocess.Popen(
        [*command, "--run-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        steps = run / "steps.jsonl"
        while not (steps.exists() and steps.stat().st_size) and process.poll() is None:
            assert time.monotonic() < deadline, "no progress within 60 s"
            time.sleep(0.05)
        process.send_signal(number)
        err = process.communicate(timeout=60)[1]
    finally:
        process.kill()
    assert process.returncode == 128 + number, err
    assert "Traceback" not in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    step = state["step"]
    assert 0 < step < 1000000
    assert err.strip().splitlines()[-1] == (
        f"gradkit train: {how} after step {step}, saved in {run / 'checkpoints' / 'last.pt'}"
        f"; continue with: gradkit train --resume {run}"
    )
    assert [r["step"] for r in read_jsonl(steps)] == list(range(1, step + 1))
    assert not (run / "summary.json").exists()
    assert train_verb.main(["--resume", str(run), f"train.steps={step + 7}"]) == 0
    assert [r["step"] for r in read_jsonl(steps)] == list(range(1, step + 8))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 7
