"""Evaluation: loss and accuracy of one model or of an ensemble, each sample counted once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradkit.train._distributed import Distributed

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    models: Sequence[nn.Module],
    inputs: Tensor,
    labels: Tensor,
    *,
    batch_size: int,
    dist: Distributed,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``(inputs, labels)``.

    With several models, the prediction is the average of their softmax outputs (a snapshot
    ensemble, arXiv 1704.00109) and the loss is the negative log of that average. Each process
    evaluates the samples ``rank, rank + world_size, ...`` and the sums are added up over
    processes, so every sample counts exactly once.
    """
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    try:
        mine = torch.arange(dist.rank, len(labels), dist.world_size)
        for start in range(0, len(mine), batch_size):
            index = mine[start : start + batch_size]
            x = inputs[index].to(dist.device, non_blocking=True)
            y = labels[index].to(dist.device, non_blocking=True)
            if len(models) == 1:
                logits = models[0](x)
                loss = F.cross_entropy(logits, y, reduction="sum")
                predicted = logits.argmax(dim=1)
            else:
                probabilities = torch.stack([m(x).softmax(dim=1) for m in models]).mean(dim=0)
                log_probabilities = probabilities.clamp_min(1e-12).log()
                loss = F.nll_loss(log_probabilities, y, reduction="sum")
                predicted = probabilities.argmax(dim=1)
            totals[0] += loss.item()
            totals[1] += (predicted == y).sum().item()
            totals[2] += len(y)
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    totals = dist.all_reduce_sum(totals.to(dist.device)).cpu()
    count = max(totals[2].item(), 1.0)
    return totals[0].item() / count, totals[1].item() / count
