"""The LR range test (arXiv 1506.01186) on the MNIST-1D CNN, its bookkeeping and restoration."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.data import load_dataset
from gradkit.diagnostics import lr_range_test, plot_lr_range_test
from gradkit.models import create_model
from gradkit.optim import create_optimizer


@pytest.fixture(scope="module")
def mnist1d() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist1d").train.tensors  # type: ignore[return-value]


def _train(lr: float, data: tuple[torch.Tensor, torch.Tensor], steps: int) -> tuple[float, float]:
    x, y = data
    torch.manual_seed(0)
    model = create_model("cnn")
    optimizer = create_optimizer("adam", model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        before = float(F.cross_entropy(model(x), y))
    for _ in range(steps):
        index = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    with torch.no_grad():
        return before, float(F.cross_entropy(model(x), y))


def test_the_suggested_rate_trains_the_mnist1d_cnn(mnist1d) -> None:
    torch.manual_seed(0)
    model = create_model("cnn")
    optimizer = create_optimizer("adam", model.parameters())
    result = lr_range_test(model, optimizer, mnist1d, min_lr=1e-6, max_lr=10.0, steps=100)
    assert 1e-6 <= result.suggestion <= 10.0
    assert result.smoothed[-1] > 1.2 * result.smoothed.min()  # the sweep went past good rates
    before, after = _train(result.suggestion, mnist1d, 300)
    assert before == pytest.approx(np.log(10), abs=0.1)
    assert after < 0.5 * before  # measured ~0.66 (2.30 at the start)
    # ... while the ends of the swept range do not train it in as many steps
    assert _train(1e-6, mnist1d, 300)[1] > 0.95 * before
    assert _train(1.0, mnist1d, 300)[1] > 0.9 * before


def test_model_and_optimizer_are_restored_bit_for_bit(mnist1d) -> None:
    torch.manual_seed(0)
    model = create_model("cnn")
    optimizer = create_optimizer("adam", model.parameters(), lr=3e-3)
    x, y = mnist1d
    for _ in range(3):  # an optimizer with state: step counts and moments
        optimizer.zero_grad()
        F.cross_entropy(model(x[:64]), y[:64]).backward()
        optimizer.step()
    model.eval()
    parameters = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    state = {
        id_: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
        for id_, s in optimizer.state_dict()["state"].items()
    }
    groups = [dict(g) for g in optimizer.state_dict()["param_groups"]]
    rng = torch.get_rng_state()
    lr_range_test(model, optimizer, (x, y), steps=20, batch_size=32)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, parameters[key]), key
    for p, grad in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, grad)
    after = optimizer.state_dict()
    assert after["param_groups"] == groups
    assert after["state"].keys() == state.keys()
    for id_, entries in state.items():
        for key, value in entries.items():
            got = after["state"][id_][key]
            assert torch.equal(got, value) if torch.is_tensor(value) else got == value
    assert torch.equal(torch.get_rng_state(), rng)
    # the restored pair trains exactly as an untouched copy would
    optimizer.zero_grad()
    F.cross_entropy(model(x[:64]), y[:64]).backward()
    optimizer.step()


def _tiny() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=generator)
    y = (x[:, 0] > 0).long()
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2)), (x, y)


def test_schedule_smoothing_divergence_and_rules(tmp_path: Path) -> None:
    model, data = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_range_test(
        model, optimizer, data, min_lr=1e-4, max_lr=1e4, steps=80, smoothing=0.9, batch_size=32
    )
    n = len(result.lrs)
    expected_lrs = 1e-4 * (1e8) ** (np.arange(n) / 79)
    np.testing.assert_allclose(result.lrs, expected_lrs, rtol=1e-12)
    average, smoothed = 0.0, []
    for i, loss in enumerate(result.losses):
        average = 0.9 * average + 0.1 * loss
        smoothed.append(average / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed, smoothed, rtol=1e-12)
    assert result.diverged and n < 80
    assert result.smoothed[-1] > 4 * result.smoothed[:-1].min()
    assert np.all(result.smoothed[:-1] <= 4 * np.minimum.accumulate(result.smoothed[:-1]))
    best = int(np.argmin(result.smoothed))
    assert result.minimum == pytest.approx(result.lrs[best] / 10)
    assert result.suggestion == result.minimum and "divided by 10" in result.rule
    assert result.steepest <= result.lrs[best]
    steep = lr_range_test(model, optimizer, data, rule="steepest", steps=80, batch_size=32)
    assert steep.suggestion == steep.steepest and "steepest" in steep.rule
    plot_lr_range_test(result, tmp_path / "lr.png")
    header = (tmp_path / "lr.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (840, 504)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_lr": 0.0}, "invalid min_lr=0.0"),
        ({"min_lr": 1.0, "max_lr": 0.5}, "invalid max_lr=0.5"),
        ({"steps": 1}, "invalid steps=1"),
        ({"smoothing": 1.0}, "invalid smoothing=1.0"),
        ({"divergence": 1.0}, "invalid divergence=1.0"),
        ({"rule": "valley"}, "unknown rule='valley'"),
    ],
)
def test_bad_input(options: dict, message: str) -> None:
    model, data = _tiny()
    with pytest.raises(ValueError, match=message):
        lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), data, **options)
