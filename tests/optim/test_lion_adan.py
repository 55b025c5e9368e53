"""Lion (arXiv 2302.06675, Alg. 2) and Adan (arXiv 2208.06677, Alg. 1) against their papers.

The first two steps of each are derived by hand from the paper's pseudo-code on a 3-element
float64 parameter with a fixed gradient sequence (the numbers are in the comments); then 100
steps on a quadratic are compared with a reference written here from the paper's equations,
for Adan in the paper's own convention (its betas are one minus the code's), and a state dict
saved mid-run resumes on the same trajectory. fused=True against eager, every property and
every bad input are in the registry-driven tables (test_fused.py, test_properties.py,
test_bad_input.py, ...), which include both.

No reference library is compared: neither timm nor pytorch_optimizer is installed here, and
their Adan (as the authors' code) bias-corrects averages that Algorithm 1 starts at the first
gradient, which agrees with gradkit on the first step only.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor

from gradkit.optim import Adan, Lion

F64 = torch.float64
TOL = {"rtol": 0.0, "atol": 1e-14}


def _param(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=F64, requires_grad=True)


def _step(optimizer: torch.optim.Optimizer, param: Tensor, grad: list[float]) -> None:
    param.grad = torch.tensor(grad, dtype=F64)
    optimizer.step()


def _expect(param: Tensor, values: list[float]) -> None:
    torch.testing.assert_close(param.detach(), torch.tensor(values, dtype=F64), **TOL)


# --- hand-derived first two steps ------------------------------------------------------------


def test_lion_first_two_steps_by_hand():
    # Alg. 2 with eta = 0.1, beta1 = 0.9, beta2 = 0.99, lambda = 0.5, theta_0 = (1, -2, 0.5).
    theta = _param([1.0, -2.0, 0.5])
    optimizer = Lion([theta], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)

    # g_1 = (0.5, -1, 0); m_0 = 0, so c_1 = 0.1 g_1 = (0.05, -0.1, 0), sign = (1, -1, 0).
    # theta_1 = theta_0 - 0.1 (sign + 0.5 theta_0) = theta_0 - 0.1 (1.5, -2, 0.25)
    #         = (0.85, -1.8, 0.475): the third coordinate moves by the decay alone.
    # m_1 = 0.99 * 0 + 0.01 g_1 = (0.005, -0.01, 0).
    _step(optimizer, theta, [0.5, -1.0, 0.0])
    _expect(theta, [0.85, -1.8, 0.475])
    torch.testing.assert_close(
        optimizer.state[theta]["exp_avg"], torch.tensor([0.005, -0.01, 0.0], dtype=F64), **TOL
    )

    # g_2 = (-0.04, -0.3, 0.4); c_2 = 0.9 m_1 + 0.1 g_2 = (0.0045 - 0.004, -0.009 - 0.03, 0.04)
    # = (0.0005, -0.039, 0.04): the first coordinate follows its momentum against g_2 < 0,
    # sign = (1, -1, 1).
    # theta_2 = theta_1 - 0.1 (sign + 0.5 theta_1) = theta_1 - 0.1 (1.425, -1.9, 1.2375)
    #         = (0.7075, -1.61, 0.35125).
    # m_2 = 0.99 m_1 + 0.01 g_2 = (0.00495 - 0.0004, -0.0099 - 0.003, 0.004)
    #     = (0.00455, -0.0129, 0.004).
    _step(optimizer, theta, [-0.04, -0.3, 0.4])
    _expect(theta, [0.7075, -1.61, 0.35125])
    torch.testing.assert_close(
        optimizer.state[theta]["exp_avg"],
        torch.tensor([0.00455, -0.0129, 0.004], dtype=F64),
        **TOL,
    )


# Adan with the code's betas (0.5, 0.5, 0.5), i.e. the paper's beta_1 = beta_2 = beta_3 = 0.5,
# eps = 0, eta = 0.1, lambda = 0.5 (so 1 + eta lambda = 1.05), theta_0 = (1, -2, 0.5).
#
# Step 1, g_0 = (-3, -3.5, 3.5) (the paper counts from k = 0): m_0 = g_0, v_0 = 0,
# n_0 = g_0^2 = (9, 12.25, 12.25), so eta_0 = 0.1 / (3, 3.5, 3.5) and the update
# m_0 + (1 - beta_2) v_0 = g_0 makes the step 0.1 * g_0 / |g_0| = 0.1 * (-1, -1, 1).
#
# Step 2, g_1 = (1, -1.5, -4.5): g_1 - g_0 = (4, 2, -8);
#   m_1 = 0.5 m_0 + 0.5 g_1 = (-1, -2.5, -0.5);
#   v_1 = g_1 - g_0 = (4, 2, -8) (Algorithm 1 sets v_1 so, not 0.5 (g_1 - g_0));
#   g_1 + 0.5 (g_1 - g_0) = (3, -0.5, -8.5), squared (9, 0.25, 72.25);
#   n_1 = 0.5 n_0 + 0.5 (9, 0.25, 72.25) = (9, 6.25, 42.25), sqrt = (3, 2.5, 6.5);
#   m_1 + 0.5 v_1 = (1, -1.5, -4.5); divided by sqrt(n_1): (1/3, -3/5, -9/13).
ADAN = {"lr": 0.1, "betas": (0.5, 0.5, 0.5), "eps": 0.0, "weight_decay": 0.5}
ADAN_GRADS = ([-3.0, -3.5, 3.5], [1.0, -1.5, -4.5])
ADAN_UPDATES = ([-1.0, -1.0, 1.0], [1 / 3, -3 / 5, -9 / 13])


def test_adan_first_two_steps_by_hand_with_the_proximal_decay():
    theta = _param([1.0, -2.0, 0.5])
    optimizer = Adan([theta], **ADAN)
    # theta_1 = (theta_0 - 0.1 u_0) / 1.05 = (1.1, -1.9, 0.4) / 1.05.
    _step(optimizer, theta, ADAN_GRADS[0])
    theta_1 = [1.1 / 1.05, -1.9 / 1.05, 0.4 / 1.05]
    _expect(theta, theta_1)
    # theta_2 = (theta_1 - 0.1 u_1) / 1.05.
    _step(optimizer, theta, ADAN_GRADS[1])
    _expect(theta, [(t - 0.1 * u) / 1.05 for t, u in zip(theta_1, ADAN_UPDATES[1], strict=True)])
    state = optimizer.state[theta]
    torch.testing.assert_close(state["exp_avg"], torch.tensor([-1.0, -2.5, -0.5], dtype=F64))
    torch.testing.assert_close(state["exp_avg_diff"], torch.tensor([4.0, 2.0, -8.0], dtype=F64))
    torch.testing.assert_close(state["exp_avg_sq"], torch.tensor([9.0, 6.25, 42.25], dtype=F64))
    torch.testing.assert_close(state["prev_grad"], torch.tensor(ADAN_GRADS[1], dtype=F64))


def test_adan_first_two_steps_by_hand_with_the_decoupled_decay():
    theta = _param([1.0, -2.0, 0.5])
    optimizer = Adan([theta], **ADAN, no_prox=True)
    # theta_1 = (1 - 0.05) theta_0 - 0.1 u_0 = (0.95 + 0.1, -1.9 + 0.1, 0.475 - 0.1)
    #         = (1.05, -1.8, 0.375).
    _step(optimizer, theta, ADAN_GRADS[0])
    _expect(theta, [1.05, -1.8, 0.375])
    # theta_2 = 0.95 theta_1 - 0.1 u_1 = (0.9975 - 1/30, -1.71 + 0.06, 0.35625 + 0.9/13).
    _step(optimizer, theta, ADAN_GRADS[1])
    _expect(theta, [0.9975 - 1 / 30, -1.71 + 0.06, 0.35625 + 0.9 / 13])


# --- 100 steps against references written from the papers -----------------------------------

HESSIAN = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=F64)
OFFSET = torch.tensor([1.0, -0.5, 0.25], dtype=F64)
START = [1.5, -1.0, 2.0]


def _grad(theta: Tensor) -> Tensor:
    """The gradient of 0.5 theta^T H theta + b^T theta (it changes sign as theta moves)."""
    return HESSIAN @ theta + OFFSET


def lion_reference(steps: int, lr: float, betas: tuple[float, float], wd: float) -> Tensor:
    """Algorithm 2 of arXiv 2302.06675, line by line."""
    beta1, beta2 = betas
    theta, m = torch.tensor(START, dtype=F64), torch.zeros(3, dtype=F64)
    for _ in range(steps):
        g = _grad(theta)
        c = beta1 * m + (1 - beta1) * g
        theta = theta - lr * (torch.sign(c) + wd * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta


def adan_reference(
    steps: int,
    lr: float,
    betas: tuple[float, float, float],
    eps: float,
    weight_decay: float,
    prox: bool,
) -> Tensor:
    """Algorithm 1 of arXiv 2208.06677 in the paper's convention: its betas are one minus the
    code's, and it starts with m_0 = g_0, v_0 = 0, v_1 = g_1 - g_0, n_0 = g_0^2."""
    b1, b2, b3 = (1 - beta for beta in betas)
    theta = torch.tensor(START, dtype=F64)
    m = v = n = g_previous = None
    for k in range(steps):
        g = _grad(theta)
        if k == 0:
            m, v, n = g, torch.zeros(3, dtype=F64), g * g
        else:
            difference = g - g_previous
            m = (1 - b1) * m + b1 * g
            v = difference if k == 1 else (1 - b2) * v + b2 * difference
            n = (1 - b3) * n + b3 * (g + (1 - b2) * difference) ** 2
        eta = lr / (torch.sqrt(n) + eps)
        if prox:
            theta = (theta - eta * (m + (1 - b2) * v)) / (1 + lr * weight_decay)
        else:
            theta = (1 - lr * weight_decay) * theta - eta * (m + (1 - b2) * v)
        g_previous = g
    return theta


def _run(optimizer_class, steps: int, **options) -> Tensor:
    theta = _param(START)
    optimizer = optimizer_class([theta], **options)
    for _ in range(steps):
        theta.grad = _grad(theta.detach())
        optimizer.step()
    return theta.detach()


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_lion_follows_algorithm_2_for_100_steps(weight_decay):
    options = {"lr": 0.02, "betas": (0.9, 0.99), "weight_decay": weight_decay}
    ours = _run(Lion, 100, **options)
    reference = lion_reference(100, options["lr"], options["betas"], weight_decay)
    torch.testing.assert_close(ours, reference, rtol=0.0, atol=1e-12)
    assert float((ours - torch.tensor(START, dtype=F64)).abs().max()) > 0.5  # it went far


@pytest.mark.parametrize("no_prox", [False, True], ids=["proximal", "decoupled"])
def test_adan_follows_algorithm_1_for_100_steps(no_prox):
    options = {"lr": 0.05, "betas": (0.98, 0.92, 0.99), "eps": 1e-8, "weight_decay": 0.2}
    ours = _run(Adan, 100, **options, no_prox=no_prox)
    reference = adan_reference(100, **options, prox=not no_prox)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    assert float((ours - torch.tensor(START, dtype=F64)).abs().max()) > 0.5


# --- state_dict resume -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer_class", "options"),
    [(Lion, {"lr": 0.02, "weight_decay": 0.1}), (Adan, {"lr": 0.05, "weight_decay": 0.2})],
    ids=["lion", "adan"],
)
@pytest.mark.parametrize("saved_after", [1, 2, 5])
def test_a_run_resumed_from_a_state_dict_is_the_uninterrupted_run(
    optimizer_class, options, saved_after
):
    """Saved after the first step (Adan's v_1 = g_1 - g_0 is still to come), the second, or
    later; torch.save, a fresh optimizer, and the same trajectory to the bit."""
    theta = _param(START)
    optimizer = optimizer_class([theta], **options)
    for _ in range(saved_after):
        theta.grad = _grad(theta.detach())
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"theta": theta.detach(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_theta = saved["theta"].clone().requires_grad_()
    resumed = optimizer_class([resumed_theta], **options)
    resumed.load_state_dict(saved["optimizer"])
    for _ in range(10):
        for param, opt in ((theta, optimizer), (resumed_theta, resumed)):
            param.grad = _grad(param.detach())
            opt.step()
        assert torch.equal(resumed_theta, theta)
