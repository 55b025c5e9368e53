"""What the model-diagnostic verbs share: a registered model on a registered dataset, briefly
trained, and the argument types of their command lines.

The verbs measure a model "after some training" without a run directory, so a short plain loop
(forward, backward, step on shuffled mini-batches) stands in for the training engine here.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradkit.cli._types import non_negative_integer, positive_float, positive_integer
from gradkit.data import load_dataset
from gradkit.models import get_model
from gradkit.optim import create_optimizer

__all__ = [
    "add_model_arguments",
    "add_training_arguments",
    "fit",
    "load_model_and_data",
]


def add_model_arguments(parser: argparse.ArgumentParser, *, model: str = "mlp") -> None:
    """``--model``, ``--dataset``, ``--samples``, ``--seed`` and the short training before."""
    parser.add_argument("--model", default=model, help=f"a registered model (default {model})")
    parser.add_argument("--dataset", default="mnist1d", help="a dataset (default mnist1d)")
    parser.add_argument(
        "--samples",
        type=positive_integer,
        default=None,
        help="use only the first N training samples (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data order")


def add_training_arguments(parser: argparse.ArgumentParser, *, steps: int) -> None:
    """``--optimizer``, ``--lr``, ``--train-steps``, ``--batch-size`` of the training before."""
    parser.add_argument("--optimizer", default="adam", help="a registered optimizer (adam)")
    parser.add_argument("--lr", type=positive_float, default=None, help="its learning rate")
    parser.add_argument(
        "--train-steps",
        type=non_negative_integer,
        default=steps,
        help=f"optimizer steps before measuring (default {steps}; 0: at initialisation)",
    )
    parser.add_argument(
        "--batch-size", type=positive_integer, default=64, help="mini-batch size (default 64)"
    )


def load_model_and_data(args: argparse.Namespace) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    """Build ``args.model`` with seed ``args.seed`` and load the training split of
    ``args.dataset`` (its first ``args.samples`` samples)."""
    spec = get_model(args.model)
    splits = load_dataset(args.dataset)
    inputs, targets = splits.train.tensors
    if args.samples is not None:
        inputs, targets = inputs[: args.samples], targets[: args.samples]
    torch.manual_seed(args.seed)
    return spec.create(), (inputs, targets)


def fit(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    *,
    optimizer: str,
    lr: float | None,
    steps: int,
    batch_size: int,
    seed: int,
) -> float:
    """Train ``steps`` steps on shuffled mini-batches; returns the last batch's loss."""
    overrides = {} if lr is None else {"lr": lr}
    opt = create_optimizer(optimizer, model.parameters(), **overrides)
    inputs, targets = data
    generator = torch.Generator().manual_seed(seed)
    model.train()
    loss = math.nan
    order = torch.randperm(len(inputs), generator=generator)
    position = 0
    for _ in range(steps):
        if position >= len(inputs):
            order, position = torch.randperm(len(inputs), generator=generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        opt.zero_grad()
        value = F.cross_entropy(model(inputs[index]), targets[index])
        value.backward()
        opt.step()
        loss = float(value.detach())
    return loss
