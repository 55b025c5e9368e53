"""``gradkit train``: the default run, config file and overrides, --help, --resume, errors.

``gradkit.cli.train.main`` is what ``gradkit train ...`` runs (the verb's own entry point).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradkit.cli import train as train_verb
from gradkit.train import Config, load_config, read_jsonl

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
