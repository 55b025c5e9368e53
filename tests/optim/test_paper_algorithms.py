"""The algorithms torch.optim lacks, checked against the papers' pseudo-code by hand.

For LARS, LAMB, SGDW, SAM/ASAM and AGC the first three steps are derived here in plain Python
floats from the paper's algorithm (the comments name the paper's symbols), on tiny float64
parameters with a fixed gradient sequence or a quadratic loss with a known gradient, and
compared with gradkit to 1e-12. The derivations never call gradkit.

Papers: LARS arXiv 1708.03888 (Alg. 1); LAMB arXiv 1904.00962 (Alg. 2); SGDW arXiv 1711.05101
(Alg. 1); SAM arXiv 2010.01412 (Alg. 1, Eq. 2); ASAM arXiv 2102.11600 (Alg. 1); AGC arXiv
2102.06171 (Eq. 3).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gradkit.optim import (
    LAMB,
    LARS,
    SAM,
    SGD,
    SGDW,
    Adam,
    ChainedOptimizer,
    adaptive_clip_grad_,
    chain,
    clip_by_agc,
    clip_by_global_norm,
    scale_by_learning_rate,
)

F64 = torch.float64
TOL = 1e-12


# ---------------------------------------------------------------------------------------------
# Plain-Python helpers (vectors are flat lists of floats)
# ---------------------------------------------------------------------------------------------


def zips(*lists):
    """zip that insists on equal lengths (a derivation never drops an entry)."""
    return zip(*lists, strict=True)


def norm(xs: list[float]) -> float:
    """The Euclidean (Frobenius) norm of a flat list."""
    return math.sqrt(sum(x * x for x in xs))


def param(values: list[float], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64).reshape(shape).requires_grad_()


def flat(tensor: torch.Tensor) -> list[float]:
    return tensor.detach().flatten().tolist()


def assert_values(tensor: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(
        tensor.detach().flatten(), torch.tensor(expected, dtype=F64), rtol=TOL, atol=TOL
    )


def run_fixed_grads(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[list[list[float]]]
) -> list[list[list[float]]]:
    """Step ``opt`` with ``p.grad = grads[i][t]`` at step t; return the values after each step."""
    history = []
    for t in range(len(grads[0])):
        for p, sequence in zips(params, grads):
            p.grad = torch.tensor(sequence[t], dtype=F64).reshape(p.shape)
        opt.step()
        history.append([flat(p) for p in params])
    return history


def assert_history(actual: list[list[list[float]]], expected: list[list[list[float]]]) -> None:
    """``expected[i][t]``: parameter i after step t+1; ``actual[t][i]`` as run_fixed_grads."""
    assert len(actual) == len(expected[0]) == 3
    for t, values in enumerate(actual):
        for i, value in enumerate(values):
            torch.testing.assert_close(
                torch.tensor(value, dtype=F64),
                torch.tensor(expected[i][t], dtype=F64),
                rtol=TOL,
                atol=TOL,
                msg=lambda m, i=i, t=t: f"parameter {i} after step {t + 1}: {m}",
            )


# A 2x2 weight (flattened row by row) and a 2-vector bias, and three gradients for each.
W0 = [1.0, -2.0, 0.5, 3.0]
B0 = [0.3, -0.4]
W_GRADS = [[0.2, -0.1, 0.4, 0.3], [-0.3, 0.5, 0.1, -0.2], [0.25, 0.05, -0.15, 0.35]]
B_GRADS = [[0.05, -0.02], [-0.04, 0.03], [0.01, 0.06]]


# ---------------------------------------------------------------------------------------------
# LARS, arXiv 1708.03888, Algorithm 1
# ---------------------------------------------------------------------------------------------


def lars_by_hand(w, grads, gamma, m, beta, eta):
    """Algorithm 1 for one layer l, with a constant global rate gamma_t = gamma.

    lambda^l = eta ||w^l|| / (||g^l|| + beta ||w^l||)          (local LR)
    v^l <- m v^l + gamma lambda^l (g^l + beta w^l)               (momentum, rate inside)
    w^l <- w^l - v^l
    """
    v = [0.0] * len(w)  # v_0 = 0
    history = []
    for g in grads:
        local_lr = eta * norm(w) / (norm(g) + beta * norm(w))
        v = [m * vi + gamma * local_lr * (gi + beta * wi) for vi, gi, wi in zips(v, g, w)]
        w = [wi - vi for wi, vi in zips(w, v)]
        history.append(w)
    return history


def test_lars_first_step_worked_example():
    # w = (3, 4): ||w|| = 5; g = (0.6, 0.8): ||g|| = 1. gamma = 0.5, eta = 0.02, beta = 0.2.
    # lambda = 0.02 * 5 / (1 + 0.2 * 5) = 0.05
    # v_1 = 0.5 * 0.05 * (g + 0.2 w) = 0.025 * (1.2, 1.6) = (0.03, 0.04); w_1 = w - v_1
    w = param([3.0, 4.0], (2,))
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.2, trust_coefficient=0.02)
    w.grad = torch.tensor([0.6, 0.8], dtype=F64)
    opt.step()
    assert_values(w, [2.97, 3.96])


def test_lars_three_steps_with_momentum_weight_decay_and_trust_coefficient():
    gamma, m, beta, eta = 0.5, 0.9, 0.01, 0.02  # gamma_0, momentum m, weight decay beta, LARS eta
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = LARS([weight, bias], lr=gamma, momentum=m, weight_decay=beta, trust_coefficient=eta)
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    expected = [
        lars_by_hand(W0, W_GRADS, gamma, m, beta, eta),
        lars_by_hand(B0, B_GRADS, gamma, m, beta, eta),
    ]
    assert_history(actual, expected)


def test_lars_polynomial_schedule_keeps_the_rate_inside_the_buffer():
    # Alg. 1's global rate gamma_t = gamma_0 (1 - t/T)^2 multiplies only the new term of the
    # momentum: v <- m v + gamma_t lambda (g + beta w). A rate changed between steps (here by
    # writing the param group, as a scheduler does) must not rescale the old buffer.
    gamma0, big_t, m, beta, eta = 0.5, 4, 0.9, 0.01, 0.02
    rates = [gamma0 * (1 - t / big_t) ** 2 for t in range(3)]  # 0.5, 0.28125, 0.125
    weight = param(W0, (2, 2))
    opt = LARS([weight], lr=gamma0, momentum=m, weight_decay=beta, trust_coefficient=eta)
    w, v = W0, [0.0] * 4
    for t, g in enumerate(W_GRADS):
        opt.param_groups[0]["lr"] = rates[t]
        weight.grad = torch.tensor(g, dtype=F64).reshape(2, 2)
        opt.step()
        local_lr = eta * norm(w) / (norm(g) + beta * norm(w))
        v = [m * vi + rates[t] * local_lr * (gi + beta * wi) for vi, gi, wi in zips(v, g, w)]
        w = [wi - vi for wi, vi in zips(w, v)]
        assert_values(weight, w)


def test_lars_zero_weight_gets_trust_ratio_one():
    # A zero-initialised layer: Alg. 1 would give lambda = 0 and the layer would never move.
    # gradkit's documented guard gives lambda = 1 instead (a plain step gamma * g), after which
    # the weight is non-zero and Alg. 1 applies.
    gamma, m, beta, eta = 0.5, 0.9, 0.1, 0.02
    bias = param([0.0, 0.0], (2,))
    opt = LARS([bias], lr=gamma, momentum=m, weight_decay=beta, trust_coefficient=eta)
    actual = run_fixed_grads(opt, [bias], [B_GRADS])
    g1, g2, g3 = B_GRADS
    v1 = [gamma * 1.0 * (g + beta * 0.0) for g in g1]  # lambda = 1 on the zero weight
    w1 = [0.0 - v for v in v1]
    # Steps 2 and 3: Alg. 1 from (w1, v1).
    lam2 = eta * norm(w1) / (norm(g2) + beta * norm(w1))
    v2 = [m * v + gamma * lam2 * (g + beta * w) for v, g, w in zips(v1, g2, w1)]
    w2 = [w - v for w, v in zips(w1, v2)]
    lam3 = eta * norm(w2) / (norm(g3) + beta * norm(w2))
    v3 = [m * v + gamma * lam3 * (g + beta * w) for v, g, w in zips(v2, g3, w2)]
    w3 = [w - v for w, v in zips(w2, v3)]
    assert_history(actual, [[w1, w2, w3]])


def test_lars_zero_update_gets_trust_ratio_one_and_keeps_the_momentum():
    # With beta = 0 a zero gradient makes the denominator ||g|| + beta ||w|| zero: the guard
    # gives lambda = 1 (no NaN), the new term is 0 and the momentum carries on: v_2 = m v_1.
    gamma, m, eta = 0.5, 0.9, 0.02
    weight = param(W0, (2, 2))
    opt = LARS([weight], lr=gamma, momentum=m, weight_decay=0.0, trust_coefficient=eta)
    grads = [W_GRADS[0], [0.0, 0.0, 0.0, 0.0], W_GRADS[2]]
    actual = run_fixed_grads(opt, [weight], [grads])
    w0 = W0
    lam1 = eta * norm(w0) / norm(grads[0])
    v1 = [gamma * lam1 * g for g in grads[0]]
    w1 = [w - v for w, v in zips(w0, v1)]
    v2 = [m * v + 0.0 for v in v1]  # lambda = 1 times a zero gradient
    w2 = [w - v for w, v in zips(w1, v2)]
    lam3 = eta * norm(w2) / norm(grads[2])
    v3 = [m * v + gamma * lam3 * g for v, g in zips(v2, grads[2])]
    w3 = [w - v for w, v in zips(w2, v3)]
    assert_history(actual, [[w1, w2, w3]])


def test_lars_layer_adaptation_false_group_gets_ratio_one():
    # The weight's group is adapted; the bias's group has layer_adaptation=False, so lambda = 1:
    # v <- m v + gamma (g + beta w), plain momentum SGD with the rate inside the buffer.
    gamma, m, beta, eta = 0.5, 0.9, 0.01, 0.02
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = LARS(
        [{"params": [weight]}, {"params": [bias], "layer_adaptation": False}],
        lr=gamma,
        momentum=m,
        weight_decay=beta,
        trust_coefficient=eta,
    )
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    v, w, bias_history = [0.0, 0.0], B0, []
    for g in B_GRADS:
        v = [m * vi + gamma * 1.0 * (gi + beta * wi) for vi, gi, wi in zips(v, g, w)]
        w = [wi - vi for wi, vi in zips(w, v)]
        bias_history.append(w)
    assert_history(actual, [lars_by_hand(W0, W_GRADS, gamma, m, beta, eta), bias_history])


# ---------------------------------------------------------------------------------------------
# LAMB, arXiv 1904.00962, Algorithm 2
# ---------------------------------------------------------------------------------------------


def lamb_by_hand(x, grads, eta, beta1, beta2, eps, lam, phi=lambda z: z, adapt=True):
    """Algorithm 2 for one layer i, constant rate eta_t = eta.

    m_t = beta1 m_{t-1} + (1 - beta1) g_t;  v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    m_t <- m_t / (1 - beta1^t);  v_t <- v_t / (1 - beta2^t);  r_t = m_t / (sqrt(v_t) + eps)
    x_{t+1} = x_t - eta phi(||x_t||) / ||r_t + lam x_t|| (r_t + lam x_t)

    adapt=False: the ratio phi(||x||)/||r + lam x|| is replaced by 1.
    """
    m = [0.0] * len(x)
    v = [0.0] * len(x)
    history = []
    for t, g in enumerate(grads, start=1):
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zips(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zips(v, g)]
        m_hat = [mi / (1 - beta1**t) for mi in m]
        v_hat = [vi / (1 - beta2**t) for vi in v]
        r = [mh / (math.sqrt(vh) + eps) for mh, vh in zips(m_hat, v_hat)]
        u = [ri + lam * xi for ri, xi in zips(r, x)]
        ratio = phi(norm(x)) / norm(u) if adapt else 1.0
        x = [xi - eta * ratio * ui for xi, ui in zips(x, u)]
        history.append(x)
    return history


def test_lamb_three_steps_with_weight_decay():
    eta, beta1, beta2, eps, lam = 0.01, 0.9, 0.999, 1e-6, 0.1
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = LAMB([weight, bias], lr=eta, betas=(beta1, beta2), eps=eps, weight_decay=lam)
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    expected = [
        lamb_by_hand(W0, W_GRADS, eta, beta1, beta2, eps, lam),
        lamb_by_hand(B0, B_GRADS, eta, beta1, beta2, eps, lam),
    ]
    assert_history(actual, expected)


def test_lamb_three_steps_with_weight_norm_bounds():
    # phi(z) = min(max(z, gamma_l), gamma_u) with [gamma_l, gamma_u] = [0.6, 2.0]:
    # ||W|| ~ 3.8 is clamped to 2.0 (upper bound), ||b|| = 0.5 is raised to 0.6 (lower bound).
    eta, beta1, beta2, eps, lam = 0.01, 0.8, 0.99, 1e-6, 0.05
    low, high = 0.6, 2.0

    def phi(z):
        return min(max(z, low), high)

    assert norm(W0) > high and norm(B0) < low
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = LAMB(
        [weight, bias],
        lr=eta,
        betas=(beta1, beta2),
        eps=eps,
        weight_decay=lam,
        weight_norm_bounds=(low, high),
    )
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    expected = [
        lamb_by_hand(W0, W_GRADS, eta, beta1, beta2, eps, lam, phi),
        lamb_by_hand(B0, B_GRADS, eta, beta1, beta2, eps, lam, phi),
    ]
    assert_history(actual, expected)


def test_lamb_zero_initialised_bias_gets_a_plain_lr_step():
    # ||x_1|| = 0: Alg. 2 would give phi(0) / ||r_1|| = 0 and the bias would never move; the
    # documented guard gives ratio 1, i.e. x_2 = -eta r_1 (with lam * 0 = 0), then Alg. 2.
    eta, beta1, beta2, eps, lam = 0.01, 0.9, 0.999, 1e-6, 0.1
    bias = param([0.0, 0.0], (2,))
    opt = LAMB([bias], lr=eta, betas=(beta1, beta2), eps=eps, weight_decay=lam)
    actual = run_fixed_grads(opt, [bias], [B_GRADS])
    g1 = B_GRADS[0]
    # Step 1 by hand: m_hat_1 = g_1, v_hat_1 = g_1^2, so r_1 = g_1 / (|g_1| + eps).
    r1 = [g / (abs(g) + eps) for g in g1]
    x1 = [0.0 - eta * 1.0 * r for r in r1]
    assert_values(torch.tensor(actual[0][0], dtype=F64), x1)
    # Steps 2 and 3: the full rule. Run Alg. 2 for all steps with ratio 1 on the first one.
    m = [(1 - beta1) * g for g in g1]
    v = [(1 - beta2) * g * g for g in g1]
    x, expected = x1, [x1]
    for t, g in enumerate(B_GRADS[1:], start=2):
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zips(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zips(v, g)]
        r = [
            (mi / (1 - beta1**t)) / (math.sqrt(vi / (1 - beta2**t)) + eps) for mi, vi in zips(m, v)
        ]
        u = [ri + lam * xi for ri, xi in zips(r, x)]
        x = [xi - eta * norm(x) / norm(u) * ui for xi, ui in zips(x, u)]
        expected.append(x)
    assert_history(actual, [expected])


def test_lamb_zero_update_gets_ratio_one_without_nan():
    # g_1 = 0 and lam = 0: r_1 = 0 / (0 + eps) = 0, so ||r_1 + lam x_1|| = 0; ratio 1, no move.
    eta, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-6
    weight = param(W0, (2, 2))
    opt = LAMB([weight], lr=eta, betas=(beta1, beta2), eps=eps, weight_decay=0.0)
    grads = [[0.0, 0.0, 0.0, 0.0], W_GRADS[1], W_GRADS[2]]
    actual = run_fixed_grads(opt, [weight], [grads])
    assert actual[0][0] == W0
    m = [0.0] * 4  # after step 1: m_1 = v_1 = 0
    v = [0.0] * 4
    x, expected = W0, [W0]
    for t, g in enumerate(grads[1:], start=2):
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zips(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zips(v, g)]
        r = [
            (mi / (1 - beta1**t)) / (math.sqrt(vi / (1 - beta2**t)) + eps) for mi, vi in zips(m, v)
        ]
        x = [xi - eta * norm(x) / norm(r) * ri for xi, ri in zips(x, r)]
        expected.append(x)
    assert_history(actual, [expected])


def test_lamb_layer_adaptation_false_group_gets_ratio_one():
    eta, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-6
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = LAMB(
        [
            {"params": [weight], "weight_decay": 0.1},
            {"params": [bias], "weight_decay": 0.0, "layer_adaptation": False},
        ],
        lr=eta,
        betas=(beta1, beta2),
        eps=eps,
    )
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    expected = [
        lamb_by_hand(W0, W_GRADS, eta, beta1, beta2, eps, 0.1),
        lamb_by_hand(B0, B_GRADS, eta, beta1, beta2, eps, 0.0, adapt=False),
    ]
    assert_history(actual, expected)


# ---------------------------------------------------------------------------------------------
# SGDW, arXiv 1711.05101, Algorithm 1 (SGD with momentum and decoupled weight decay)
# ---------------------------------------------------------------------------------------------


def test_sgdw_three_steps():
    # Alg. 1 (green): m_t = beta1 m_{t-1} + eta_t alpha g_t;  theta_t = theta_{t-1} - m_t
    # - eta_t lambda theta_{t-1}, with m_0 = 0 and schedule multiplier eta_t = 1. As the SGDW
    # docstring says, the paper's lambda is lr * weight_decay here (lambda = alpha * wd).
    alpha, beta1, wd = 0.1, 0.9, 0.05
    lam = alpha * wd
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = SGDW([weight, bias], lr=alpha, momentum=beta1, weight_decay=wd)
    actual = run_fixed_grads(opt, [weight, bias], [W_GRADS, B_GRADS])
    expected = []
    for theta, grads in ((W0, W_GRADS), (B0, B_GRADS)):
        m, history = [0.0] * len(theta), []
        for g in grads:
            m = [beta1 * mi + 1.0 * alpha * gi for mi, gi in zips(m, g)]
            theta = [ti - mi - 1.0 * lam * ti for ti, mi in zips(theta, m)]
            history.append(theta)
        expected.append(history)
    assert_history(actual, expected)


# ---------------------------------------------------------------------------------------------
# SAM, arXiv 2010.01412, Algorithm 1; ASAM, arXiv 2102.11600
# ---------------------------------------------------------------------------------------------

# L(w) = 1/2 w^T A w - b^T w on w = (x_1, x_2, y): gradient A w - b. Two parameter tensors
# (x of size 2, y of size 1) so the perturbation's norm runs over both.
A = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 3.0]]
B = [1.0, -1.0, 0.5]
X0, Y0 = [0.8, -0.6], [1.5]


def grad_l(w):
    return [sum(A[i][j] * w[j] for j in range(3)) - B[i] for i in range(3)]


def loss_l(w):
    return 0.5 * sum(w[i] * A[i][j] * w[j] for i in range(3) for j in range(3)) - sum(
        b * wi for b, wi in zips(B, w)
    )


def sam_setup():
    x, y = param(X0, (2,)), param(Y0, (1,))
    a, b = torch.tensor(A, dtype=F64), torch.tensor(B, dtype=F64)

    def make_closure(opt):
        def closure():
            opt.zero_grad()
            w = torch.cat([x, y])
            loss = 0.5 * w @ a @ w - b @ w
            loss.backward()
            return loss

        return closure

    return x, y, make_closure


def sam_perturbation(w, rho, adaptive):
    """Eq. 2 with p = 2 (SAM): rho g / ||g||; ASAM Alg. 1: rho T^2 g / ||T g||, T = diag(|w|)."""
    g = grad_l(w)
    if not adaptive:
        return [rho * gi / norm(g) for gi in g]
    t = [abs(wi) for wi in w]
    t_g = [ti * gi for ti, gi in zips(t, g)]
    return [rho * ti * ti * gi / norm(t_g) for ti, gi in zips(t, g)]


def sam_gradient(w, rho, adaptive=False):
    """g = grad L(w) evaluated at w + eps_hat(w)."""
    eps_hat = sam_perturbation(w, rho, adaptive)
    return grad_l([wi + ei for wi, ei in zips(w, eps_hat)])


def run_sam(opt, closure, x, y):
    history, losses = [], []
    for _ in range(3):
        losses.append(opt.step(closure).detach().item())
        history.append(flat(x) + flat(y))
    return history, losses


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_sam_over_sgd_with_momentum_three_steps(adaptive):
    rho = 0.5 if adaptive else 0.05  # ASAM's scaled ball needs a larger radius
    lr, mu = 0.1, 0.9
    x, y, make_closure = sam_setup()
    opt = SAM(SGD([x, y], lr=lr, momentum=mu), rho=rho, adaptive=adaptive)
    actual, losses = run_sam(opt, make_closure(opt), x, y)
    # Alg. 1 with the paper's base optimizer, SGD with momentum (torch's convention:
    # b_1 = g, b_t = mu b_{t-1} + g, w <- w - lr b_t) fed the SAM gradient.
    w, buf, expected, expected_losses = X0 + Y0, None, [], []
    for _ in range(3):
        expected_losses.append(loss_l(w))  # step() returns the loss at w (first pass)
        g = sam_gradient(w, rho, adaptive)
        buf = g if buf is None else [mu * bi + gi for bi, gi in zips(buf, g)]
        w = [wi - lr * bi for wi, bi in zips(w, buf)]
        expected.append(w)
    for t in range(3):
        assert_values(torch.tensor(actual[t], dtype=F64), expected[t])
    assert losses == pytest.approx(expected_losses, rel=TOL, abs=TOL)


def test_sam_over_adam_three_steps():
    rho, lr, beta1, beta2, eps = 0.05, 0.1, 0.9, 0.999, 1e-8
    x, y, make_closure = sam_setup()
    opt = SAM(Adam([x, y], lr=lr, betas=(beta1, beta2), eps=eps), rho=rho)
    actual, _ = run_sam(opt, make_closure(opt), x, y)
    w, expected = X0 + Y0, []
    m, v = [0.0] * 3, [0.0] * 3
    for t in range(1, 4):
        g = sam_gradient(w, rho)  # Adam (arXiv 1412.6980) fed the SAM gradient
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zips(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zips(v, g)]
        w = [
            wi - lr * (mi / (1 - beta1**t)) / (math.sqrt(vi / (1 - beta2**t)) + eps)
            for wi, mi, vi in zips(w, m, v)
        ]
        expected.append(w)
    for t in range(3):
        assert_values(torch.tensor(actual[t], dtype=F64), expected[t])


def test_sam_state_dict_holds_inner_state_and_resumes_in_lock_step():
    x, y, make_closure = sam_setup()
    opt = SAM(SGD([x, y], lr=0.1, momentum=0.9), rho=0.05)
    closure = make_closure(opt)
    opt.step(closure)
    opt.step(closure)
    saved = copy.deepcopy(opt.state_dict())
    for index, p in enumerate((x, y)):
        torch.testing.assert_close(
            saved["state"][index]["momentum_buffer"],
            opt.base_optimizer.state[p]["momentum_buffer"],
            rtol=0,
            atol=0,
        )
    assert saved["param_groups"][0]["rho"] == 0.05

    x2, y2, make_closure2 = sam_setup()
    with torch.no_grad():
        x2.copy_(x)
        y2.copy_(y)
    fresh = SAM(SGD([x2, y2], lr=0.1, momentum=0.9), rho=0.05)
    fresh.load_state_dict(saved)
    closure2 = make_closure2(fresh)
    for _ in range(2):
        opt.step(closure)
        fresh.step(closure2)
        torch.testing.assert_close(x2, x, rtol=0, atol=0)
        torch.testing.assert_close(y2, y, rtol=0, atol=0)


def test_sam_lr_scheduler_changes_the_inner_lr():
    rho, lr = 0.05, 0.1
    x, y, make_closure = sam_setup()
    inner = SGD([x, y], lr=lr)
    opt = SAM(inner, rho=rho)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    closure = make_closure(opt)
    w, expected = X0 + Y0, []
    for t in range(3):
        assert inner.param_groups[0]["lr"] == lr * 0.5**t
        opt.step(closure)
        scheduler.step()
        g = sam_gradient(w, rho)
        w = [wi - lr * 0.5**t * gi for wi, gi in zips(w, g)]
        expected.append(w)
        assert_values(torch.cat([x, y]), w)


def test_sam_step_without_closure_raises():
    x, y, _ = sam_setup()
    opt = SAM(SGD([x, y], lr=0.1))
    with pytest.raises(ValueError, match=r"^SAM\.step needs a closure"):
        opt.step()


def test_sam_closure_that_raises_leaves_parameters_unchanged():
    x, y, make_closure = sam_setup()
    opt = SAM(SGD([x, y], lr=0.1, momentum=0.9), rho=0.05)
    good = make_closure(opt)
    calls = []

    def closure():
        calls.append(None)
        if len(calls) == 2:  # the second pass, at w + eps_hat
            raise RuntimeError("boom")
        return good()

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    assert flat(x) == X0 and flat(y) == Y0
    assert not opt.base_optimizer.state  # the inner optimizer did not step
    # Usable afterwards: a normal step is the hand-derived first SAM step.
    opt.step(good)
    g = sam_gradient(X0 + Y0, 0.05)
    assert_values(torch.cat([x, y]), [wi - 0.1 * gi for wi, gi in zips(X0 + Y0, g)])


# ---------------------------------------------------------------------------------------------
# AGC, arXiv 2102.06171, Eq. 3
# ---------------------------------------------------------------------------------------------


def agc_unit(g, w, lam, eps):
    """Eq. 3 for one unit i: G_i <- lam ||W_i||* / ||G_i|| G_i if ||G_i|| / ||W_i||* > lam,
    with ||W_i||* = max(||W_i||, eps). Returns (clipped G_i, whether it was clipped)."""
    w_star = max(norm(w), eps)
    if norm(g) / w_star > lam:
        return [lam * w_star / norm(g) * gi for gi in g], True
    return list(g), False


def rows(values, width):
    return [values[i : i + width] for i in range(0, len(values), width)]


def agc_layer(g, w, width, lam, eps):
    """Clip a layer unit by unit; units are chunks of ``width`` values (output-first layout)."""
    clipped = [agc_unit(gu, wu, lam, eps) for gu, wu in zips(rows(g, width), rows(w, width))]
    return [x for unit, _ in clipped for x in unit], [flag for _, flag in clipped]


# Units: the rows of the weight, the bias as a whole (width = its length). The 2x2 weight:
# row 0 (||W_0|| = sqrt 5) gets large gradients (clipped), row 1 gets small ones (untouched).
# The bias (1.0, 0.01) is ONE unit: per element, its second entry would be clipped.
AGC_W0 = [1.0, 2.0, 0.5, -0.5]
AGC_B0 = [1.0, 0.01]
AGC_W_GRADS = [[1.0, -1.0, 0.01, 0.02], [0.5, 0.8, -0.02, 0.01], [-2.0, 0.3, 0.015, -0.015]]
AGC_B_GRADS = [[0.05, 0.05], [0.5, -0.5], [-0.02, 0.06]]


def test_agc_optimizer_kwarg_three_steps_with_momentum():
    lam, eps, lr, mu = 0.1, 1e-3, 0.1, 0.5
    weight, bias = param(AGC_W0, (2, 2)), param(AGC_B0, (2,))
    opt = SGD([weight, bias], lr=lr, momentum=mu, agc_clipping=lam)
    actual = run_fixed_grads(opt, [weight, bias], [AGC_W_GRADS, AGC_B_GRADS])
    # The clipped gradient G~ enters SGD's momentum: b_1 = G~_1, b_t = mu b_{t-1} + G~_t.
    expected, flags = [], []
    for w, grads, width in ((AGC_W0, AGC_W_GRADS, 2), (AGC_B0, AGC_B_GRADS, len(AGC_B0))):
        buf, history, layer_flags = None, [], []
        for g in grads:
            clipped, flag = agc_layer(g, w, width, lam, eps)
            buf = clipped if buf is None else [mu * b + c for b, c in zips(buf, clipped)]
            w = [wi - lr * bi for wi, bi in zips(w, buf)]
            history.append(w)
            layer_flags.append(flag)
        expected.append(history)
        flags.append(layer_flags)
    # The data exercise both branches: row 0 clipped, row 1 untouched; the bias as a whole
    # untouched at steps 1 and 3, clipped at step 2.
    assert flags == [[[True, False]] * 3, [[False], [True], [False]]]
    assert_history(actual, expected)
    assert flat(weight.grad) == AGC_W_GRADS[2]  # the step did not modify p.grad


def test_agc_transformation_on_conv_filters_and_a_zero_row():
    lam, eps, lr = 0.05, 1e-3, 0.1
    # Conv weight (out=2, in=1, k=2, k=2): one unit per output filter (4 values each).
    conv0 = [1.0, -1.0, 0.5, 0.5, 0.1, 0.0, -0.1, 0.2]
    conv_grads = [
        [0.05, 0.02, -0.01, 0.03, 0.2, -0.1, 0.0, 0.1],
        [0.3, -0.2, 0.1, 0.0, 0.001, 0.002, -0.001, 0.0],
        [-0.01, 0.02, 0.0, 0.04, -0.05, 0.05, 0.1, -0.1],
    ]
    # A 2x2 weight whose row 0 is zero: ||W_0||* = max(0, eps) = eps.
    zero_row0 = [0.0, 0.0, 1.0, 1.0]
    zero_row_grads = [[0.3, -0.4, 0.01, 0.01], [0.1, 0.1, 0.02, -0.02], [-0.2, 0.05, 0.3, 0.3]]
    conv, weight = param(conv0, (2, 1, 2, 2)), param(zero_row0, (2, 2))
    opt = ChainedOptimizer(
        [conv, weight], chain(clip_by_agc(lam, eps), scale_by_learning_rate()), lr=lr
    )
    actual = run_fixed_grads(opt, [conv, weight], [conv_grads, zero_row_grads])
    expected, flags = [], []
    for w, grads, width in ((conv0, conv_grads, 4), (zero_row0, zero_row_grads, 2)):
        history, layer_flags = [], []
        for g in grads:
            clipped, flag = agc_layer(g, w, width, lam, eps)
            w = [wi - lr * ci for wi, ci in zips(w, clipped)]
            history.append(w)
            layer_flags.append(flag)
        expected.append(history)
        flags.append(layer_flags)
    assert flags == [
        [[False, True], [True, False], [False, True]],
        [[True, False], [True, False], [True, True]],
    ]
    # The zero row after step 1, in numbers: G_0 = (0.3, -0.4), ||G_0|| = 0.5, so
    # G~_0 = lam * eps / 0.5 * G_0 = (3e-5, -4e-5) and W_0 = -lr G~_0 = (-3e-6, 4e-6).
    assert expected[1][0][:2] == pytest.approx([-3e-6, 4e-6], rel=1e-12)
    assert_history(actual, expected)


def test_adaptive_clip_grad_standalone_in_a_hand_written_loop():
    lam, eps, lr = 0.1, 1e-3, 0.1
    conv0 = [1.0, -1.0, 0.5, 0.5, 0.1, 0.0, -0.1, 0.2]
    conv_grads = [
        [0.5, 0.2, -0.1, 0.3, 0.002, -0.001, 0.0, 0.001],
        [0.01, -0.02, 0.01, 0.0, 0.3, 0.2, -0.1, 0.0],
        [-0.1, 0.2, 0.0, 0.4, -0.005, 0.005, 0.001, -0.001],
    ]
    conv, weight, bias = param(conv0, (2, 1, 2, 2)), param(AGC_W0, (2, 2)), param(AGC_B0, (2,))
    params = [conv, weight, bias]
    layers = [(conv0, conv_grads, 4), (AGC_W0, AGC_W_GRADS, 2), (AGC_B0, AGC_B_GRADS, len(AGC_B0))]
    values, flags = [w for w, _, _ in layers], []
    for t in range(3):
        for p, (_, grads, _) in zips(params, layers):
            p.grad = torch.tensor(grads[t], dtype=F64).reshape(p.shape)
        adaptive_clip_grad_(params, clipping=lam)  # eps defaults to 1e-3
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
        for i, (p, (_, grads, width)) in enumerate(zips(params, layers)):
            clipped, flag = agc_layer(grads[t], values[i], width, lam, eps)
            flags.append(flag)
            assert_values(p.grad, clipped)  # p.grad was clipped in place
            values[i] = [wi - lr * ci for wi, ci in zips(values[i], clipped)]
            assert_values(p, values[i])
    # Filters alternate between clipped and untouched; rows and bias as in the SGD test above.
    assert flags == [
        [True, False], [True, False], [False],
        [False, True], [True, False], [True],
        [True, False], [True, False], [False],
    ]  # fmt: skip


def test_agc_tiny_gradient_is_clipped_to_the_eq3_limit():
    # timm and the NFNets code divide by max(||G_i||, 1e-6) and would under-clip this unit.
    lam, eps = 0.01, 1e-5
    weight = param([0.0, 0.0, 1.0, 1.0], (2, 2))
    weight.grad = torch.tensor([[3e-7, 4e-7], [0.0, 0.0]], dtype=F64)
    # Eq. 3: ||W_0||* = max(0, eps) = 1e-5; ||G_0|| = 5e-7 > lam * 1e-5 = 1e-7, so
    # G~_0 = lam * 1e-5 / 5e-7 * G_0 = (6e-8, 8e-8), of norm exactly 1e-7.
    expected, flags = agc_layer([3e-7, 4e-7, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], 2, lam, eps)
    assert flags == [True, False]
    assert expected[:2] == pytest.approx([6e-8, 8e-8], rel=1e-12)
    adaptive_clip_grad_([weight], clipping=lam, eps=eps)
    torch.testing.assert_close(
        weight.grad.flatten(), torch.tensor(expected, dtype=F64), rtol=1e-9, atol=0.0
    )


# ---------------------------------------------------------------------------------------------
# Global-norm clipping in a chain
# ---------------------------------------------------------------------------------------------


def test_clip_by_global_norm_in_a_chain_equals_clip_grad_norm_then_sgd():
    lrs, max_norm = (0.1, 0.3), 1.0
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    ref_weight, ref_bias = param(W0, (2, 2)), param(B0, (2,))
    opt = ChainedOptimizer(
        [{"params": [weight], "lr": lrs[0]}, {"params": [bias], "lr": lrs[1]}],
        chain(clip_by_global_norm(max_norm), scale_by_learning_rate()),
    )
    ref = torch.optim.SGD(
        [{"params": [ref_weight], "lr": lrs[0]}, {"params": [ref_bias], "lr": lrs[1]}]
    )
    # Global norms 2.5 and 1.2 (clipped) and 0.5 (not clipped).
    w_grads = [[1.5, 0.0, -2.0, 0.0], [0.0, 0.6, 0.0, -0.8], [0.3, 0.0, 0.0, 0.0]]
    b_grads = [[0.0, 0.0], [0.4, 0.48], [0.0, 0.4]]
    for t in range(3):
        for p, q, g in ((weight, ref_weight, w_grads[t]), (bias, ref_bias, b_grads[t])):
            p.grad = torch.tensor(g, dtype=F64).reshape(p.shape)
            q.grad = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_([ref_weight, ref_bias], max_norm)
        assert float(total) == pytest.approx([2.5, math.sqrt(1.0 + 0.4**2 + 0.48**2), 0.5][t])
        ref.step()
        opt.step()
        torch.testing.assert_close(weight, ref_weight, rtol=TOL, atol=TOL)
        torch.testing.assert_close(bias, ref_bias, rtol=TOL, atol=TOL)


def test_clip_by_global_norm_rejects_groups_that_disagree():
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    message = (
        r"ChainedOptimizer: max_grad_norm differs between param groups \(\[1\.0, 2\.0\]\); "
        r"a global norm needs one limit"
    )
    # At construction ...
    with pytest.raises(ValueError, match=message):
        ChainedOptimizer(
            [{"params": [weight]}, {"params": [bias], "max_grad_norm": 2.0}],
            chain(clip_by_global_norm(1.0), scale_by_learning_rate()),
            lr=0.1,
        )
    # ... and at a step after a group was edited, before any state is created or counted.
    opt = ChainedOptimizer(
        [{"params": [weight]}, {"params": [bias]}],
        chain(clip_by_global_norm(1.0), scale_by_learning_rate()),
        lr=0.1,
    )
    opt.param_groups[1]["max_grad_norm"] = 2.0
    weight.grad = torch.ones(2, 2, dtype=F64)
    bias.grad = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match=message):
        opt.step()
    assert flat(weight) == W0 and flat(bias) == B0
    assert len(opt.state) == 0


def test_nesterov_edited_into_a_group_without_momentum_fails_at_the_step():
    """A group's relations are checked before every step, as its keys' ranges are at
    construction: Nesterov momentum with momentum 0 would be plain SGD, silently."""
    weight, bias = param(W0, (2, 2)), param(B0, (2,))
    opt = SGD([{"params": [weight]}, {"params": [bias], "momentum": 0.0}], lr=0.1, momentum=0.9)
    opt.param_groups[1]["nesterov"] = True
    weight.grad = torch.ones(2, 2, dtype=F64)
    bias.grad = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match=r"SGD: invalid nesterov=True in param group 1 with "):
        opt.step()
    assert flat(weight) == W0 and flat(bias) == B0
    assert len(opt.state) == 0
