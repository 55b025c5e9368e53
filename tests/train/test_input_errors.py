"""Input errors of ``gradkit train`` set-up: one line naming the key, exit 2, no traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from gradkit.cli import main
from gradkit.train import Config, ConfigError, TrainingData, _data, load_config, train

SMALL = [
    "model.name=mlp",
    "model.options.width=8",
    "train.steps=2",
    "train.batch_size=16",
    "train.threads=1",
    "log.progress=off",
    "log.tensorboard=off",
]


def _train(tmp_path: Path, *overrides: str) -> list[str]:
    return ["train", *SMALL, f"log.root={str(tmp_path / 'runs')!r}", *overrides]


def _config(tmp_path: Path, *overrides: str) -> Config:
    return load_config(None, [*SMALL, f"log.root={str(tmp_path)!r}", *overrides])


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("gradkit train: config: ")
    return lines[0]


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_a_file_dataset_without_data_root_says_what_to_put_where(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_train(tmp_path, f"data.name={name}")) == 2
    line = _one_line_error(capsys)
    assert line.startswith("gradkit train: config: data.root: not set")
    expected = "data_batch_1" if name == "cifar10" else "train-images-idx3-ubyte"
    assert expected in line
    assert "download" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_missing_or_empty_data_root_is_one_line(
    name: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    if kind == "empty":
        root.mkdir()
    assert main(_train(tmp_path, f"data.name={name}", f"data.root={str(root)!r}")) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"gradkit train: config: data.root: {name}: {root}")
    expected = "data_batch_1" if name == "cifar10" else "train-images-idx3-ubyte"
    assert expected in line
    assert "gradkit downloads nothing" in line


def test_an_unknown_data_option_names_it_and_lists_the_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_train(tmp_path, "data.name=mnist1d", "data.options.foo=1")) == 2
    line = _one_line_error(capsys)
    assert line.startswith(
        "gradkit train: config: data.options.foo: dataset 'mnist1d' has no option 'foo'"
    )
    assert "(allowed: num_samples, train_split, seed," in line


def test_an_unknown_data_option_suggests_the_closest(tmp_path: Path) -> None:
    config = _config(tmp_path, "data.name=mnist1d", "data.options.num_sample=100")
    with pytest.raises(ConfigError, match=r"did you mean 'num_samples'\?"):
        _data.load_training_data(config)


def test_tensorboard_on_without_the_package_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "tensorboard":
            return None
        return real_find_spec(name, *args, **kwargs)

    def no_data(config: Config) -> None:
        raise AssertionError("the data was loaded before the tensorboard check")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(_data, "load_training_data", no_data)
    assert main(_train(tmp_path, "log.tensorboard=on")) == 2
    line = _one_line_error(capsys)
    assert line.startswith("gradkit train: config: log.tensorboard: 'on', but the tensorboard")
    assert "pip install tensorboard" in line
    assert not (tmp_path / "runs").exists()


def test_cuda_without_cuda_names_the_available_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(_train(tmp_path, "train.device=cuda")) == 2
    line = _one_line_error(capsys)
    assert line.startswith("gradkit train: config: train.device: 'cuda', but CUDA is not")
    assert "available: 'cpu', or 'auto'" in line
    assert not (tmp_path / "runs").exists()


def test_a_schedule_that_makes_the_lr_negative_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    data: TrainingData,
) -> None:
    monkeypatch.setattr(_data, "load_training_data", lambda config: data)
    argv = _train(tmp_path, "schedule.lr='cosine(200) * -1'", "optim.lr=0.01")
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert line == (
        "gradkit train: config: schedule.lr: the schedule -1.0 * cosine(200) sets lr=-0.01 at "
        "step 0 (param group 0); expected lr >= 0"
    )


def test_the_lr_schedule_is_checked_over_the_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: TrainingData
) -> None:
    # 1 - 2k/10 is negative after step 5; a run of 4 steps sets the values of steps 0..4.
    schedule = "schedule.lr='linear(10, start=1.0, end=-1.0)'"
    short = _config(tmp_path, schedule, "train.steps=4", "log.name='short'")
    assert train(short, data=data).steps == 4
    long = _config(tmp_path, schedule, "train.steps=8", "log.name='long'")
    with pytest.raises(
        ConfigError, match=r"^config: schedule\.lr: .* at step 8 .*expected lr >= 0"
    ):
        train(long, data=data)
