"""Schedule-free SGD and AdamW against the ``schedulefree`` package (float64, 100 steps), the
average x against its definition, state round trips mid-run, and bad input."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from gradkit.optim import ScheduleFreeAdamW, ScheduleFreeSGD

schedulefree = pytest.importorskip("schedulefree")

TOLERANCE = 1e-10


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def data(steps: int = 100) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    return [
        (
            torch.randn(8, 4, generator=generator, dtype=torch.float64),
            torch.randn(8, 2, generator=generator, dtype=torch.float64),
        )
        for _ in range(steps)
    ]


def backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()


def difference(a: nn.Module, b: nn.Module) -> float:
    return max(
        float((p - q).detach().abs().max())
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


CASES: list[tuple[type, type, dict[str, Any]]] = [
    (ScheduleFreeSGD, schedulefree.SGDScheduleFree, {"lr": 0.2}),
    (
        ScheduleFreeSGD,
        schedulefree.SGDScheduleFree,
        {"lr": 0.2, "momentum": 0.8, "weight_decay": 1e-2, "warmup_steps": 10, "r": 0.5},
    ),
    (ScheduleFreeAdamW, schedulefree.AdamWScheduleFree, {"lr": 0.01}),
    (
        ScheduleFreeAdamW,
        schedulefree.AdamWScheduleFree,
        {
            "lr": 0.02,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.05,
            "warmup_steps": 10,
            "r": 1.0,
            "weight_lr_power": 1.0,
        },
    ),
]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(("ours_class", "theirs_class", "settings"), CASES)
def test_matches_the_schedulefree_package(
    ours_class: type, theirs_class: type, settings: dict[str, Any], foreach: bool
) -> None:
    ours_model, theirs_model = tiny_model(), tiny_model()
    ours = ours_class(ours_model.parameters(), **settings)
    theirs = theirs_class(theirs_model.parameters(), foreach=foreach, **settings)
    ours.train()
    theirs.train()
    start = [p.detach().clone() for p in ours_model.parameters()]
    worst = 0.0
    for step, (x, y) in enumerate(data()):
        backward(ours_model, x, y)
        backward(theirs_model, x, y)
        ours.step()
        theirs.step()
        worst = max(worst, difference(ours_model, theirs_model))
        if step % 25 == 24:  # the eval weights x, then back
            ours.eval()
            theirs.eval()
            worst = max(worst, difference(ours_model, theirs_model))
            ours.train()
            theirs.train()
    assert worst <= TOLERANCE
    moved = max(
        float((p.detach() - q).abs().max())
        for p, q in zip(ours_model.parameters(), start, strict=True)
    )
    assert moved > 1e-2


def test_eval_weights_are_the_average_of_the_z_iterates() -> None:
    # With r = 0 and weight_lr_power = 0, c_t = 1/t: x_t is the mean of z_1 .. z_t.
    w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([1.0, 3.0], dtype=torch.float64)
    optimizer = ScheduleFreeSGD([w], lr=0.1, momentum=0.75, weight_lr_power=0.0)
    zs = []
    for _ in range(12):
        optimizer.zero_grad()
        (0.5 * scales * w**2).sum().backward()
        optimizer.step()
        zs.append(optimizer.state[w]["z"].clone())
    y = w.detach().clone()
    x = torch.stack(zs).mean(0)
    assert torch.allclose(y, 0.25 * zs[-1] + 0.75 * x, atol=1e-14)
    optimizer.eval()
    assert torch.allclose(w.detach(), x, atol=1e-14)
    assert not optimizer.training


@pytest.mark.parametrize(
    "factory",
    [
        lambda p: ScheduleFreeSGD(p, lr=0.1, weight_decay=1e-3, warmup_steps=5),
        lambda p: ScheduleFreeAdamW(p, lr=0.01, weight_decay=1e-2, warmup_steps=5),
    ],
)
def test_state_dict_round_trip_mid_run_in_eval_mode_resumes_exactly(
    factory: Callable[[Any], torch.optim.Optimizer],
) -> None:
    batches = data(40)
    model = tiny_model()
    optimizer = factory(model.parameters())
    for x, y in batches[:20]:
        backward(model, x, y)
        optimizer.step()
    optimizer.eval()  # checkpoints hold x
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = tiny_model()
    resumed_model.load_state_dict(saved["model"])
    resumed = factory(resumed_model.parameters())
    resumed.load_state_dict(saved["optimizer"])
    assert not resumed.training
    optimizer.train()
    resumed.train()
    for x, y in batches[20:]:
        for m, opt in ((model, optimizer), (resumed_model, resumed)):
            backward(m, x, y)
            opt.step()
    assert difference(model, resumed_model) == 0.0
    assert resumed.param_groups[0]["step"] == 40


def test_step_never_modifies_the_gradient() -> None:
    model = tiny_model()
    optimizer = ScheduleFreeAdamW(model.parameters(), weight_decay=0.1)
    x, y = data(1)[0]
    backward(model, x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def test_step_in_eval_mode_is_an_error_and_switches_are_idempotent() -> None:
    model = tiny_model()
    optimizer = ScheduleFreeSGD(model.parameters(), lr=0.1)
    x, y = data(1)[0]
    backward(model, x, y)
    optimizer.step()
    optimizer.eval()
    x_weights = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), x_weights, strict=True))
    with pytest.raises(RuntimeError, match=r"ScheduleFreeSGD\.step: the optimizer is in eval"):
        optimizer.step()
    optimizer.train(False)
    assert not optimizer.training
    optimizer.train()
    assert optimizer.training


P = [nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ScheduleFreeSGD(P, lr=-1.0), r"ScheduleFreeSGD: invalid lr=-1\.0; expected"),
        (lambda: ScheduleFreeSGD(P, momentum=0.0), r"invalid momentum=0\.0; expected .*\(0, 1\)"),
        (lambda: ScheduleFreeSGD(P, momentum=1.0), r"invalid momentum=1\.0"),
        (lambda: ScheduleFreeSGD(P, warmup_steps=2.5), r"invalid warmup_steps=2\.5; expected an"),
        (lambda: ScheduleFreeSGD(P, warmup_steps=-1), r"invalid warmup_steps=-1"),
        (lambda: ScheduleFreeSGD(P, r=-1.0), r"invalid r=-1\.0"),
        (lambda: ScheduleFreeSGD(P, weight_decay=float("nan")), r"invalid weight_decay=nan"),
        (lambda: ScheduleFreeAdamW(P, betas=(0.0, 0.999)), r"invalid betas=\(0\.0, 0\.999\)"),
        (lambda: ScheduleFreeAdamW(P, betas=(0.9, 1.0)), r"invalid betas=\(0\.9, 1\.0\)"),
        (lambda: ScheduleFreeAdamW(P, eps=-1e-8), r"ScheduleFreeAdamW: invalid eps=-1e-08"),
        (
            lambda: ScheduleFreeAdamW([{"params": P, "lr": -0.5}]),
            r"invalid lr=-0\.5 in param group 0",
        ),
        (lambda: ScheduleFreeAdamW(P, weight_lr_power=-2.0), r"invalid weight_lr_power=-2\.0"),
    ],
)
def test_bad_input(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()
