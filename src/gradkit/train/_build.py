"""Build the parts of a run from its config: model, optimizer, scheduler, run directory."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradkit.models import get_model
from gradkit.optim import SAM, get_optimizer, param_groups
from gradkit.schedules import ParamScheduler, ScheduledValueError, parse
from gradkit.train._config import Config, ConfigError
from gradkit.train._metrics import check_tensorboard

__all__ = ["build_model", "build_optimizer", "build_scheduler", "new_run_dir", "run_settings"]


def build_model(config: Config, input_shape: tuple[int, ...], classes: int | None) -> nn.Module:
    """The configured model; sizes the user left out are taken from the data.

    ``classes``, ``in_features`` (the flattened input), ``length`` and ``in_channels`` are
    filled in where the model takes them and ``model.options`` does not set them.
    """
    spec = get_model(config.model.name)
    accepted = spec.options()
    inferred: dict[str, Any] = {}
    if classes is not None:
        inferred["classes"] = classes
    if input_shape:
        inferred["in_features"] = math.prod(input_shape)
        inferred["length"] = input_shape[-1]
        inferred["in_channels"] = input_shape[0] if len(input_shape) >= 2 else 1
    options = {k: v for k, v in inferred.items() if k in accepted}
    options.update(config.model.resolved_options())
    try:
        return spec.create(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config: model.options: {error}") from None


def build_optimizer(config: Config, model: nn.Module) -> tuple[torch.optim.Optimizer, SAM | None]:
    """The optimizer, and the SAM wrapper around it when ``optim.sam_rho`` is set.

    With weight decay, or with LARS/LAMB, the params are split by
    :func:`gradkit.optim.param_groups` (no decay and no trust ratio for biases and
    normalization parameters); otherwise they form one group, since every extra group costs
    a few small kernels per step. AGC is applied by the loop, which leaves the head out, so
    the head needs no group of its own.
    """
    optim = config.optim
    if optim.weight_decay > 0 or optim.name.lower() in ("lars", "lamb"):
        groups: Any = param_groups(model, weight_decay=optim.weight_decay)
    else:
        groups = [{"params": list(model.parameters()), "weight_decay": 0.0}]
    options = dict(optim.options)
    for key, value in options.items():
        if isinstance(value, list):  # TOML has arrays, optimizers take tuples (betas)
            options[key] = tuple(value)
    try:
        optimizer = get_optimizer(optim.name).create(groups, lr=optim.lr, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config: optim.options: {error}") from None
    if optim.sam_rho is None:
        return optimizer, None
    return optimizer, SAM(optimizer, rho=optim.sam_rho, adaptive=optim.sam_adaptive)


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer) -> ParamScheduler:
    """The lr scheduler: ``schedule.lr`` times ``optim.lr``, one scheduler step per update.

    A schedule that makes the lr negative (or not finite) anywhere in the run's
    ``train.steps`` is a :class:`ConfigError` here, before training starts.
    """
    try:
        return ParamScheduler(optimizer, parse(config.schedule.lr), "lr", steps=config.train.steps)
    except ScheduledValueError as error:
        message = str(error).removeprefix("ParamScheduler: ")
        raise ConfigError(f"config: schedule.lr: {message}") from None


def new_run_dir(config: Config) -> Path:
    """``log.root/log.name``, or ``log.root/<start time>`` with a suffix if that exists."""
    root = Path(config.log.root)
    if config.log.name is not None:
        return root / config.log.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, number = root / stamp, 1
    while path.exists():
        number += 1
        path = root / f"{stamp}-{number}"
    return path


@contextlib.contextmanager
def run_settings(config: Config) -> Iterator[None]:
    """Threads and deterministic mode for the run; the previous settings come back after.

    It first checks what the config asks of this machine (TensorBoard installed), so that a
    run which cannot log as asked fails before it loads data or writes a file.
    """
    check_tensorboard(config.log.tensorboard)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    if config.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = benchmark
