"""``gradkit spp``: writes the plot (PNG) and the CSV; bad arguments exit with status 2."""

from __future__ import annotations

import argparse
import csv
import struct
from pathlib import Path

import pytest

from gradkit.cli import spp


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gradkit")
    commands = parser.add_subparsers(dest="command", required=True)
    spp.register(commands)
    args = parser.parse_args(["spp", *argv])
    return int(args.handler(args))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_writes_png_and_csv(tmp_path: Path, capsys) -> None:
    out, table = tmp_path / "plots" / "spp.png", tmp_path / "spp.csv"
    argv = ["--model", "resnet1d", "--norm", "batch", "--depth", "3", "--width", "8"]
    status = _run([*argv, "--batch", "32", "--out", str(out), "--csv", str(table)])
    assert status == 0
    assert _png_size(out) == (1440, 432)  # 12 x 3.6 inches at 120 dpi
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert [row["block"] for row in rows] == [str(i) for i in range(9)]
    assert [row["stage"] for row in rows] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3
    assert all(row["expected_variance"] == "" for row in rows)
    residual = [float(row["residual_variance"]) for row in rows]
    assert all(0.4 < value < 1.0 for value in residual)  # ~1 - 1/pi with batch norm
    printed = capsys.readouterr().out
    assert "resnet1d norm=batch depth=3 width=8" in printed
    assert f"plot      {out}" in printed and f"csv       {table}" in printed


def test_nf_resnet_defaults_to_unit_skip_gain(tmp_path: Path) -> None:
    table = tmp_path / "spp.csv"
    argv = ["--model", "nf_resnet1d", "--depth", "2", "--width", "16", "--in-channels", "16"]
    assert _run([*argv, "--out", str(tmp_path / "spp.png"), "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.read_text().splitlines()))
    expected = [float(row["expected_variance"]) for row in rows]
    assert expected == pytest.approx([1.04, 1.08] * 3)
    variance = [float(row["variance"]) for row in rows]
    assert variance[1] > variance[0]  # unit skip gains: the variance grows within a stage


def test_nf_resnet_defaults_reproduce_the_papers_variance_profile(tmp_path: Path, capsys) -> None:
    # arXiv 2101.08692, Fig. 1: the variance grows by alpha^2 per block and resets to
    # 1 + alpha^2 at each stage's first block; the measured curve follows the prediction
    out, table = tmp_path / "spp.png", tmp_path / "spp.csv"
    assert _run(["--model", "nf_resnet1d", "--out", str(out), "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.read_text().splitlines()))
    for stage in range(3):
        first, last = (row for row in rows if row["stage"] == str(stage))  # depth 2
        assert float(last["expected_variance"]) == pytest.approx(1.08)
        assert float(last["variance"]) == pytest.approx(1.08, abs=0.1)  # 0.52 at stage 3 once
        assert float(last["variance"]) > float(first["variance"])  # grows within the stage
    assert "input 256 x (16, 40) ~ N(0, 1)" in capsys.readouterr().out  # as wide as the stem


BAD = [
    (
        ["--model", "resnet3d"],
        "gradkit spp: unknown model 'resnet3d'; did you mean 'resnet2d' or 'resnet1d' or "
        "'nf_resnet2d'? (known: logistic, mlp, cnn, gru, resnet1d, nf_resnet1d, resnet2d, "
        "nf_resnet2d)",
    ),
    (
        ["--model", "resnet1d", "--norm", "bach"],
        "gradkit spp: resnet1d: unknown norm='bach'; expected one of 'batch', "
        "'cross_process_batch', 'group', 'instance', 'layer', 'none' (did you mean 'batch'?)",
    ),
    (
        ["--model", "resnet2d", "--norm", "group", "--width", "12"],
        "gradkit spp: make_norm: groups=8 does not divide channels=12; expected a divisor of 12",
    ),
    (
        ["--model", "mlp"],
        "gradkit spp: signal_propagation: MLP has no residual blocks "
        "(gradkit.nn.ResidualBlock) to measure",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[b[0][1] for b in BAD])
def test_bad_arguments(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    out = tmp_path / "spp.png"
    assert _run([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()


def test_depth_must_be_positive(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run(["--model", "resnet1d", "--depth", "0", "--out", "x.png"])
    assert exit_.value.code == 2
    assert "invalid value 0; expected an integer >= 1" in capsys.readouterr().err
