"""``gradkit train``: train a model from a config and print a summary of the run."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from gradkit.schedules import ScheduledValueError
from gradkit.train import (
    CHANGEABLE_ON_RESUME,
    CheckpointError,
    Config,
    ConfigError,
    NonFiniteLossError,
    RunResult,
    TrainingInterrupted,
    load_config,
    train,
)

__all__ = ["main", "register"]


def _options_text() -> str:
    """Every config key with its default, for ``--help``."""
    lines = ["config keys (section.key=value; TOML values, bare words are strings):"]
    defaults = Config()
    for section in dataclasses.fields(Config):
        table = getattr(defaults, section.name)
        hints = typing.get_type_hints(type(table))
        for item in dataclasses.fields(table):
            value = getattr(table, item.name)
            kind = str(hints[item.name]).replace("typing.", "")
            lines.append(f"  {section.name}.{item.name:<22} {value!r:<14} {kind}")
    return "\n".join(lines)


def _resume_text() -> str:
    """What --resume lets change, for ``--help``."""
    keys = ", ".join(CHANGEABLE_ON_RESUME)
    return (
        "--resume keeps the model, the optimizer and the data of the run (a change to them is "
        "refused: start a new run); these keys may change: " + keys + ". A new schedule.lr "
        "applies to the steps after the checkpoint. Ctrl-C stops after a checkpoint of the "
        "current step (exit status 130); --resume continues from it."
    )


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` verb to the ``gradkit`` command."""
    parser = commands.add_parser(
        "train",
        help="train a model (default: the MNIST-1D CNN) and report its test accuracy",
        description="Train a model from a TOML config plus key=value overrides. With no "
        "arguments: the MNIST-1D CNN with the default recipe (AdamW, warm-up then cosine).",
        epilog=_options_text()
        + "\n\n"
        + _resume_text()
        + "\n\nexamples:\n  gradkit train\n  gradkit train config.toml optim.lr=0.003\n"
        "  gradkit train model.name=gru train.steps=2000\n"
        "  gradkit train --resume runs/20260509-073512",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(handler=_train_command)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "items",
        nargs="*",
        metavar="[CONFIG.toml] [section.key=value ...]",
        help="a config file and/or overrides such as optim.lr=0.1",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its latest usable checkpoint (with its saved "
        "config; overrides of the keys listed below still apply, e.g. train.steps=12000 to "
        "train longer)",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="the run's directory (default: log.root/log.name, else runs/<start time>); it "
        "must not hold another run: continue that one with --resume DIR",
    )


def _train_command(args: argparse.Namespace) -> int:
    items = list(args.items)
    path = items.pop(0) if items and "=" not in items[0] else None
    run_dir = args.run_dir
    try:
        if args.resume is not None:
            if path is not None:
                raise ConfigError(
                    f"config: give either a config file ({path}) or --resume (which reads "
                    f"{args.resume}/config.toml), not both"
                )
            run_dir = args.resume
            path = Path(args.resume) / "config.toml"
            if not path.exists():
                raise ConfigError(f"config: --resume {args.resume}: no config.toml there")
        config = load_config(path, items)
        result = train(config, run_dir=run_dir, resume=args.resume is not None)
    except (ConfigError, CheckpointError, NonFiniteLossError, ScheduledValueError) as error:
        print(f"gradkit train: {error}", file=sys.stderr)
        return 2 if isinstance(error, (ConfigError, ScheduledValueError)) else 1
    except TrainingInterrupted as stopped:
        if stopped.rank == 0:
            how = "interrupted" if stopped.signal == signal.SIGINT else "stopped by SIGTERM"
            print(
                f"gradkit train: {how} after step {stopped.step}, saved in "
                f"{stopped.checkpoint}; continue with: gradkit train --resume "
                f"{shlex.quote(str(stopped.run_dir))}",
                file=sys.stderr,
            )
        return 128 + stopped.signal
    except KeyboardInterrupt:
        where = run_dir if run_dir is not None else args.resume
        hint = f"; continue with: gradkit train --resume {shlex.quote(where)}" if where else ""
        print(f"gradkit train: interrupted{hint}", file=sys.stderr)
        return 130
    if result.rank == 0:
        _print_summary(config, result)
    return 0


def _print_summary(config: Config, result: RunResult) -> None:
    metrics = result.metrics
    minutes, seconds = divmod(result.seconds, 60)
    print(
        f"model      {config.model.name} on {config.data.name}, {config.optim.name} "
        f"lr {config.optim.lr:g}, schedule {config.schedule.lr}"
    )
    print(
        f"steps      {result.steps}"
        + (f" ({result.skipped_steps} skipped)" if result.skipped_steps else "")
    )
    print(f"time       {int(minutes)}m{seconds:04.1f}s")
    if "val_accuracy" in metrics:
        print(
            f"val        accuracy {100 * metrics['val_accuracy']:.2f}%, "
            f"loss {metrics['val_loss']:.4f}"
        )
    print(
        f"test       accuracy {100 * metrics['test_accuracy']:.2f}%, "
        f"loss {metrics['test_loss']:.4f}"
    )
    _print_best(config, result)
    if "ensemble_test_accuracy" in metrics:
        print(
            f"ensemble   {metrics['ensemble_size']} snapshots, test accuracy "
            f"{100 * metrics['ensemble_test_accuracy']:.2f}%"
        )
    print(f"run        {result.run_dir}")


def _print_best(config: Config, result: RunResult) -> None:
    """What ``best.pt`` was selected on, or why there is none."""
    best = result.best
    if best is None:
        return
    if best["metric"] is None:
        print(
            "best       none: no validation split (data.validation_fraction = 0) and "
            "checkpoint.best_metric = 'auto' never selects on test"
        )
    elif best["step"] is None:
        print(f"best       none: {best['metric']} never improved (it was NaN)")
    else:
        value = best["value"]
        shown = f"{100 * value:.2f}%" if best["metric"].endswith("accuracy") else f"{value:.4f}"
        print(
            f"best       {best['metric']} {shown} at step {best['step']} "
            f"({result.run_dir / 'checkpoints' / 'best.pt'})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``gradkit train`` on its own (what ``gradkit train ...`` runs); returns the exit status."""
    parser = argparse.ArgumentParser(prog="gradkit train")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))
