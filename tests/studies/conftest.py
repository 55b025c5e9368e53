"""A tiny study for the tests: the logistic model on 600 MNIST-1D samples, a few steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TINY = """
[study]
name = "tiny"
seeds = [0, 1]
metrics = ["test_accuracy", "test_loss"]
target_accuracy = 0.25

[base]
data = {{ name = "mnist1d", options = {{ num_samples = 600 }}, validation_fraction = 0.25 }}
model = {{ name = "logistic" }}
optim = {{ name = "sgd", lr = 0.1, weight_decay = 0.0 }}
schedule = {{ lr = "constant()" }}
train = {{ steps = {steps}, batch_size = 32, eval_every = 5, eval_batch_size = 600 }}

[sweep]
"optim.lr" = [0.03, 0.3]

[[arms]]
name = "sgd"

[[arms]]
name = "momentum"
set = {{ "optim.name" = "momentum" }}
{extra}
[[claims]]
text = "momentum beats plain SGD"
arm = "momentum"
baseline = "sgd"
metric = "test_accuracy"
"""

BROKEN_ARM = """
[[arms]]
name = "broken"
set = { "model.options" = { in_features = 3 } }
"""
"""An arm whose config is valid but whose model does not fit the data: it fails at run time."""


INTERPOLATION = """
[[interpolations]]
name = "sgd_to_momentum"
from = "sgd"
to = "momentum"
alphas = { start = -0.5, stop = 1.5, points = 9 }
"""
"""An interpolation from the sgd arm's solutions to the momentum arm's."""


def tiny_spec_text(*, steps: int = 20, extra: str = "") -> str:
    """The text of the tiny study (8 runs: 2 arms x 2 learning rates x 2 seeds)."""
    return TINY.format(steps=steps, extra=extra)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """``write_spec(text=None, name="tiny", **tiny_options)``: a spec file under tmp_path."""

    def write(text: str | None = None, name: str = "tiny", **options: object) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text if text is not None else tiny_spec_text(**options), encoding="utf-8")  # type: ignore[arg-type]
        return path

    return write


@pytest.fixture
def spec_error(write_spec: Callable[..., Path]) -> Callable[[str], str]:
    """``spec_error(text)``: the message of the SpecError that loading ``text`` raises, the
    path prefix checked and removed."""
    from gradkit.studies import SpecError, load_spec

    def error(text: str) -> str:
        path = write_spec(text)
        with pytest.raises(SpecError) as raised:
            load_spec(path)
        prefix = f"{path}: "
        assert str(raised.value).startswith(prefix)
        return str(raised.value)[len(prefix) :]

    return error


@pytest.fixture
def tiny_text() -> Callable[..., str]:
    """The function :func:`tiny_spec_text`, for tests that edit the text."""
    return tiny_spec_text


@pytest.fixture
def broken_arm() -> str:
    """The text of :data:`BROKEN_ARM`."""
    return BROKEN_ARM


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of the tiny study, run to the end and reported."""
    return _run_tiny(tmp_path_factory.mktemp("study"), tiny_spec_text())[0]


@pytest.fixture
def interpolation() -> str:
    """The text of :data:`INTERPOLATION`."""
    return INTERPOLATION


@pytest.fixture(scope="module")
def interpolated_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study with :data:`INTERPOLATION`, run (each run's directory kept) and reported."""
    directory = tmp_path_factory.mktemp("interpolated")
    out, outcome = _run_tiny(directory, tiny_spec_text(extra=INTERPOLATION), keep_runs=True)
    assert outcome.failed == {} and outcome.interpolation_failed == {}
    assert len(outcome.interpolated) == 8  # 2 x 2 sweep points per seed, 2 seeds
    return out


def _run_tiny(directory: Path, text: str, **options: Any) -> tuple[Path, Any]:
    """Run the study ``text`` in ``directory``/out and report it; (out, the runner's outcome)."""
    from gradkit.studies import run_study, write_report

    spec = directory / "tiny.toml"
    spec.write_text(text, encoding="utf-8")
    outcome = run_study(spec, directory / "out", threads=1, progress=False, **options)
    write_report(directory / "out")
    return directory / "out", outcome
