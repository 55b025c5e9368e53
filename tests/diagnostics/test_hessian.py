"""Hessian eigenvalues (power iteration, Lanczos) and trace (Hutchinson) by Hessian-vector products.

Reference 1, exact: least squares :math:`L(w) = \\frac1N \\lVert Xw - y \\rVert^2` has the constant
Hessian :math:`H = \\frac2N X^\\top X`; building :math:`X = U S R^\\top` (orthonormal :math:`U`,
rotation :math:`R`) gives :math:`H = R\\, (2 S^2 / N)\\, R^\\top` with chosen eigenvalues.
Reference 2: a small tanh MLP with cross-entropy, against the full Hessian from
``torch.autograd.functional.hessian`` and ``eigvalsh``. Everything in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gradkit.diagnostics import (
    HessianOperator,
    hessian_eigenvalues,
    hessian_trace,
    hutchinson,
    lanczos,
    power_iteration,
)

EIGENVALUES = torch.tensor([10.0, 6.0, 3.0, 1.5, 0.7, 0.2], dtype=torch.float64)
N = 64


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs.squeeze(-1), targets)


def _least_squares(*, rotate: bool) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    d = len(EIGENVALUES)
    u, _ = torch.linalg.qr(torch.randn(N, d, generator=generator, dtype=torch.float64))
    rotation = (
        torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))[0]
        if rotate
        else torch.eye(d, dtype=torch.float64)
    )
    singular = torch.sqrt(EIGENVALUES * N / 2)
    x = u @ torch.diag(singular) @ rotation.T
    y = torch.randn(N, generator=generator, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    return model, (x, y)


@pytest.mark.parametrize("batch_size", [None, 16, 20])  # 20: batches of 20, 20, 20 and 4
@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_top_eigenvalues_of_a_quadratic(method: str, batch_size: int | None) -> None:
    model, data = _least_squares(rotate=True)
    top = hessian_eigenvalues(model, data, k=3, method=method, loss_fn=_mse, batch_size=batch_size)
    assert top.eigenvalues == pytest.approx(EIGENVALUES[:3].tolist(), rel=1e-4)
    assert top.method == method
    # The eigenvectors are unit vectors with H v = lambda v.
    operator = HessianOperator(model, data, loss_fn=_mse)
    for value, vector in zip(top.eigenvalues, top.eigenvectors, strict=True):
        assert float(vector.norm()) == pytest.approx(1.0, abs=1e-8)
        torch.testing.assert_close(operator(vector), value * vector, atol=1e-4 * value, rtol=0)


def test_trace_of_a_diagonal_quadratic_is_exact() -> None:
    # Rademacher probes: z^T H z = tr H for diagonal H, whatever the sample (Gaussian probes
    # would scatter by sqrt(2 sum lambda^2) ~ 16 here).
    model, data = _least_squares(rotate=False)
    trace = hessian_trace(model, data, samples=5, loss_fn=_mse, batch_size=16)
    assert trace.trace == pytest.approx(float(EIGENVALUES.sum()), rel=1e-10)
    assert trace.standard_error == pytest.approx(0.0, abs=1e-9)


def test_trace_of_a_rotated_quadratic_is_unbiased() -> None:
    model, data = _least_squares(rotate=True)
    truth = float(EIGENVALUES.sum())
    trace = hessian_trace(model, data, samples=400, loss_fn=_mse, seed=3)
    assert trace.standard_error > 0.05  # off-diagonal entries make single probes scatter
    assert abs(trace.trace - truth) < 4 * trace.standard_error
    assert abs(trace.trace - truth) / truth < 0.05


class _TanhMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(x)))


def _mlp_and_full_hessian() -> tuple[nn.Module, tuple, torch.Tensor]:
    torch.manual_seed(0)
    model = _TanhMLP().double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=generator)
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = int(torch.Size(shape).numel())
            params[name] = theta[start : start + size].view(shape)
            start += size
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    full = torch.autograd.functional.hessian(loss, flat)
    return model, (x, y), torch.linalg.eigvalsh(full)


def test_mlp_against_the_full_hessian() -> None:
    model, data, spectrum = _mlp_and_full_hessian()
    n = len(spectrum)  # 45 parameters
    largest = spectrum.flip(0)[:4]
    by_magnitude = spectrum[spectrum.abs().argsort(descending=True)][:2]
    # Lanczos with as many steps as dimensions spans the whole space: exact.
    exact = hessian_eigenvalues(model, data, k=4, method="lanczos", iterations=n, batch_size=16)
    assert exact.eigenvalues == pytest.approx(largest.tolist(), rel=1e-8)
    # Fewer steps still resolve the top eigenvalue.
    short = hessian_eigenvalues(model, data, k=1, method="lanczos", iterations=20)
    assert short.eigenvalues[0] == pytest.approx(float(largest[0]), rel=1e-4)
    power = hessian_eigenvalues(model, data, k=2, method="power", iterations=5000, tol=1e-12)
    assert power.eigenvalues == pytest.approx(by_magnitude.tolist(), rel=1e-4)
    trace = hessian_trace(model, data, samples=300, batch_size=25)
    assert abs(trace.trace - float(spectrum.sum())) < 4 * trace.standard_error


def test_the_model_is_left_as_it_was() -> None:
    model, data, _ = _mlp_and_full_hessian()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = [p.detach().clone() for p in model.parameters()]
    hessian_eigenvalues(model, data, k=2)
    hessian_trace(model, data, samples=3)
    assert model.training
    for p, value in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, value)
        assert torch.equal(p.grad, torch.full_like(p, 7.0))


def test_algorithms_on_an_explicit_matrix() -> None:
    # A matrix with a negative eigenvalue of the largest magnitude: power iteration finds it
    # first (largest |lambda|), Lanczos the largest algebraic ones.
    generator = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    values = torch.tensor([-9.0, 5.0, 4.0, 2.0, 1.0, 0.5, -0.5, 0.1], dtype=torch.float64)
    matrix = q @ torch.diag(values) @ q.T
    power, _, _ = power_iteration(lambda v: matrix @ v, 8, 2, generator=generator)
    assert power.tolist() == pytest.approx([-9.0, 5.0], rel=1e-6)
    ritz, vectors, steps = lanczos(lambda v: matrix @ v, 8, 3, iterations=8, generator=generator)
    assert ritz.tolist() == pytest.approx([5.0, 4.0, 2.0], rel=1e-10)
    assert steps == 8
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(3, dtype=torch.float64))
    estimate, _ = hutchinson(lambda v: torch.diag(values) @ v, 8, samples=3, generator=generator)
    assert estimate == pytest.approx(float(values.sum()), abs=1e-12)


BAD = [
    (lambda m, d: hessian_eigenvalues(m, d, method="arnoldi"), ValueError, "unknown method"),
    (lambda m, d: hessian_eigenvalues(m, d, k=7, loss_fn=_mse), ValueError, "invalid k=7"),
    (lambda m, d: hessian_eigenvalues(m, d, k=0, loss_fn=_mse), ValueError, "invalid k=0"),
    (lambda m, d: hessian_trace(m, d, samples=0, loss_fn=_mse), ValueError, "invalid samples=0"),
    (
        lambda m, d: hessian_eigenvalues(m, d, method="power", tol=0.0, loss_fn=_mse),
        ValueError,
        "invalid tol=0.0",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_input(call, error: type[Exception], message: str) -> None:
    model, data = _least_squares(rotate=False)
    with pytest.raises(error, match=message):
        call(model, data)
