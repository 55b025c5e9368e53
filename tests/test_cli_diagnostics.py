"""The diagnostic verbs: each writes its plot (and GIF, arrays, CSV); bad arguments exit 2."""

from __future__ import annotations

import argparse
import csv
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradkit.cli import hessian, landscape, lr_find, trajectories
from gradkit.diagnostics import Landscape

VERBS = (trajectories, landscape, hessian, lr_find)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gradkit")
    commands = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.register(commands)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    with Image.open(path) as image:  # the whole file decodes
        image.load()
    return struct.unpack(">II", data[16:24])


def test_trajectories_png_and_gif(tmp_path: Path, capsys) -> None:
    out, gif = tmp_path / "traj.png", tmp_path / "traj.gif"
    argv = ["trajectories", "--function", "saddle", "--optimizers", "sgd,momentum,adam"]
    argv += ["--steps", "40", "--frames", "5"]
    assert _run([*argv, "--out", str(out), "--gif", str(gif)]) == 0
    assert _png_size(out) == (640, 520)
    with Image.open(gif) as image:
        assert (image.format, image.size, image.n_frames) == ("GIF", (460, 374), 5)
    printed = capsys.readouterr().out
    assert "saddle: f = x^2 - y^2" in printed and f"animation {gif}" in printed
    for label in ("sgd", "momentum", "adam"):
        assert f"\n{label:>10}      0.05" in printed


def test_trajectories_rates_by_name(tmp_path: Path, capsys) -> None:
    argv = ["trajectories", "--function", "quadratic", "--optimizers", "sgd,adam"]
    argv += ["--lr", "sgd=0.01,adam=0.2", "--steps", "900", "--out", str(tmp_path / "q.png")]
    assert _run(argv) == 0
    printed = capsys.readouterr().out
    assert "       sgd      0.01" in printed and "      adam       0.2" in printed
    assert "f - f* <= 1e-06 at step" in printed


def test_lr_find(tmp_path: Path, capsys) -> None:
    out, table = tmp_path / "lr.png", tmp_path / "lr.csv"
    argv = ["lr-find", "--model", "cnn", "--optimizer", "adam", "--samples", "1000"]
    assert _run([*argv, "--steps", "60", "--out", str(out), "--csv", str(table)]) == 0
    assert _png_size(out) == (840, 504)
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert float(rows[0]["lr"]) == pytest.approx(1e-7)
    printed = capsys.readouterr().out
    suggested = float(printed.split("suggested ")[1].split()[0])
    smoothed = np.array([float(row["smoothed_loss"]) for row in rows])
    lrs = np.array([float(row["lr"]) for row in rows])
    assert suggested == pytest.approx(lrs[np.argmin(smoothed)] / 10, rel=1e-3)


def test_hessian(tmp_path: Path, capsys) -> None:
    out = tmp_path / "hessian.png"
    argv = ["hessian", "--model", "logistic", "--samples", "300", "--train-steps", "20"]
    argv += ["--k", "3", "--trace-samples", "5", "--out", str(out)]
    assert _run(argv) == 0
    assert _png_size(out) == (720, 480)
    printed = capsys.readouterr().out
    values = [float(line.split()[1]) for line in printed.splitlines() if line[:9].strip() in "123"]
    assert len(values) == 3 and values == sorted(values, reverse=True) and values[0] > 0
    assert "sharpness " in printed and "trace " in printed


def test_landscape_slice_and_interpolation(tmp_path: Path) -> None:
    out, arrays = tmp_path / "slice.png", tmp_path / "slice.npz"
    argv = ["landscape", "--model", "logistic", "--samples", "200", "--train-steps", "30"]
    assert _run([*argv, "--resolution", "5", "--out", str(out), "--npz", str(arrays)]) == 0
    assert _png_size(out) == (720, 600)
    stored = Landscape.load(arrays)
    assert stored.kind == "slice_2d" and stored.loss.shape == (5, 5)
    surface = tmp_path / "surface.png"
    assert _run([*argv, "--resolution", "4", "--style", "surface", "--out", str(surface)]) == 0
    assert _png_size(surface) == (780, 600)
    line = tmp_path / "line.png"
    argv_line = [*argv, "--mode", "interpolate", "--batch-sizes", "8,64", "--resolution", "5"]
    assert _run([*argv_line, "--out", str(line), "--npz", str(arrays)]) == 0
    assert _png_size(line) == (720, 480)
    assert Landscape.load(arrays).kind == "interpolation"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trajectories", "--function", "himmelblau", "--out", "x.png"], "unknown test function"),
        (
            ["trajectories", "--function", "saddle", "--optimizers", "sgdd", "--out", "x.png"],
            "did you mean 'sgd'",
        ),
        (["lr-find", "--model", "cnnn", "--out", "x.png"], "unknown model 'cnnn'"),
        (
            ["hessian", "--model", "mlp", "--optimizer", "adamm", "--out", "x.png"],
            "unknown optimizer 'adamm'",
        ),
        (
            ["landscape", "--model", "logistic", "--dataset", "nope", "--out", "x.png"],
            "unknown dataset 'nope'",
        ),
    ],
)
def test_bad_names_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert _run(argv) == 2
    assert message in capsys.readouterr().err
    assert not Path("x.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["trajectories", "--function", "saddle", "--lr", "fast", "--out", "x.png"],
        ["trajectories", "--function", "saddle", "--steps", "0", "--out", "x.png"],
        ["trajectories", "--function", "saddle", "--start", "1", "--out", "x.png"],
        ["lr-find", "--min-lr", "-1", "--out", "x.png"],
        ["landscape", "--mode", "interpolate", "--batch-sizes", "64,8", "--out", "x.png"],
        ["hessian", "--method", "arnoldi", "--out", "x.png"],
    ],
)
def test_bad_values_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(argv)
    assert exit_info.value.code == 2
    assert "invalid" in capsys.readouterr().err
