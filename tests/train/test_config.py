"""The config: defaults, TOML round trip, overrides, and a table of bad inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradkit.train import Config, ConfigError, config_to_toml, load_config, save_config
from gradkit.train._config import parse_override


def test_defaults_are_the_default_recipe() -> None:
    config = load_config()
    assert config == Config()
    assert (config.model.name, config.data.name) == ("cnn", "mnist1d")
    assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adamw", 0.01, 0.2)
    assert config.model.options is None
    assert config.model.resolved_options() == {"width": 64}
    # The recipe's width belongs to the CNN: another model gets its registry defaults ...
    assert load_config(None, ["model.name=logistic"]).model.resolved_options() == {}
    # ... and options given replace the recipe's (the paper's CNN).
    assert load_config(None, ["model.options={}"]).model.resolved_options() == {}
    assert load_config(None, ["model.options.depth=2"]).model.resolved_options() == {"depth": 2}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            "optim.name=lamb",
            "optim.lr=0.002",
            "optim.options.betas=[0.9, 0.99]",
            "optim.clip_grad_norm=1.0",
            "model.options.width=64",
            'schedule.lr="warmup(10) >> cosine(90)"',
            "train.micro_batch_size=25",
            'log.name="a \\"quoted\\" name"',
        ],
    )
    path = save_config(config, tmp_path / "config.toml")
    again = load_config(path)
    assert again == config
    assert again.optim.options == {"betas": [0.9, 0.99]}
    assert again.log.name == 'a "quoted" name'
    assert "clip_grad_norm = 1.0" in path.read_text()


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[optim]\nname = "sgd"\nlr = 0.5\n[train]\nsteps = 7\n')
    config = load_config(path, ["optim.lr=0.1", "model.name=gru"])
    assert (config.optim.name, config.optim.lr, config.train.steps) == ("sgd", 0.1, 7)
    assert config.model.name == "gru"  # a bare word is a string


def test_an_integer_is_accepted_for_a_float() -> None:
    config = load_config(None, ["optim.lr=1"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


def test_updated_validates() -> None:
    config = Config().updated({"train.steps": 5})
    assert config.train.steps == 5
    with pytest.raises(ConfigError, match=re.escape("config: unknown key 'train.step'")):
        Config().updated({"train.step": 5})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.l=0.1"], "config: unknown key 'optim.l'; did you mean 'optim.lr'?"),
        (["optimm.lr=0.1"], "config: unknown key 'optimm.lr'; did you mean 'optim.lr'?"),
        (["train.stesp=10"], "config: unknown key 'train.stesp'; did you mean 'train.steps'?"),
        (["optim.lr=fast"], "config: optim.lr must be a number, got 'fast' (str)"),
        (["optim.lr=true"], "config: optim.lr must be a number, got True (bool)"),
        (["optim.lr=-1"], "config: optim.lr must be a number >= 0, got -1.0"),
        (["optim.lr=nan"], "config: optim.lr must be a finite number, got nan"),
        (["train.steps=1.5"], "config: train.steps must be an integer, got 1.5 (float)"),
        (["train.steps=0"], "config: train.steps must be an integer >= 1, got 0"),
        (
            ["train.micro_batch_size=0"],
            "config: train.micro_batch_size must be an integer >= 1, got 0",
        ),
        (
            ["train.micro_batch_size=x"],
            "config: train.micro_batch_size must be an integer (or absent), got 'x' (str)",
        ),
        (
            ["train.non_finite=ignore"],
            "config: train.non_finite must be one of 'stop', 'skip', got 'ignore' (str)",
        ),
        (
            ["train.deterministic=yes"],
            "config: train.deterministic must be true or false, got 'yes' (str)",
        ),
        (["model.options=3"], "config: model.options must be a table (or absent), got 3 (int)"),
        (
            ["data.validation_fraction=1"],
            "config: data.validation_fraction must be a number in [0, 1), got 1.0",
        ),
        (
            ["lr=0.1"],
            "config: invalid override 'lr=0.1'; expected section.key=value, e.g. optim.lr=0.1",
        ),
        (
            ["optim.lr"],
            "config: invalid override 'optim.lr'; expected section.key=value, e.g. optim.lr=0.1",
        ),
        (
            ["optim.lr.x=1"],
            "config: unknown key 'optim.lr.x'; did you mean 'optim.lr'?",
        ),
        (
            ["model.name=cnnn"],
            "config: model.name: unknown model 'cnnn'; did you mean 'cnn'?",
        ),
        (
            ["optim.name=adm"],
            "config: optim.name: unknown optimizer 'adm'; "
            "did you mean 'adam' or 'radam' or 'nadam'? (known: sgd, momentum,",
        ),
        (["schedule.lr=cosin(100)"], "config: schedule.lr: "),
        (
            ["train.batch_size=10", "train.micro_batch_size=20"],
            "config: train.micro_batch_size=20 is larger than train.batch_size=10",
        ),
        (
            ["checkpoint.snapshot_ensemble=3"],
            "config: checkpoint.snapshot_ensemble=3 needs an lr schedule with cycles",
        ),
    ],
)
def test_bad_overrides(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optimizer]\nlr = 0.1\n", "config: unknown section 'optimizer'; did you mean 'optim'?"),
        ("[optim]\nlearning_rate = 0.1\n", "config: unknown key 'optim.learning_rate'"),
        ("optim = 3\n", "config: [optim] must be a table, got 3"),
        ("[optim\nlr = 0.1\n", "config: "),
        ('[train]\nsteps = "100"\n', "config: train.steps must be an integer, got '100' (str)"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(message), str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[optim\n")
    with pytest.raises(ConfigError, match=re.escape(f"config: {path} is not valid TOML")):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=re.escape("config: no such file 'nowhere.toml'")):
        load_config("nowhere.toml")


def test_override_values_are_toml() -> None:
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 1e-3)
    assert parse_override("train.deterministic=true") == ("train.deterministic", True)
    assert parse_override("schedule.lr=cosine(100)") == ("schedule.lr", "cosine(100)")
    assert parse_override("optim.options.betas=[0.9, 0.95]")[1] == [0.9, 0.95]


def test_none_is_written_as_absent() -> None:
    text = config_to_toml(Config())
    assert "clip_grad_norm" not in text and "micro_batch_size" not in text
