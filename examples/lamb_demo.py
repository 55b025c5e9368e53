"""Train a small MLP with LAMB on locally generated data and print the loss falling.

The task: 20-dimensional Gaussian inputs labelled (10 classes) by a fixed random teacher
network, so nothing is downloaded. Run: ``python examples/lamb_demo.py``.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import gradkit.optim as gko


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 10))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        x = torch.randn(n, 20, generator=generator)
        y = teacher(x).argmax(dim=1)
    return x, y


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x, y = make_data(12_000, generator)
    x_train, y_train, x_test, y_test = x[:10_000], y[:10_000], x[10_000:], y[10_000:]
    model = nn.Sequential(
        nn.Linear(20, 128),
        nn.LayerNorm(128),
        nn.GELU(),
        nn.Linear(128, 128),
        nn.GELU(),
        nn.Linear(128, 10),
    )
    groups = gko.param_groups(model, weight_decay=0.01, head=model[5])
    optimizer = gko.LAMB(groups, lr=5e-3)
    print(
        f"gradkit LAMB demo: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(groups)} param groups (biases and norms exempt from decay and trust ratio)"
    )
    start = time.perf_counter()
    batch_size, step = 250, 0
    for epoch in range(1, 11):
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            index = order[i : i + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            step += 1
        with torch.no_grad():
            accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
        print(
            f"epoch {epoch:2d}  step {step:4d}  train loss {total / len(x_train):.4f}  "
            f"test accuracy {accuracy:.3f}"
        )
    print(f"done in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
