"""Layer-wise norms (arXiv 1708.03888): hand-computed norms, the callback interface, the files."""

from __future__ import annotations

import csv
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.diagnostics import LAYERWISE_COLUMNS, LayerwiseMonitor


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _backward(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 8, generator=generator), torch.randint(0, 3, (32,), generator=generator)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def test_record_matches_hand_computed_norms() -> None:
    model = _model()
    _backward(model, 0)
    monitor = LayerwiseMonitor()
    records = monitor.record(model, step=5)
    assert [r.name for r in records] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for record, p in zip(records, model.parameters(), strict=True):
        weight = math.sqrt(float((p.detach().double() ** 2).sum()))
        grad = math.sqrt(float((p.grad.double() ** 2).sum()))
        assert record.step == 5
        assert record.weight_norm == pytest.approx(weight, rel=1e-12)
        assert record.grad_norm == pytest.approx(grad, rel=1e-12)
        assert record.ratio == pytest.approx(weight / grad, rel=1e-12)


def test_callback_records_every_n_steps_and_writes_files(tmp_path: Path) -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = LayerwiseMonitor(every=3, names=["0.weight", "2.weight"])
    ctx = SimpleNamespace(model=model, optimizer=optimizer, step=0, run_dir=tmp_path)
    monitor.on_train_start(ctx)
    for step in range(10):
        ctx.step = step
        _backward(model, step)
        monitor.after_backward(ctx)
        optimizer.step()
        monitor.on_step_end(ctx)
    monitor.on_eval(ctx, {"loss": 1.0})
    monitor.on_train_end(ctx)
    steps, values = monitor.series("weight_norm")["0.weight"]
    assert steps.tolist() == [0, 3, 6, 9]
    assert len(set(values.tolist())) == 4  # the weights moved between records
    assert set(monitor.series("ratio")) == {"0.weight", "2.weight"}
    rows = list(csv.reader((tmp_path / "layerwise.csv").read_text().splitlines()))
    assert tuple(rows[0]) == LAYERWISE_COLUMNS
    assert len(rows) == 1 + 4 * 2
    assert float(rows[1][2]) == pytest.approx(monitor.records[0].weight_norm)
    header = (tmp_path / "layerwise.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1560, 480)


def test_zero_gradient_and_missing_gradient() -> None:
    model = _model()
    _backward(model, 0)
    model[2].bias.grad.zero_()
    model[0].bias.grad = None
    records = {r.name: r for r in LayerwiseMonitor().record(model, 0)}
    assert "0.bias" not in records
    assert records["2.bias"].ratio == math.inf


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid every=0"):
        LayerwiseMonitor(every=0)
    with pytest.raises(ValueError, match="nothing recorded"):
        LayerwiseMonitor().plot(tmp_path / "x.png")
    with pytest.raises(ValueError, match="unknown column"):
        LayerwiseMonitor().series("step")
