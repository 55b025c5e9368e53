"""Lookahead against arXiv 1907.08610's Algorithm 1 worked by hand on quadratics, state round
trips mid-cycle, and bad input."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from gradkit.optim import SGD, Lookahead


def quadratic_steps(optimizer: torch.optim.Optimizer, w: torch.Tensor, scale: torch.Tensor):
    optimizer.zero_grad()
    (0.5 * scale * w**2).sum().backward()
    optimizer.step()
    return w.detach().clone()


def test_plain_sgd_k2_alpha_half_by_hand() -> None:
    # f = w^2 (a = 2), lr 0.1: each fast step multiplies by 0.8. With k = 2, alpha = 0.5:
    # phi_1 = 1 + 0.5 (0.64 - 1) = 0.82; then 0.82 * 0.8 = 0.656; phi_2 = 0.82 (1 + 0.64) / 2.
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
    expected = [0.8, 0.82, 0.656, 0.6724]
    got = [float(quadratic_steps(optimizer, w, torch.tensor(2.0))) for _ in expected]
    assert got == pytest.approx(expected, abs=1e-14)


def test_momentum_sgd_k3_keeps_the_inner_state_across_synchronization() -> None:
    # f = w^2 / 2, lr 0.1, momentum 0.5 (torch's convention: buf_1 = g, buf = 0.5 buf + g).
    # steps 1-3: buf 1, 1.4, 1.46 -> w 0.9, 0.76, 0.614; sync: phi = 1 + 0.5 (0.614 - 1) = 0.807
    # step 4 (buffer kept): buf = 0.73 + 0.807 = 1.537 -> w = 0.807 - 0.1537 = 0.6533
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = Lookahead(SGD([w], lr=0.1, momentum=0.5), k=3, alpha=0.5)
    expected = [0.9, 0.76, 0.807, 0.6533]
    got = [float(quadratic_steps(optimizer, w, torch.tensor(1.0))) for _ in expected]
    assert got == pytest.approx(expected, abs=1e-14)
    assert optimizer.lookahead_steps == 4


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def train(model: nn.Module, optimizer: torch.optim.Optimizer, seeds: range) -> None:
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(8, 3, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


def test_state_dict_mid_cycle_holds_inner_state_and_slow_weights_and_resumes_exactly() -> None:
    def build(model: nn.Module) -> Lookahead:
        return Lookahead(torch.optim.Adam(model.parameters(), lr=0.01), k=3, alpha=0.5)

    model = tiny_model()
    optimizer = build(model)
    train(model, optimizer, range(4))  # one step into the second cycle
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert set(saved["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert saved["optimizer"]["lookahead"]["steps"] == 4
    resumed_model = tiny_model()
    resumed_model.load_state_dict(saved["model"])
    resumed = build(resumed_model)
    resumed.load_state_dict(saved["optimizer"])
    train(model, optimizer, range(4, 11))
    train(resumed_model, resumed, range(4, 11))
    for p, q in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(p, q)
    # A fresh Lookahead (slow weights = the mid-cycle fast weights) would differ.
    other_model = tiny_model()
    other_model.load_state_dict(saved["model"])
    other = build(other_model)
    other.base_optimizer.load_state_dict(
        {k: v for k, v in saved["optimizer"].items() if k != "lookahead"}
    )
    train(other_model, other, range(4, 11))
    assert any(
        not torch.equal(p, q)
        for p, q in zip(model.parameters(), other_model.parameters(), strict=True)
    )


def test_shares_param_groups_with_the_inner_optimizer_and_deepcopies() -> None:
    model = tiny_model()
    optimizer = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train(model, optimizer, range(1))
    scheduler.step()
    assert optimizer.base_optimizer.param_groups[0]["lr"] == 0.05
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer))
    train(model, optimizer, range(1, 4))
    train(model_copy, optimizer_copy, range(1, 4))
    for p, q in zip(model.parameters(), model_copy.parameters(), strict=True):
        assert torch.equal(p, q)


W = [nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (lambda: Lookahead("sgd"), TypeError, r"Lookahead: optimizer must be a torch\.optim"),
        (lambda: Lookahead(torch.optim.SGD(W, lr=0.1), k=0), ValueError, r"invalid k=0; expected"),
        (lambda: Lookahead(torch.optim.SGD(W, lr=0.1), k=2.0), ValueError, r"invalid k=2\.0"),
        (
            lambda: Lookahead(torch.optim.SGD(W, lr=0.1), alpha=0.0),
            ValueError,
            r"invalid alpha=0\.0; expected a number in \(0, 1\]",
        ),
        (lambda: Lookahead(torch.optim.SGD(W, lr=0.1), alpha=1.5), ValueError, r"alpha=1\.5"),
        (
            lambda: Lookahead(torch.optim.SGD(W, lr=0.1)).load_state_dict(
                torch.optim.SGD(W, lr=0.1).state_dict()
            ),
            ValueError,
            r"has no 'lookahead' entry",
        ),
        (
            lambda: Lookahead(torch.optim.SGD(W, lr=0.1), k=3).load_state_dict(
                Lookahead(torch.optim.SGD(W, lr=0.1), k=2).state_dict()
            ),
            ValueError,
            r"the state has k=2, this Lookahead k=3",
        ),
    ],
)
def test_bad_input(factory: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        factory()
