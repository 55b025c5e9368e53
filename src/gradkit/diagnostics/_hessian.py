r"""The Hessian of the loss through Hessian-vector products: top eigenvalues and trace.

Nothing here forms the :math:`n \times n` Hessian. Every method needs only the product

.. math:: H v = \nabla_\theta \big( \nabla_\theta L(\theta)^\top v \big),

one double backward pass per batch (Pearlmutter 1994), averaged over the dataset with weights
:math:`n_b / N` so that :math:`H` is the Hessian of the dataset loss however it is batched
(:class:`HessianOperator`). On top of it:

- :func:`power_iteration`: :math:`v \leftarrow Hv / \lVert Hv \rVert`, with deflation by
  projection: the :math:`i`-th eigenvector is sought in the orthogonal complement of the first
  :math:`i - 1`, i.e. power iteration on :math:`(I - U U^\top) H (I - U U^\top)`. It finds the
  eigenvalues of largest **magnitude**, signed; convergence is linear in
  :math:`|\lambda_{i+1} / \lambda_i|`.
- :func:`lanczos`: :math:`m` Lanczos steps build an orthonormal basis :math:`Q` of the Krylov
  space and the tridiagonal :math:`T = Q^\top H Q`; the largest (algebraic) eigenvalues of
  :math:`T` (Ritz values) approximate those of :math:`H`. Every new vector is orthogonalized
  against all previous ones, twice (full reorthogonalization: memory :math:`m n`, and no
  spurious copies of converged eigenvalues). With :math:`m = n` it is exact.
- :func:`hutchinson`: :math:`\operatorname{tr} H = \mathbb E[z^\top H z]` for Rademacher
  :math:`z` (Hutchinson 1989); the estimate is the sample mean, with its standard error. Its
  variance is :math:`2 \sum_{i \ne j} H_{ij}^2`, so it is exact for a diagonal :math:`H`.

Used e.g. by PyHessian (Yao et al., arXiv 1912.07145) to compare the curvature that different
optimizers and batch sizes end in. Every random start comes from a generator seeded with ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradkit.diagnostics._evaluation import (
    DEFAULT_LOSS,
    Data,
    LossFunction,
    batches,
    check_positive,
    check_positive_integer,
    flatten,
    preserved,
    trainable,
    unflatten,
)

HessianVectorProduct = Callable[[Tensor], Tensor]
"""``hvp(v) -> H v`` on flat vectors."""

_METHODS = ("lanczos", "power")


class HessianOperator:
    """The map :math:`v \\mapsto H v` of the dataset loss of ``model`` at its current parameters.

    Args:
        model: the network; call the operator inside evaluation mode (the public functions do).
        data: the dataset (:data:`Data`); the product averages over its batches.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss of a batch.
        batch_size: slice tensors into batches of this size (``None``: one batch).
        parameters: the parameters :math:`\\theta` (default: all that require gradients).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Data,
        *,
        loss_fn: LossFunction = DEFAULT_LOSS,
        batch_size: int | None = None,
        parameters: list[Tensor] | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.parameters = [p for _, p in trainable(model)] if parameters is None else parameters
        self.dimension = sum(p.numel() for p in self.parameters)
        self.dtype = self.parameters[0].dtype
        self.device = self.parameters[0].device
        self.products = 0

    def __call__(self, vector: Tensor) -> Tensor:
        """:math:`H v` for a flat ``vector`` of length :attr:`dimension`."""
        pieces = unflatten(vector.to(self.dtype), self.parameters)
        result = torch.zeros(self.dimension, dtype=self.dtype, device=self.device)
        count = 0
        for inputs, targets in batches(self.data, self.batch_size):
            loss = self.loss_fn(self.model(inputs), targets)
            grads = torch.autograd.grad(loss, self.parameters, create_graph=True, allow_unused=True)
            dot = sum(
                ((g * v).sum() for g, v in zip(grads, pieces, strict=True) if g is not None),
                start=torch.zeros((), dtype=self.dtype, device=self.device),
            )
            if dot.requires_grad:
                products = torch.autograd.grad(dot, self.parameters, allow_unused=True)
                result.add_(
                    flatten(
                        torch.zeros_like(p) if h is None else h
                        for p, h in zip(self.parameters, products, strict=True)
                    ),
                    alpha=len(targets),
                )
            count += len(targets)
        if count == 0:
            raise ValueError("data: the dataset has no samples")
        self.products += 1
        return result / count


def _normalized(vector: Tensor) -> Tensor:
    return vector / vector.norm()


def _project_out(vector: Tensor, basis: list[Tensor]) -> Tensor:
    for u in basis:
        vector = vector - (u @ vector) * u
    return vector


def power_iteration(
    hvp: HessianVectorProduct,
    dimension: int,
    k: int = 1,
    *,
    iterations: int = 1000,
    tol: float = 1e-9,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, int]:
    """The ``k`` eigenvalues of largest magnitude by power iteration with deflation.

    Each eigenvalue is the Rayleigh quotient :math:`v^\\top H v` of the iterate; an eigenvalue
    stops when its relative change falls below ``tol`` (or after ``iterations`` products).

    Returns:
        ``(eigenvalues (k,), eigenvectors (k, dimension), products used)``.
    """
    check_positive_integer("power_iteration", "k", k)
    check_positive_integer("power_iteration", "iterations", iterations)
    check_positive("power_iteration", "tol", tol)
    if k > dimension:
        raise ValueError(f"power_iteration: invalid k={k}; the operator has dimension {dimension}")
    values: list[float] = []
    vectors: list[Tensor] = []
    used = 0
    for _ in range(k):
        start = torch.randn(dimension, generator=generator, dtype=dtype).to(device)
        v = _normalized(_project_out(start, vectors))
        value = math.nan
        for _ in range(iterations):
            w = _project_out(hvp(v).to(dtype), vectors)
            used += 1
            new_value = float(v @ w)
            norm = w.norm()
            if norm == 0:  # v spans the null space: the eigenvalue is 0
                value = 0.0
                break
            v = w / norm
            converged = abs(new_value - value) <= tol * max(abs(new_value), 1e-30)
            value = new_value
            if converged:
                break
        values.append(value)
        vectors.append(v)
    return torch.tensor(values, dtype=dtype), torch.stack(vectors), used


def lanczos(
    hvp: HessianVectorProduct,
    dimension: int,
    k: int = 1,
    *,
    iterations: int = 64,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, int]:
    """The ``k`` largest eigenvalues by ``iterations`` Lanczos steps (capped at ``dimension``),
    with full reorthogonalization.

    The iteration stops early when the Krylov space becomes invariant (:math:`\\beta_j \\approx
    0`); it then has the exact eigenvalues of that space, and may return fewer than ``k``.

    Returns:
        ``(eigenvalues (k,) descending, Ritz vectors (k, dimension), products used)``.
    """
    check_positive_integer("lanczos", "k", k)
    check_positive_integer("lanczos", "iterations", iterations)
    if k > dimension:
        raise ValueError(f"lanczos: invalid k={k}; the operator has dimension {dimension}")
    steps = min(max(iterations, k), dimension)
    basis = torch.zeros(steps, dimension, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    q = _normalized(torch.randn(dimension, generator=generator, dtype=dtype).to(device))
    scale = 0.0
    for j in range(steps):
        basis[j] = q
        w = hvp(q).to(dtype)
        alpha = float(q @ w)
        w = w - alpha * q
        if j > 0:
            w = w - betas[-1] * basis[j - 1]
        for _ in range(2):  # Gram-Schmidt twice: orthogonal to working precision
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(w.norm())
        scale = max(scale, abs(alpha), beta)
        if j == steps - 1 or beta <= 1e3 * torch.finfo(dtype).eps * max(scale, 1e-30):
            break
        betas.append(beta)
        q = w / beta
    size = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=dtype))
    if size > 1:
        off = torch.tensor(betas[: size - 1], dtype=dtype)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    ritz_values, ritz_vectors = torch.linalg.eigh(tridiagonal)
    order = torch.argsort(ritz_values, descending=True)[:k]
    vectors = ritz_vectors[:, order].T.to(device) @ basis[:size]
    return ritz_values[order], vectors, size


def hutchinson(
    hvp: HessianVectorProduct,
    dimension: int,
    *,
    samples: int = 100,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of :math:`\\operatorname{tr} H` from ``samples`` Rademacher probes.

    Returns:
        ``(estimate, standard error)``; the standard error is ``nan`` for one sample.
    """
    check_positive_integer("hutchinson", "samples", samples)
    estimates = []
    for _ in range(samples):
        z = torch.randint(0, 2, (dimension,), generator=generator).to(dtype=dtype, device=device)
        z = 2 * z - 1
        estimates.append(float(z @ hvp(z).to(dtype)))
    values = torch.tensor(estimates, dtype=torch.float64)
    error = float(values.std() / math.sqrt(samples)) if samples > 1 else math.nan
    return float(values.mean()), error


@dataclass(frozen=True)
class HessianEigenvalues:
    """Top Hessian eigenvalues of a model's dataset loss.

    Attributes:
        eigenvalues: descending (``lanczos``) or by decreasing magnitude (``power``).
        eigenvectors: ``(k, n)`` unit vectors over the flattened parameters.
        method: ``"lanczos"`` or ``"power"``.
        products: the Hessian-vector products it took.
    """

    eigenvalues: tuple[float, ...]
    eigenvectors: Tensor
    method: str
    products: int


@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson's estimate of the trace of the Hessian, its standard error and sample count."""

    trace: float
    standard_error: float
    samples: int


def hessian_eigenvalues(
    model: nn.Module,
    data: Data,
    k: int = 1,
    *,
    method: str = "lanczos",
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    iterations: int | None = None,
    tol: float = 1e-9,
    seed: int = 0,
) -> HessianEigenvalues:
    """The top ``k`` eigenvalues of the Hessian of the dataset loss at the model's parameters.

    Evaluated in evaluation mode; parameters, gradients and modes are left as they were.

    Args:
        method: ``"lanczos"`` (the ``k`` largest; ``iterations`` Lanczos steps, default 64) or
            ``"power"`` (the ``k`` largest in magnitude; at most ``iterations`` products per
            eigenvalue, default 1000, stopping at relative change ``tol``).
        seed: seeds the starting vectors.

    Example:
        >>> top = hessian_eigenvalues(model, (x, y), k=3, batch_size=512)
        >>> top.eigenvalues
    """
    if method not in _METHODS:
        raise ValueError(f"hessian_eigenvalues: unknown method={method!r}; expected {_METHODS}")
    generator = torch.Generator().manual_seed(seed)
    with preserved(model):
        operator = HessianOperator(model, data, loss_fn=loss_fn, batch_size=batch_size)
        common = {"generator": generator, "dtype": operator.dtype, "device": operator.device}
        if method == "power":
            values, vectors, _ = power_iteration(
                operator, operator.dimension, k, iterations=iterations or 1000, tol=tol, **common
            )
        else:
            values, vectors, _ = lanczos(
                operator, operator.dimension, k, iterations=iterations or 64, **common
            )
    return HessianEigenvalues(
        tuple(float(v) for v in values), vectors.detach(), method, operator.products
    )


def hessian_trace(
    model: nn.Module,
    data: Data,
    *,
    samples: int = 100,
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    seed: int = 0,
) -> HessianTrace:
    """Hutchinson's estimate of the trace of the Hessian of the dataset loss (Rademacher probes).

    Evaluated in evaluation mode; parameters, gradients and modes are left as they were.
    """
    generator = torch.Generator().manual_seed(seed)
    with preserved(model):
        operator = HessianOperator(model, data, loss_fn=loss_fn, batch_size=batch_size)
        trace, error = hutchinson(
            operator,
            operator.dimension,
            samples=samples,
            generator=generator,
            dtype=operator.dtype,
            device=operator.device,
        )
    return HessianTrace(trace, error, samples)
