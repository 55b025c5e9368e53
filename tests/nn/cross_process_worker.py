"""One rank of the cross-process batch norm test (run by test_cross_process_batchnorm.py).

Usage: python cross_process_worker.py RANK WORLD_SIZE PORT OUTPUT [SCENARIO]
Both ranks draw the same full batch and keep their slice. Scenario ``train`` (the default):
two training steps and one evaluation step of CrossProcessBatchNorm, saving what they saw.
Scenario ``evaluate``: a bfloat16 training step, then every rank evaluates, then rank 0
evaluates alone while the others wait at a barrier; what each phase saw is saved as it ends.
"""

from __future__ import annotations

import datetime
import sys

import torch
import torch.distributed as dist

from gradkit.nn import CrossProcessBatchNorm

SPLITS = (5, 3)  # unequal local batches: the statistics must weigh them by count


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The full batch and upstream gradient of ``step`` (identical in every process)."""
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(sum(SPLITS), 3, 4, 2, dtype=torch.float64, generator=generator) * 2 + 1
    g = torch.randn(x.shape, dtype=torch.float64, generator=generator)
    return x, g


GROUP_TIMEOUT_S = 10  # of the group the evaluate scenario runs in: a hang fails in seconds
BFLOAT16_OFFSET = 100.0  # a mean at which bfloat16 has a spacing of 0.5: sums must be float32


def bfloat16_batch() -> torch.Tensor:
    """The full bfloat16 batch of the evaluate scenario: mean 100, standard deviation 2."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(sum(SPLITS), 3, 6, generator=generator) * 2 + BFLOAT16_OFFSET
    return x.to(torch.bfloat16)


def evaluate(rank: int, output: str) -> None:
    """The evaluate scenario (see the module docstring)."""
    group = dist.new_group(timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    start = sum(SPLITS[:rank])
    local = slice(start, start + SPLITS[rank])
    saved: dict[str, torch.Tensor] = {}
    layer = CrossProcessBatchNorm(3, process_group=group).to(torch.bfloat16)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    saved["bfloat16_out"] = layer(bfloat16_batch()[local]).detach()
    torch.save(saved, output)
    layers = {
        tracked: CrossProcessBatchNorm(3, track_running_stats=tracked, process_group=group)
        for tracked in (True, False)
    }
    x = batch(0)[0].float()[local]
    for layer in layers.values():
        layer(x)  # one training step: synchronised running statistics where they are kept
        layer.eval()
    evaluated = batch(1)[0].float()[local]
    with torch.no_grad():
        for tracked, layer in layers.items():
            saved[f"eval_{tracked}"] = layer(evaluated)
        torch.save(saved, output)
        if rank == 0:  # e.g. validation on rank 0 while the others wait
            for tracked, layer in layers.items():
                saved[f"alone_{tracked}"] = layer(evaluated)
            torch.save(saved, output)
    dist.barrier()


def main() -> None:
    rank, world_size, port, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    scenario = sys.argv[5] if len(sys.argv) > 5 else "train"
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=30),
    )
    if scenario == "evaluate":
        evaluate(rank, output)
        dist.destroy_process_group()
        return
    torch.manual_seed(0)
    layer = CrossProcessBatchNorm(3, momentum=0.3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    start = sum(SPLITS[:rank])
    local = slice(start, start + SPLITS[rank])
    saved: dict[str, torch.Tensor] = {}
    for step in range(2):
        x, g = batch(step)
        x = x[local].clone().requires_grad_(True)
        layer.zero_grad()
        out = layer(x)
        (out * g[local]).sum().backward()
        saved[f"out{step}"] = out.detach()
        saved[f"input_grad{step}"] = x.grad
        saved[f"weight_grad{step}"] = layer.weight.grad.clone()
        saved[f"bias_grad{step}"] = layer.bias.grad.clone()
    saved["running_mean"] = layer.running_mean.clone()
    saved["running_var"] = layer.running_var.clone()
    saved["num_batches_tracked"] = layer.num_batches_tracked.clone()
    layer.eval()
    saved["eval"] = layer(batch(2)[0][local]).detach()
    torch.save(saved, output)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
