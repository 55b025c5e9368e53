"""One rank of the cross-process batch norm test (run by test_cross_process_batchnorm.py).

Usage: python cross_process_worker.py RANK WORLD_SIZE PORT OUTPUT
Both ranks draw the same full batch, keep their slice, run two training steps and one
evaluation step of CrossProcessBatchNorm and save what they saw.
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


def main() -> None:
    rank, world_size, port, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=30),
    )
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
