"""``make_norm``: torch.nn's norm layers behind one factory, and its table of bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradkit.nn import NORM_KINDS, CrossProcessBatchNorm, make_norm

F64 = torch.float64

LAYERS = {
    ("batch", 1): nn.BatchNorm1d,
    ("batch", 2): nn.BatchNorm2d,
    ("cross_process_batch", 1): CrossProcessBatchNorm,
    ("cross_process_batch", 2): CrossProcessBatchNorm,
    ("group", 1): nn.GroupNorm,
    ("group", 2): nn.GroupNorm,
    ("layer", 1): nn.GroupNorm,
    ("layer", 2): nn.GroupNorm,
    ("instance", 1): nn.InstanceNorm1d,
    ("instance", 2): nn.InstanceNorm2d,
    ("none", 1): nn.Identity,
    ("none", 2): nn.Identity,
}


def test_every_kind_is_covered() -> None:
    assert {kind for kind, _ in LAYERS} == set(NORM_KINDS)


@pytest.mark.parametrize(("kind", "dims"), list(LAYERS), ids=[f"{k}-{d}d" for k, d in LAYERS])
def test_kind_builds_the_torch_layer(kind: str, dims: int) -> None:
    layer = make_norm(kind, 16, dims, groups=4)
    assert type(layer) is LAYERS[(kind, dims)]
    x = torch.randn(4, 16, *([6] * dims))
    assert layer(x).shape == x.shape


def _axes(kind: str) -> list[int]:
    """The axes over which each kind's output has mean 0 and variance 1 (before the affine)."""
    return {"batch": [0, 2, 3], "layer": [1, 2, 3], "instance": [2, 3]}[kind]


@pytest.mark.parametrize("kind", ["batch", "layer", "instance"])
def test_normalizes_over_the_axes_of_its_kind(kind: str) -> None:
    torch.manual_seed(0)
    layer = make_norm(kind, 6, 2).double()
    x = torch.randn(5, 6, 4, 4, dtype=F64) * 3 + torch.arange(6, dtype=F64).view(1, 6, 1, 1)
    axes = _axes(kind)
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, keepdim=True, unbiased=False)
    torch.testing.assert_close(layer(x), (x - mean) / torch.sqrt(var + 1e-5))


def test_group_norm_normalizes_each_group() -> None:
    torch.manual_seed(0)
    layer = make_norm("group", 6, 1, groups=3).double()
    x = torch.randn(4, 6, 10, dtype=F64) * 5 + 2
    y = layer(x).view(4, 3, 2 * 10)
    assert y.mean(dim=2).abs().max() < 1e-10
    assert (y.var(dim=2, unbiased=False) - 1).abs().max() < 1e-3


BAD = [
    (
        ("bach", 8, 2),
        {},
        "make_norm: unknown kind='bach'; expected one of 'batch', 'cross_process_batch', "
        "'group', 'instance', 'layer', 'none' (did you mean 'batch'?)",
    ),
    (
        ("weight", 8, 2),
        {},
        "make_norm: unknown kind='weight'; expected one of 'batch', 'cross_process_batch', "
        "'group', 'instance', 'layer', 'none'",
    ),
    (
        ("group", 12, 1),
        {"groups": 8},
        "make_norm: groups=8 does not divide channels=12; expected a divisor of 12",
    ),
    (("group", 12, 1), {"groups": 0}, "make_norm: invalid groups=0; expected an integer >= 1"),
    (("batch", 0, 2), {}, "make_norm: invalid channels=0; expected an integer >= 1"),
    (("batch", 8.0, 2), {}, "make_norm: invalid channels=8.0; expected an integer >= 1"),
    (
        ("batch", 8, 3),
        {},
        "make_norm: invalid dims=3; expected 1 or 2 (spatial dimensions)",
    ),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input(args, kwargs, message) -> None:
    with pytest.raises(ValueError) as error:
        make_norm(*args, **kwargs)
    assert str(error.value) == message
