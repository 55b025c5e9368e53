"""Fixtures of the engine tests: synthetic data and a small config, shared with worker.py."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from gradkit.train import Config, TrainingData

WORKER = Path(__file__).with_name("worker.py")
"""The script that the subprocess tests run (directly or under torchrun)."""


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gradkit_train_test_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


@pytest.fixture
def data() -> TrainingData:
    """240 training and 101 test samples of a learnable 10-class problem."""
    return worker.synthetic_data()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """``make_config(*overrides, name="run")``: the small config, run dir under tmp_path."""

    def make(*overrides: str, name: str = "run") -> Config:
        return worker.small_config(tmp_path / name, *overrides)

    return make
