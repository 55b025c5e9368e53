"""Callbacks: objects with any of the hook methods; the loop calls the ones they define."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from gradkit.train._config import Config

__all__ = ["HOOKS", "Callback", "TrainContext"]

HOOKS = ("on_train_start", "after_backward", "on_step_end", "on_eval", "on_train_end")
"""The hooks, in the order of a run: start, then per step after_backward and on_step_end,
on_eval after each evaluation, and on_train_end once at the end (also after an error)."""


@dataclass
class TrainContext:
    """What a callback sees.

    Attributes:
        model: the model being trained (the plain module, not its DDP wrapper).
        optimizer: its optimizer (a :class:`gradkit.optim.SAM` when SAM is on).
        step: optimizer steps completed. In ``after_backward`` the gradients are those of
            step ``step + 1``, before clipping and the update.
        config: the run's :class:`Config`.
        run_dir: the run's directory (files there belong to rank 0).
        rank: this process's rank; world_size: the number of processes.
        loss: the loss of the latest step (a float), or ``None`` before the first.
        metrics: the latest evaluation's metrics.
        should_stop: set it to ``True`` to end the run after the current step.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: Config
    run_dir: Path
    step: int = 0
    rank: int = 0
    world_size: int = 1
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    should_stop: bool = False


@runtime_checkable
class Callback(Protocol):
    """Documentation of the hooks; a callback need not subclass this or define all of them.

    ``on_train_start(ctx)``, ``after_backward(ctx)``, ``on_step_end(ctx)``,
    ``on_eval(ctx, metrics)`` and ``on_train_end(ctx)``.
    """


def hook_table(callbacks: Sequence[Any]) -> dict[str, list[Callable[..., Any]]]:
    """For each hook, the bound methods of the callbacks that define it, in order."""
    table: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}
    for callback in callbacks:
        found = False
        for name in HOOKS:
            method = getattr(callback, name, None)
            if method is not None:
                if not callable(method):
                    raise TypeError(f"callback {callback!r}: {name} is not callable")
                table[name].append(method)
                found = True
        if not found:
            raise TypeError(f"callback {callback!r} defines none of the hooks {', '.join(HOOKS)}")
    return table
