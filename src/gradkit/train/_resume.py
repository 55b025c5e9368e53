"""Which config keys may change when a run is resumed, and the check that refuses the others.

A checkpoint holds a model of one architecture, the state of one optimizer and a position in
one data order. A key that decides any of these (:data:`FIXED_ON_RESUME`) cannot change on
resume: the new value would be merged into a state made for the old one (an SGD that inherits
AdamW's moments) or would not fit it at all. A key of :data:`CHANGEABLE_ON_RESUME` only affects
what happens from the checkpoint's step on: train longer, evaluate, log or checkpoint at other
intervals, use another device. ``schedule.lr`` is one of them: the steps already taken keep
the rates they had, and the steps after the checkpoint follow the new schedule (lengths are in
steps from the start of the run, as always).
"""

from __future__ import annotations

from typing import Any

from gradkit.train._config import Config, config_to_dict
from gradkit.train._sections import ConfigError

__all__ = ["CHANGEABLE_ON_RESUME", "FIXED_ON_RESUME", "check_resume_changes"]

FIXED_ON_RESUME: dict[str, str] = {
    "data.name": "the data",
    "data.options": "the data",
    "data.validation_fraction": "the data (the training split)",
    "data.validation_seed": "the data (the training split)",
    "model.name": "the model",
    "model.options": "the model",
    "optim.name": "the optimizer",
    "optim.lr": "the optimizer",
    "optim.weight_decay": "the optimizer",
    "optim.options": "the optimizer",
    "optim.clip_grad_norm": "the optimizer",
    "optim.agc": "the optimizer",
    "optim.agc_eps": "the optimizer",
    "optim.agc_exclude": "the optimizer",
    "optim.sam_rho": "the optimizer",
    "optim.sam_adaptive": "the optimizer",
    "optim.average": "the averaged weights the checkpoint holds",
    "schedule.batch": "the data order (the sampler's position counts batches)",
    "schedule.max_batch_size": "the data order (the sampler's position counts batches)",
    "train.batch_size": "the data order (the sampler's position counts batches)",
    "train.seed": "the data order and the model's initialization",
    "checkpoint.best_metric": "the best value the checkpoint holds",
    "checkpoint.snapshot_ensemble": "the snapshots kept so far",
}
"""Keys a resumed run must keep, with what they decide: change them in a new run."""

CHANGEABLE_ON_RESUME: tuple[str, ...] = (
    "data.root",  # where the same files are found
    "schedule.lr",  # the rates of the steps after the checkpoint
    "train.steps",
    "train.micro_batch_size",  # the same gradient, accumulated in other pieces
    "train.eval_every",
    "train.eval_batch_size",
    "train.deterministic",
    "train.non_finite",
    "train.max_skipped",
    "train.device",
    "train.threads",
    "train.distributed_timeout",
    "train.precision",  # the arithmetic of the steps after the checkpoint, not its state
    "train.compile",
    "checkpoint.every",
    "checkpoint.best",
    "log.root",
    "log.name",
    "log.every",
    "log.progress",
    "log.tensorboard",
)
"""Keys that may change on resume: they do not change what the checkpoint holds."""


def _flat(config: Config) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, table in config_to_dict(config).items()
        for key, value in table.items()
    }


def _changed_option(key: str, old: Any, new: Any) -> tuple[str, Any, Any]:
    """For a table such as ``model.options``, the first entry that differs."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return key, old, new
    for name in sorted(set(old) | set(new), key=str):
        if old.get(name, ...) != new.get(name, ...):
            return f"{key}.{name}", old.get(name, "(absent)"), new.get(name, "(absent)")
    return key, old, new


def check_resume_changes(saved: Config, config: Config) -> list[str]:
    """The keys of :data:`CHANGEABLE_ON_RESUME` that differ; refuse any other change.

    Raises:
        ConfigError: naming the first key of :data:`FIXED_ON_RESUME` that ``config`` changes,
            its old and new value, and saying to start a new run.
    """
    old, new = _flat(saved), _flat(config)
    if saved.model.resolved_options() == config.model.resolved_options():
        new["model.options"] = old["model.options"]  # absent and the recipe's are the same
    changed = [key for key in old if old[key] != new[key]]
    for key in changed:
        if key in CHANGEABLE_ON_RESUME:
            continue
        what = FIXED_ON_RESUME.get(key, "what the checkpoint holds")
        name, before, after = _changed_option(key, old[key], new[key])
        raise ConfigError(
            f"config: {name} cannot change on resume ({before!r} -> {after!r}): it decides "
            f"{what}, and the checkpoint was made with the old value; start a new run "
            f"(a new directory) to change it"
        )
    return changed
