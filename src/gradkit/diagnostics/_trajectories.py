r"""Optimizer trajectories on 2-D test functions, drawn over the contours and animated.

Each optimizer starts from the same point :math:`p_0 \in \mathbb R^2` (a float64 parameter of
its own) and takes ``steps`` steps on :math:`f(p)`; every step calls ``optimizer.step(closure)``
with a closure that zeroes the gradient, evaluates :math:`f` and back-propagates, so optimizers
that need one (SAM, L-BFGS) work too. A trajectory that leaves the finite numbers (divergence)
ends there.

Optimizers are given as registry names of :data:`gradkit.optim.OPTIMIZERS` (``"sgd"``,
``"momentum"``, ``"nag"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ...), as optimizer classes
(``torch.optim.Adam``), as instances (their class and ``defaults`` are reused on the new point),
or as factories ``params -> Optimizer``; a mapping gives them labels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradkit._io import atomic_output
from gradkit.diagnostics._evaluation import check_positive_integer
from gradkit.diagnostics._functions_2d import Function2d, get_function_2d
from gradkit.optim import create_optimizer

OptimizerLike = (
    str | type[torch.optim.Optimizer] | torch.optim.Optimizer | Callable[[list[Tensor]], Any]
)
"""A registry name, an optimizer class, an optimizer instance or a factory ``params -> opt``."""


@dataclass(frozen=True)
class Trajectory:
    """One optimizer's path: ``points[t]`` after ``t`` steps and ``values[t] = f(points[t])``."""

    label: str
    lr: float | None
    points: np.ndarray
    values: np.ndarray

    @property
    def diverged(self) -> bool:
        """Whether the path left the finite numbers before its last step."""
        return not np.all(np.isfinite(self.values))

    def first_below(self, value: float) -> int | None:
        """The first step ``t`` with ``values[t] <= value``, or ``None``."""
        hits = np.flatnonzero(self.values <= value)
        return int(hits[0]) if len(hits) else None

    def first_outside(self, center: Sequence[float], radius: float) -> int | None:
        """The first step whose point is farther than ``radius`` from ``center``, or ``None``."""
        distance = np.linalg.norm(self.points - np.asarray(center, dtype=float), axis=1)
        hits = np.flatnonzero(~(distance <= radius))  # nan counts as outside
        return int(hits[0]) if len(hits) else None


@dataclass(frozen=True)
class Trajectories:
    """The paths of several optimizers on one test function from one start."""

    function: Function2d
    start: tuple[float, float]
    trajectories: tuple[Trajectory, ...]

    def __getitem__(self, label: str) -> Trajectory:
        for trajectory in self.trajectories:
            if trajectory.label == label:
                return trajectory
        raise KeyError(f"no trajectory labelled {label!r}")


def _label(item: OptimizerLike) -> str:
    if isinstance(item, str):
        return item.lower()
    if isinstance(item, torch.optim.Optimizer):
        return type(item).__name__
    return getattr(item, "__name__", type(item).__name__)


def _build(
    item: OptimizerLike,
    point: Tensor,
    lr: float | None,
) -> tuple[torch.optim.Optimizer, float | None]:
    if isinstance(item, str):
        optimizer = create_optimizer(item, [point], lr=lr)
    elif isinstance(item, type) and issubclass(item, torch.optim.Optimizer):
        optimizer = item([point]) if lr is None else item([point], lr=lr)
    elif isinstance(item, torch.optim.Optimizer):
        defaults = dict(item.defaults) | ({} if lr is None else {"lr": lr})
        optimizer = type(item)([point], **defaults)
    elif callable(item):
        optimizer = item([point])
    else:
        raise TypeError(
            f"run_trajectories: invalid optimizer {item!r}; expected a registry name, an "
            "optimizer class or instance, or a factory params -> optimizer"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"run_trajectories: the factory {item!r} returned {optimizer!r}")
    used = optimizer.param_groups[0].get("lr")
    return optimizer, None if used is None else float(used)


def run_trajectories(
    function: str | Function2d,
    optimizers: Sequence[OptimizerLike] | Mapping[str, OptimizerLike],
    *,
    start: Sequence[float] | None = None,
    steps: int = 200,
    lr: float | Mapping[str, float] | None = None,
) -> Trajectories:
    """Run each optimizer ``steps`` steps on a 2-D test function from the same start.

    Args:
        function: a name of :data:`FUNCTIONS_2D` or a :class:`Function2d`.
        optimizers: names, classes, instances or factories (labelled by a mapping's keys).
        start: the start point (default: the function's).
        lr: one rate for all, or rates by label; by default each registry name gets
            ``function.lr_for(name)``, a class ``function.lr``, and instances and factories
            keep their own. An explicit ``lr`` also overrides an instance's.

    Example:
        >>> paths = run_trajectories("saddle", ["sgd", "momentum", "adam"], steps=100)
        >>> paths["adam"].first_outside((0, 0), 1.2)
    """
    spec = get_function_2d(function) if isinstance(function, str) else function
    check_positive_integer("run_trajectories", "steps", steps)
    items = dict(optimizers) if isinstance(optimizers, Mapping) else {}
    if not isinstance(optimizers, Mapping):
        for item in optimizers:
            items[_label(item)] = item
    if not items:
        raise ValueError("run_trajectories: give at least one optimizer")
    origin = tuple(float(v) for v in (spec.start if start is None else start))
    if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
        raise ValueError(f"run_trajectories: invalid start={start!r}; expected two finite numbers")
    paths = []
    for label, item in items.items():
        rate = lr.get(label) if isinstance(lr, Mapping) else lr
        if rate is None and isinstance(item, str):
            rate = spec.lr_for(item)
        elif rate is None and isinstance(item, type):
            rate = spec.lr
        point = torch.tensor(origin, dtype=torch.float64, requires_grad=True)
        optimizer, used = _build(item, point, rate)

        def closure(point: Tensor = point, optimizer: Any = optimizer) -> Tensor:
            optimizer.zero_grad()
            value = spec(point)
            value.backward()
            return value

        points = [point.detach().clone()]
        with torch.no_grad():
            values = [float(spec(point))]
        for _ in range(steps):
            optimizer.step(closure)
            with torch.no_grad():
                value = float(spec(point))
            points.append(point.detach().clone())
            values.append(value)
            if not (math.isfinite(value) and bool(torch.isfinite(point).all())):
                break
        paths.append(
            Trajectory(label, used, torch.stack(points).numpy(), np.asarray(values, dtype=float))
        )
    return Trajectories(spec, origin, tuple(paths))


def _contours(axes: Any, spec: Function2d, resolution: int = 200) -> None:
    (x0, x1), (y0, y1) = spec.bounds
    x = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    y = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(x, y, indexing="xy")
    z = spec.function(grid_x, grid_y).numpy()
    if spec.log_levels:
        z = np.log10(z - (spec.minimum or 0.0) + 1e-3)
    axes.contourf(grid_x.numpy(), grid_y.numpy(), z, levels=40, cmap="viridis", alpha=0.8)
    axes.contour(grid_x.numpy(), grid_y.numpy(), z, levels=20, colors="white", linewidths=0.3)
    for index, (mx, my) in enumerate(spec.minima):
        marker = "*" if index == 0 else "x"
        axes.plot([mx], [my], marker=marker, color="red", markersize=12, linestyle="none")
    axes.set_xlim(x0, x1)
    axes.set_ylim(y0, y1)
    axes.set_xlabel("x")
    axes.set_ylabel("y")


def _figure(result: Trajectories) -> tuple[Any, Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    _contours(axes, result.function)
    lines = []
    for index, path in enumerate(result.trajectories):
        rate = "" if path.lr is None else f" (lr {path.lr:g})"
        (line,) = axes.plot(
            path.points[:, 0],
            path.points[:, 1],
            color=f"C{index}",
            marker="o",
            markersize=2,
            linewidth=1.4,
            label=path.label + rate,
        )
        lines.append(line)
    axes.plot(*result.start, marker="o", color="white", markeredgecolor="black", markersize=7)
    axes.legend(fontsize=8, loc="upper left", framealpha=0.8)
    axes.set_title(f"{result.function.name}: f = {result.function.formula}", fontsize=9)
    return figure, axes, lines


def plot_trajectories(
    result: Trajectories, path: str | os.PathLike[str], *, dpi: int = 100
) -> None:
    """Draw every path over the function's contours (PNG, SVG or PDF by the suffix)."""
    import matplotlib.pyplot as plt

    figure, _, _ = _figure(result)
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=dpi)
    plt.close(figure)


def animate_trajectories(
    result: Trajectories,
    path: str | os.PathLike[str],
    *,
    fps: int = 15,
    frames: int = 60,
    dpi: int = 72,
) -> None:
    """Write an animated GIF (matplotlib's ``PillowWriter``) where the paths grow step by step.

    At most ``frames`` frames, evenly spread over the steps (the last frame shows whole paths).
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import PillowWriter

    check_positive_integer("animate_trajectories", "frames", frames, 2)
    longest = max(len(p.points) for p in result.trajectories)
    shown = np.unique(np.linspace(1, longest, min(frames, longest)).round().astype(int))
    figure, axes, lines = _figure(result)
    counter = axes.text(0.98, 0.02, "", transform=axes.transAxes, ha="right", color="white")

    def draw(end: int) -> None:
        for line, trajectory in zip(lines, result.trajectories, strict=True):
            line.set_data(trajectory.points[:end, 0], trajectory.points[:end, 1])
        counter.set_text(f"step {end - 1}")

    figure.canvas.draw()
    figure.set_layout_engine("none")  # lay out once; every frame has the same layout
    writer = PillowWriter(fps=fps)
    with atomic_output(path) as temporary:
        # PillowWriter picks the format from the file name, so write a .gif beside the
        # temporary file and move it over.
        named = Path(f"{temporary}.gif")
        try:
            with writer.saving(figure, named, dpi):
                for end in shown:
                    draw(int(end))
                    writer.grab_frame()
            os.replace(named, temporary)
        finally:
            named.unlink(missing_ok=True)
    plt.close(figure)
