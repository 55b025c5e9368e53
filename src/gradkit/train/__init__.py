"""The training engine (floor 3): a validated config, the loop, checkpoints, metrics, DDP.

:func:`train` runs a :class:`Config` (built by :func:`load_config` from TOML plus
``section.key=value`` overrides) and returns a :class:`RunResult`. A run directory holds
``config.toml``, ``steps.csv``/``steps.jsonl``, ``evals.csv``/``evals.jsonl``,
``checkpoints/{last,previous,best}.pt``, ``snapshots/`` and ``summary.json``.

Example:
    >>> config = load_config(None, ["train.steps=2000", "schedule.lr=cosine(2000)"])
    >>> result = train(config)
    >>> result.test_accuracy
"""

from gradkit.train._build import build_model
from gradkit.train._callbacks import HOOKS, Callback, TrainContext
from gradkit.train._checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from gradkit.train._config import (
    CheckpointConfig,
    Config,
    ConfigError,
    DataConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    save_config,
)
from gradkit.train._data import TrainingData
from gradkit.train._evaluate import evaluate
from gradkit.train._loop import NonFiniteLossError, RunResult, Trainer, train
from gradkit.train._metrics import EVAL_FIELDS, STEP_FIELDS, read_jsonl
from gradkit.train._report import TrainingInterrupted
from gradkit.train._resume import CHANGEABLE_ON_RESUME
from gradkit.train._run_dir import RunDirError

__all__ = [
    "CHANGEABLE_ON_RESUME",
    "EVAL_FIELDS",
    "HOOKS",
    "STEP_FIELDS",
    "Callback",
    "CheckpointConfig",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "RunDirError",
    "RunResult",
    "ScheduleConfig",
    "TrainConfig",
    "TrainContext",
    "Trainer",
    "TrainingData",
    "TrainingInterrupted",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "evaluate",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "read_jsonl",
    "save_checkpoint",
    "save_config",
    "train",
]
