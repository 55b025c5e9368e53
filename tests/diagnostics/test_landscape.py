"""Loss landscapes: filter normalization (arXiv 1712.09913, Sec. 4), slices, interpolation."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from gradkit.diagnostics import (
    Landscape,
    interpolate,
    plot_landscape,
    random_direction,
    slice_1d,
    slice_2d,
)


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 3, padding=1)
        self.norm = nn.BatchNorm1d(6)
        self.hidden = nn.Linear(6 * 8, 10)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.conv(x))).flatten(1)
        return self.head(self.dropout(torch.relu(self.hidden(h))))


def _setup(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    model = _ConvNet().double()
    generator = torch.Generator().manual_seed(10 + seed)
    x = torch.randn(30, 2, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (30,), generator=generator)
    with torch.no_grad():  # non-trivial running statistics, so eval mode differs from train
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    return model, (x, y)


def _loss_at(model: nn.Module, data, params: dict[str, torch.Tensor]) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        value = float(F.cross_entropy(functional_call(model, params, (data[0],)), data[1]))
    model.train(was)
    return value


def test_filter_normalization() -> None:
    model, _ = _setup()
    direction = random_direction(model, seed=3)
    weights = dict(model.named_parameters())
    assert list(direction) == list(weights)
    for name, d in direction.items():
        w = weights[name].detach()
        if w.dim() <= 1:
            assert torch.equal(d, torch.zeros_like(w)), name  # biases and BN gains/shifts
        else:
            d_norms = d.flatten(1).norm(dim=1)
            w_norms = w.flatten(1).norm(dim=1)
            torch.testing.assert_close(d_norms, w_norms, rtol=1e-12, atol=0)
            assert not torch.allclose(d, w)  # a random direction, not the weight itself
    with_1d = random_direction(model, seed=3, include_1d=True)
    assert torch.equal(with_1d["norm.weight"], weights["norm.weight"].detach())
    assert torch.equal(with_1d["conv.weight"], direction["conv.weight"])


def test_directions_are_seeded_gaussian_and_leave_the_global_rng() -> None:
    model = nn.Linear(200, 100)
    state = torch.get_rng_state()
    raw = random_direction(model, seed=1, normalization="none")["weight"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(raw, random_direction(model, seed=1, normalization="none")["weight"])
    assert not torch.equal(raw, random_direction(model, seed=2, normalization="none")["weight"])
    values = raw.flatten().double()
    assert abs(float(values.mean())) < 0.03
    assert float(values.std()) == pytest.approx(1.0, abs=0.03)
    kurtosis = float(((values - values.mean()) ** 4).mean() / values.var() ** 2)
    assert kurtosis == pytest.approx(3.0, abs=0.2)  # Gaussian (a uniform draw would give 1.8)
    layer = random_direction(model, seed=1, normalization="layer")
    assert float(layer["weight"].norm()) == pytest.approx(
        float(model.weight.detach().norm()), rel=1e-6
    )
    assert torch.equal(layer["bias"], torch.zeros(100))


def test_slice_1d_matches_direct_evaluation_and_restores_the_model() -> None:
    model, data = _setup()
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    direction = random_direction(model, seed=0)
    alphas = [-0.5, 0.0, 0.25, 1.0]
    result = slice_1d(model, data, direction=direction, alphas=alphas, batch_size=7)
    for alpha, loss in zip(alphas, result.loss, strict=True):
        point = {name: before[name] + alpha * direction[name] for name in before}
        assert loss == pytest.approx(_loss_at(model, data, point), rel=1e-10)
    assert result.kind == "slice_1d" and result.loss.shape == (4,)
    assert np.all((result.accuracy >= 0) & (result.accuracy <= 1))
    assert model.training and model.dropout.training
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name])
    # the default direction is random_direction with the same seed
    default = slice_1d(model, data, alphas=alphas, seed=0, batch_size=7)
    np.testing.assert_array_equal(default.loss, result.loss)


def test_slice_2d_orientation() -> None:
    model, data = _setup()
    theta = {name: p.detach().clone() for name, p in model.named_parameters()}
    d1, d2 = random_direction(model, seed=5), random_direction(model, seed=6)
    alphas, betas = [-1.0, 0.0, 0.5], [0.0, 0.3]
    result = slice_2d(model, data, directions=(d1, d2), alphas=alphas, betas=betas)
    assert result.loss.shape == (3, 2)
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            point = {n: theta[n] + a * d1[n] + b * d2[n] for n in theta}
            assert result.loss[i, j] == pytest.approx(_loss_at(model, data, point), rel=1e-10)


def test_interpolation_and_batching() -> None:
    model, data = _setup(0)
    other, _ = _setup(1)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = DataLoader(TensorDataset(*data), batch_size=8)  # 8, 8, 8, 6: weighted by size
    result = interpolate(model, model, other, loader, alphas=[0.0, 0.5, 1.0])
    end = dict(other.named_parameters())
    assert result.loss[0] == pytest.approx(_loss_at(model, data, start), rel=1e-10)
    assert result.loss[2] == pytest.approx(_loss_at(model, data, end), rel=1e-10)
    middle = {n: 0.5 * start[n] + 0.5 * end[n].detach() for n in start}
    assert result.loss[1] == pytest.approx(_loss_at(model, data, middle), rel=1e-10)
    gap = torch.cat([(end[n].detach() - start[n]).flatten() for n in start]).norm()
    assert result.meta["distance"] == pytest.approx(float(gap))
    for n, p in model.named_parameters():
        assert torch.equal(p, start[n])  # the start was the model itself, and is intact
    with pytest.raises(ValueError, match="missing"):
        interpolate(model, model, {"conv.weight": start["conv.weight"]}, data)


def test_interpolation_moves_buffers_on_request() -> None:
    """With ``buffers=True`` both ends are exactly the two models (running statistics
    included) and the middle blends the floating buffers; without, every point keeps the
    evaluated model's own buffers."""
    model, data = _setup(0)
    other, _ = _setup(1)
    with torch.no_grad():
        other.norm.num_batches_tracked.fill_(7)
    first, last = model.state_dict(), other.state_dict()
    first = {n: t.clone() for n, t in first.items()}
    result = interpolate(model, model, other, data, alphas=[0.0, 0.25, 1.0], buffers=True)
    assert result.loss[0] == pytest.approx(_loss_at(model, data, first), rel=1e-10)
    assert result.loss[2] == pytest.approx(_loss_at(model, data, last), rel=1e-10)
    quarter = {n: 0.75 * first[n] + 0.25 * last[n] for n in first if first[n].is_floating_point()}
    assert result.loss[1] == pytest.approx(_loss_at(model, data, quarter), rel=1e-10)
    # The running statistics differ between the ends: leaving them out changes the end point.
    plain = interpolate(model, model, other, data, alphas=[0.0, 1.0])
    assert abs(plain.loss[1] - result.loss[2]) > 1e-6
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, first[name])  # the evaluated model is restored, buffers too
    parameters_only = dict(other.named_parameters())
    with pytest.raises(ValueError, match=r"parameters and buffers \['norm.running_mean'"):
        interpolate(model, model, parameters_only, data, buffers=True)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_files(tmp_path: Path) -> None:
    model, data = _setup()
    surface = slice_2d(model, data, alphas=np.linspace(-1, 1, 5), betas=[-1, 0, 1], title="t")
    surface.save(tmp_path / "slice.npz")
    loaded = Landscape.load(tmp_path / "slice.npz")
    assert (loaded.kind, loaded.title) == ("slice_2d", "t")
    np.testing.assert_array_equal(loaded.loss, surface.loss)
    np.testing.assert_array_equal(loaded.coordinates[1], [-1, 0, 1])
    assert [p.name for p in tmp_path.iterdir()] == ["slice.npz"]  # no temporary left behind
    plot_landscape(surface, tmp_path / "contour.png")
    plot_landscape(surface, tmp_path / "surface.png", style="surface", log_scale=True)
    line = slice_1d(model, data, alphas=[-1, 0, 1])
    plot_landscape(line, tmp_path / "line.png")
    assert _png_size(tmp_path / "contour.png") == (720, 600)
    assert _png_size(tmp_path / "surface.png") == (780, 600)
    assert _png_size(tmp_path / "line.png") == (720, 480)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, d: random_direction(m, normalization="unit"), "unknown normalization"),
        (lambda m, d: slice_1d(m, d, alphas=[0.0]), "invalid alphas"),
        (lambda m, d: slice_2d(m, d, betas=[0.0, float("nan")]), "invalid betas"),
    ],
)
def test_bad_input(call, message: str) -> None:
    model, data = _setup()
    with pytest.raises(ValueError, match=message):
        call(model, data)
