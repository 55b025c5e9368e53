r"""Loss landscapes: linear interpolation and random slices with filter normalization.

Two pictures of the loss around trained parameters :math:`\theta`:

- **Linear interpolation** (Goodfellow et al., arXiv 1412.6544; used by Keskar et al.,
  arXiv 1609.04836, Fig. 3, between small- and large-batch solutions):
  :math:`L\big((1 - \alpha)\theta_0 + \alpha \theta_1\big)` over :math:`\alpha`
  (:func:`interpolate`).
- **Random slices** (Li et al., arXiv 1712.09913): :math:`L(\theta + \alpha d)` and
  :math:`L(\theta + \alpha d_1 + \beta d_2)` (:func:`slice_1d`, :func:`slice_2d`) along Gaussian
  directions :math:`d \sim \mathcal N(0, I)` with **filter normalization** (their Sec. 4): each
  filter :math:`d_{i,j}` of the direction (slice :math:`j` along the output dimension of
  parameter tensor :math:`i`, in PyTorch's output-first layout) is rescaled to the norm of the
  matching weight filter,

  .. math:: d_{i,j} \leftarrow \frac{d_{i,j}}{\lVert d_{i,j} \rVert}\,\lVert \theta_{i,j} \rVert,

  which removes the scale invariance of networks with ReLU and normalization layers, so that
  landscapes of different networks compare. Parameters with :math:`\le 1` dimension (biases,
  normalization gains and shifts) are left out by default: their direction is zero
  (``include_1d=True`` makes it the parameter itself, as in the authors' code).

The loss is the dataset loss in evaluation mode (:mod:`gradkit.diagnostics._evaluation`); only
parameters move, buffers such as batch-norm statistics stay the model's, and the model is
restored exactly afterwards. A :class:`Landscape` saves itself as ``.npz`` (atomically).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from gradkit._io import atomic_output
from gradkit.diagnostics._evaluation import (
    DEFAULT_LOSS,
    Data,
    LossFunction,
    dataset_loss,
    preserved,
    trainable,
)

_NORMALIZATIONS = ("filter", "layer", "none")

Direction = dict[str, Tensor]
"""A direction in parameter space: one tensor per trainable parameter name."""


@dataclass(frozen=True)
class Landscape:
    """The loss (and accuracy) on a 1-D or 2-D grid of coordinates.

    Attributes:
        kind: ``"interpolation"``, ``"slice_1d"`` or ``"slice_2d"``.
        coordinates: one array per axis (:math:`\\alpha`, and :math:`\\beta` in 2-D).
        loss: shape ``(len(alpha),)`` or ``(len(alpha), len(beta))``.
        accuracy: same shape; ``nan`` where the outputs are not classification logits.
        title: a label carried into plots.
    """

    kind: str
    coordinates: tuple[np.ndarray, ...]
    loss: np.ndarray
    accuracy: np.ndarray
    title: str = ""
    meta: Mapping[str, float] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the arrays to an ``.npz`` file (atomically)."""
        arrays = {f"axis{i}": axis for i, axis in enumerate(self.coordinates)}
        arrays |= {f"meta_{key}": np.asarray(value) for key, value in self.meta.items()}
        with atomic_output(path) as temporary, open(temporary, "wb") as stream:
            np.savez(
                stream,
                kind=np.asarray(self.kind),
                title=np.asarray(self.title),
                loss=self.loss,
                accuracy=self.accuracy,
                **arrays,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Landscape:
        """Read a landscape written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as stored:
            axes = tuple(stored[f"axis{i}"] for i in range(stored["loss"].ndim))
            meta = {k[5:]: float(stored[k]) for k in stored.files if k.startswith("meta_")}
            return cls(
                str(stored["kind"]),
                axes,
                stored["loss"],
                stored["accuracy"],
                str(stored["title"]),
                meta,
            )


def _normalize_filters(direction: Tensor, weight: Tensor) -> Tensor:
    """Rescale each output slice of ``direction`` to the norm of the same slice of ``weight``."""
    shape = (-1,) + (1,) * (weight.dim() - 1)
    direction_norms = direction.flatten(1).norm(dim=1).view(shape)
    weight_norms = weight.flatten(1).norm(dim=1).view(shape)
    scale = torch.where(direction_norms > 0, weight_norms / direction_norms, 0.0)
    return direction * scale


def random_direction(
    model: nn.Module,
    *,
    seed: int = 0,
    normalization: str = "filter",
    include_1d: bool = False,
) -> Direction:
    """A Gaussian direction, normalized filter by filter (default) against the model's weights.

    Args:
        seed: seeds the Gaussian draw (a generator of its own; the global RNG is untouched).
        normalization: ``"filter"`` (Li et al.), ``"layer"`` (each tensor to the norm of its
            weight) or ``"none"`` (raw :math:`\\mathcal N(0, 1)`).
        include_1d: give parameters with ``ndim <= 1`` the direction :math:`\\theta_i` itself
            instead of zero (ignored with ``"none"``).
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(
            f"random_direction: unknown normalization={normalization!r}; "
            f"expected one of {_NORMALIZATIONS}"
        )
    generator = torch.Generator().manual_seed(seed)
    direction: Direction = {}
    for name, weight in trainable(model):
        w = weight.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if normalization == "none":
            direction[name] = d
        elif w.dim() <= 1:
            direction[name] = w.clone() if include_1d else torch.zeros_like(w)
        elif normalization == "filter":
            direction[name] = _normalize_filters(d, w)
        else:
            direction[name] = d * (w.norm() / d.norm())
    return direction


def _grid(values: Sequence[float] | np.ndarray | Tensor, name: str) -> np.ndarray:
    """The coordinates as a float array; the defaults are ``linspace(-0.5, 1.5, 41)`` for
    interpolation and ``linspace(-1, 1, 41)`` (1-D) or ``linspace(-1, 1, 21)`` (2-D) for slices."""
    array = np.asarray(values.tolist() if isinstance(values, Tensor) else values, dtype=float)
    if array.ndim != 1 or len(array) < 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"invalid {name}; expected at least 2 finite coordinates in a 1-D array")
    return array


def _parameters_of(
    source: nn.Module | Mapping[str, Tensor], names: list[str], *, buffers: bool = False
) -> list[Tensor]:
    """The tensors ``names`` of an end point (its parameters, and its buffers with ``buffers``)."""
    if isinstance(source, nn.Module):
        table = dict(source.named_parameters())
        if buffers:
            table.update(source.named_buffers())
    else:
        table = dict(source)
    missing = [name for name in names if name not in table]
    if missing:
        kind = "parameters and buffers" if buffers else "parameters"
        raise ValueError(f"the {kind} {missing} are missing from the given end point")
    return [table[name].detach().clone() for name in names]


def _on_line(first: Tensor, last: Tensor, alpha: float) -> Tensor:
    """The point at ``alpha`` between two tensors; a non-floating one is the nearer end's."""
    if first.is_floating_point():
        return (1 - alpha) * first + alpha * last
    return first if alpha < 0.5 else last


def _sweep(
    model: nn.Module,
    data: Data,
    points: Iterable[list[Tensor]],
    loss_fn: LossFunction,
    batch_size: int | None,
    targets: list[Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy with ``targets`` (default: the trainable parameters) set to each point."""
    if targets is None:
        targets = [p for _, p in trainable(model)]
    losses, accuracies = [], []
    with preserved(model):
        for point in points:
            with torch.no_grad():
                for p, value in zip(targets, point, strict=True):
                    p.copy_(value)
            loss, accuracy = dataset_loss(
                model, data, loss_fn, batch_size=batch_size, accuracy=True
            )
            losses.append(loss)
            accuracies.append(accuracy)
    return np.asarray(losses), np.asarray(accuracies)


def interpolate(
    model: nn.Module,
    start: nn.Module | Mapping[str, Tensor],
    end: nn.Module | Mapping[str, Tensor],
    data: Data,
    *,
    alphas: Sequence[float] | np.ndarray | Tensor | None = None,
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    buffers: bool = False,
    title: str = "",
) -> Landscape:
    """The loss along :math:`(1 - \\alpha)\\theta_0 + \\alpha\\theta_1` (arXiv 1609.04836, Fig. 3).

    Args:
        model: the network evaluated (its architecture; its parameters and buffers are
            restored).
        start, end: :math:`\\theta_0` and :math:`\\theta_1`, as models of the same architecture
            or mappings from parameter name to tensor (e.g. ``dict(m.named_parameters())``, or a
            ``state_dict``).
        alphas: the coordinates; 0 is ``start`` and 1 is ``end``.
        buffers: move the buffers along the line too (``start`` and ``end`` must then hold
            them: models or ``state_dict``\\ s). Floating buffers (batch norm's running mean
            and variance) take the same alpha, the others (``num_batches_tracked``) the nearer
            end's value, so that both ends are exactly the two models. Without it every point
            is evaluated with ``model``'s own buffers. Beyond [0, 1] an extrapolated running
            variance can turn negative, and the loss there is ``nan``.

    ``meta["distance"]`` is the distance between the two ends' trainable parameters.
    """
    grid = _grid(np.linspace(-0.5, 1.5, 41) if alphas is None else alphas, "alphas")
    named = trainable(model)
    parameters = len(named)
    if buffers:
        named += list(model.named_buffers())
    names = [name for name, _ in named]
    theta0 = _parameters_of(start, names, buffers=buffers)
    theta1 = _parameters_of(end, names, buffers=buffers)
    points = (
        [_on_line(x0, x1, float(a)) for x0, x1 in zip(theta0, theta1, strict=True)] for a in grid
    )
    loss, accuracy = _sweep(model, data, points, loss_fn, batch_size, [t for _, t in named])
    gaps = [
        (x1 - x0).flatten() for x0, x1 in zip(theta0[:parameters], theta1[:parameters], strict=True)
    ]
    distance = float(torch.cat(gaps).norm())
    return Landscape("interpolation", (grid,), loss, accuracy, title, {"distance": distance})


def slice_1d(
    model: nn.Module,
    data: Data,
    *,
    direction: Direction | None = None,
    alphas: Sequence[float] | np.ndarray | Tensor | None = None,
    seed: int = 0,
    normalization: str = "filter",
    include_1d: bool = False,
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    title: str = "",
) -> Landscape:
    """The loss along :math:`\\theta + \\alpha d` (arXiv 1712.09913, Sec. 4).

    ``direction`` defaults to :func:`random_direction` with ``seed``, ``normalization`` and
    ``include_1d``.
    """
    grid = _grid(np.linspace(-1.0, 1.0, 41) if alphas is None else alphas, "alphas")
    named = trainable(model)
    if direction is None:
        direction = random_direction(
            model, seed=seed, normalization=normalization, include_1d=include_1d
        )
    d = _parameters_of(direction, [name for name, _ in named])
    theta = [p.detach().clone() for _, p in named]
    points = ([x + float(a) * v for x, v in zip(theta, d, strict=True)] for a in grid)
    loss, accuracy = _sweep(model, data, points, loss_fn, batch_size)
    return Landscape("slice_1d", (grid,), loss, accuracy, title)


def slice_2d(
    model: nn.Module,
    data: Data,
    *,
    directions: tuple[Direction, Direction] | None = None,
    alphas: Sequence[float] | np.ndarray | Tensor | None = None,
    betas: Sequence[float] | np.ndarray | Tensor | None = None,
    seed: int = 0,
    normalization: str = "filter",
    include_1d: bool = False,
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int | None = None,
    title: str = "",
) -> Landscape:
    """The loss on the plane :math:`\\theta + \\alpha d_1 + \\beta d_2` (arXiv 1712.09913, Fig. 1).

    ``directions`` default to two :func:`random_direction`\\ s seeded ``seed`` and ``seed + 1``
    (in high dimension nearly orthogonal, as the paper notes); ``betas`` default to ``alphas``.
    ``loss[i, j]`` is at ``(alphas[i], betas[j])``.
    """
    grid_a = _grid(np.linspace(-1.0, 1.0, 21) if alphas is None else alphas, "alphas")
    grid_b = grid_a if betas is None else _grid(betas, "betas")
    named = trainable(model)
    if directions is None:
        directions = tuple(  # type: ignore[assignment]
            random_direction(model, seed=s, normalization=normalization, include_1d=include_1d)
            for s in (seed, seed + 1)
        )
    names = [name for name, _ in named]
    d1, d2 = (_parameters_of(d, names) for d in directions)  # type: ignore[union-attr]
    theta = [p.detach().clone() for _, p in named]
    points = (
        [x + float(a) * u + float(b) * v for x, u, v in zip(theta, d1, d2, strict=True)]
        for a in grid_a
        for b in grid_b
    )
    loss, accuracy = _sweep(model, data, points, loss_fn, batch_size)
    shape = (len(grid_a), len(grid_b))
    return Landscape(
        "slice_2d", (grid_a, grid_b), loss.reshape(shape), accuracy.reshape(shape), title
    )


def plot_landscape(
    landscape: Landscape,
    path: str | os.PathLike[str],
    *,
    style: str = "contour",
    log_scale: bool = False,
    dpi: int = 120,
) -> None:
    """Plot a landscape: 1-D as loss (and accuracy) curves; 2-D as ``style="contour"`` (filled,
    with contour lines) or ``"surface"`` (3-D). ``log_scale`` plots :math:`\\log_{10}` loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if style not in ("contour", "surface"):
        raise ValueError(f"plot_landscape: unknown style={style!r}; expected contour or surface")
    loss = np.log10(np.maximum(landscape.loss, 1e-12)) if log_scale else landscape.loss
    label = "log10 loss" if log_scale else "loss"
    if len(landscape.coordinates) == 1:
        figure, axes = plt.subplots(figsize=(6, 4), layout="constrained")
        (alpha,) = landscape.coordinates
        axes.plot(alpha, loss, color="C0", linewidth=1.5)
        axes.set_ylabel(label, color="C0")
        axes.set_xlabel("alpha" if landscape.kind == "interpolation" else "alpha (direction d)")
        if landscape.kind == "interpolation":
            for position in (0, 1):
                axes.axvline(position, color="grey", linewidth=0.6, linestyle=":")
        if np.all(np.isfinite(landscape.accuracy)):
            twin = axes.twinx()
            twin.plot(alpha, landscape.accuracy, color="C1", linewidth=1.2, linestyle="--")
            twin.set_ylabel("accuracy", color="C1")
        axes.grid(alpha=0.3)
    else:
        alpha, beta = landscape.coordinates
        grid_a, grid_b = np.meshgrid(alpha, beta, indexing="ij")
        if style == "surface":
            figure = plt.figure(figsize=(6.5, 5), layout="constrained")
            axes = figure.add_subplot(projection="3d")
            axes.plot_surface(grid_a, grid_b, loss, cmap="viridis", linewidth=0)
            axes.set_zlabel(label)
        else:
            figure, axes = plt.subplots(figsize=(6, 5), layout="constrained")
            filled = axes.contourf(grid_a, grid_b, loss, levels=30, cmap="viridis")
            axes.contour(grid_a, grid_b, loss, levels=15, colors="white", linewidths=0.4)
            figure.colorbar(filled, ax=axes, label=label)
            axes.plot([0], [0], marker="*", color="red", markersize=10)
        axes.set_xlabel("alpha (direction d1)")
        axes.set_ylabel("beta (direction d2)")
    if landscape.title:
        axes.set_title(landscape.title, fontsize=10)
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=dpi)
    plt.close(figure)
