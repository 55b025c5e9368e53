"""Optimizer trajectories on 2-D test functions: the lecture's facts as assertions; the files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradkit.diagnostics import (
    FUNCTIONS_2D,
    animate_trajectories,
    get_function_2d,
    plot_trajectories,
    run_trajectories,
)
from gradkit.optim import SGD


@pytest.mark.parametrize("name", list(FUNCTIONS_2D))
def test_the_listed_minima_are_stationary(name: str) -> None:
    spec = get_function_2d(name)
    for index, (x, y) in enumerate(spec.minima):
        point = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
        value = spec(point)
        (gradient,) = torch.autograd.grad(value, point)
        assert float(gradient.norm()) < 1e-9, (name, index)
        if index == 0 and spec.minimum is not None:
            assert float(value.detach()) == pytest.approx(spec.minimum, abs=1e-12)
    # f on a grid is never below the global minimum
    (x0, x1), (y0, y1) = spec.bounds
    grid = torch.stack(
        torch.meshgrid(torch.linspace(x0, x1, 101), torch.linspace(y0, y1, 101), indexing="ij"), -1
    ).double()
    if spec.minimum is not None:
        assert float(spec(grid).min()) >= spec.minimum - 1e-12


def test_momentum_beats_gradient_descent_on_the_ill_conditioned_quadratic() -> None:
    # f = (x^2 + 100 y^2) / 2 and lr = 0.01 = 1/L: GD contracts x by 1 - 1/kappa = 0.99 a step,
    # heavy ball (beta = 0.9) by sqrt(0.9) ~ 0.95 in every direction.
    paths = run_trajectories("quadratic", ["sgd", "momentum", "nag"], steps=900, lr=0.01)
    reached = {path.label: path.first_below(1e-6) for path in paths.trajectories}
    assert None not in reached.values()
    assert reached["momentum"] < reached["sgd"] / 3
    assert reached["nag"] < reached["sgd"] / 3
    assert np.all(np.diff(paths["sgd"].values) <= 0)  # lr <= 1/L: GD descends monotonically


def test_adaptive_methods_leave_the_saddle_sooner() -> None:
    # f = x^2 - y^2 from (1, 0.001): the escape direction y has a tiny gradient, -2y. SGD
    # multiplies y by 1 + 2 lr per step; adaptive methods normalize the gradient and step ~lr.
    paths = run_trajectories(
        "saddle", ["sgd", "adagrad", "rmsprop", "adam"], start=(1.0, 1e-3), steps=200, lr=0.05
    )

    def escape(label: str) -> int:
        hits = np.flatnonzero(np.abs(paths[label].points[:, 1]) >= 0.5)
        assert len(hits), label
        return int(hits[0])

    sgd = escape("sgd")
    assert sgd > 40
    for label in ("adagrad", "rmsprop", "adam"):
        assert escape(label) < sgd / 2, label


def test_momentum_escapes_the_local_minimum() -> None:
    spec = get_function_2d("two_minima")
    paths = run_trajectories(spec, ["sgd", "momentum"], steps=400)
    (global_x, _), (local_x, _) = spec.minima
    assert paths["sgd"].points[-1, 0] == pytest.approx(local_x, abs=1e-3)
    assert paths["momentum"].points[-1, 0] == pytest.approx(global_x, abs=1e-3)


def test_every_kind_of_optimizer_gives_the_same_path() -> None:
    reference = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.002, momentum=0.9)
    paths = run_trajectories(
        "rosenbrock",
        {
            "name": "momentum",
            "torch class": torch.optim.SGD,
            "instance": reference,
            "factory": lambda params: SGD(params, lr=0.002, momentum=0.9),
        },
        steps=50,
        lr={"name": 0.002, "torch class": 0.002},
    )
    class_path = paths["torch class"]  # plain SGD at lr 0.002: a different path
    assert class_path.lr == 0.002
    # gradkit's momentum SGD steps with torch's fused kernel, the torch instance with its
    # multi-tensor one: the same float64 arithmetic but for a few ulps of rounding order.
    for label in ("instance", "factory"):
        np.testing.assert_allclose(paths[label].points, paths["name"].points, rtol=0, atol=1e-13)
    assert not np.allclose(class_path.points, paths["name"].points)
    assert [p.lr for p in paths.trajectories] == [0.002] * 4


def test_divergence_ends_the_path() -> None:
    path = run_trajectories("quadratic", ["sgd"], steps=500, lr=1.0)["sgd"]
    assert path.diverged
    assert len(path.points) < 501
    assert path.first_outside((0.0, 0.0), 1e3) is not None


def test_png_and_gif(tmp_path: Path) -> None:
    paths = run_trajectories("beale", ["sgd", "momentum", "adam"], steps=30)
    plot_trajectories(paths, tmp_path / "paths.png")
    header = (tmp_path / "paths.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (640, 520)
    animate_trajectories(paths, tmp_path / "paths.gif", frames=6)
    with Image.open(tmp_path / "paths.gif") as gif:
        assert gif.format == "GIF"
        assert gif.size == (460, 374)  # 6.4 x 5.2 inches at 72 dpi
        assert gif.n_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paths.gif", "paths.png"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: run_trajectories("himmelblau", ["sgd"]), KeyError, "unknown test function"),
        (lambda: run_trajectories("saddle", ["sgdd"]), KeyError, "did you mean 'sgd'"),
        (lambda: run_trajectories("saddle", [42]), TypeError, "invalid optimizer 42"),
        (lambda: run_trajectories("saddle", []), ValueError, "at least one optimizer"),
        (lambda: run_trajectories("saddle", ["sgd"], steps=0), ValueError, "invalid steps=0"),
        (lambda: run_trajectories("saddle", ["sgd"], start=(1.0,)), ValueError, "invalid start"),
    ],
)
def test_bad_input(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
