"""EMA, SWA and update_bn against torch.optim.swa_utils (float64, 100 steps), state round trips
and bad input."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.optim.swa_utils import update_bn as torch_update_bn

from gradkit.optim import EMA, SWA, update_bn

TOLERANCE = 1e-10


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.BatchNorm1d(3)
    ).double()


def batches(count: int = 100, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(16, 5, generator=generator, dtype=torch.float64),
            torch.randint(0, 3, (16,), generator=generator),
        )
        for _ in range(count)
    ]


def train_with(
    model: nn.Module, on_step: Callable[[int], None], steps: int = 100
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = batches(steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step, (x, y) in enumerate(data):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        on_step(step)
    return data


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x.double() - y.double()).abs().max()) for x, y in pairs)


@pytest.mark.parametrize("average_buffers", [False, True])
def test_ema_matches_torch_averaged_model(average_buffers: bool) -> None:
    model = bn_model()
    ours = EMA(model, decay=0.9, average_buffers=average_buffers)
    theirs = AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=average_buffers
    )

    def on_step(_: int) -> None:
        ours.update()
        theirs.update_parameters(model)

    train_with(model, on_step)
    assert ours.n_averaged == int(theirs.n_averaged) == 100
    # torch averages the integer num_batches_tracked too (truncating it); gradkit copies it.
    for (name, mine), other in zip(
        ours.module.state_dict().items(), theirs.module.state_dict().values(), strict=True
    ):
        if torch.is_floating_point(mine):
            assert float((mine - other).abs().max()) <= TOLERANCE, name
    # ... and the average moved away from the last iterate (a no-op update would fail here).
    assert max_difference(ours.module, model) > 1e-3


def test_swa_matches_torch_averaged_model_every_other_step_from_step_40() -> None:
    model = bn_model()
    ours = SWA(model)
    theirs = AveragedModel(model)

    def on_step(step: int) -> None:
        if step >= 40 and step % 2 == 0:
            ours.update()
            theirs.update_parameters(model)

    data = train_with(model, on_step)
    assert ours.n_averaged == int(theirs.n_averaged) == 30
    assert max_difference(ours.module, theirs.module) <= TOLERANCE
    assert max_difference(ours.module, model) > 1e-3

    update_bn(data, ours.module)
    torch_update_bn(data, theirs.module)
    assert max_difference(ours.module, theirs.module) <= TOLERANCE
    bn = ours.module[1]
    assert int(bn.num_batches_tracked) == 100 and bn.momentum == 0.1
    assert ours.module.training  # the mode it had before update_bn


def test_update_bn_equals_the_statistics_of_the_whole_data_and_restores_the_mode() -> None:
    model = bn_model().eval()
    data = batches(10)
    update_bn(data, model)
    assert not model.training and model[1].momentum == 0.1
    # Cumulative average over equal batches = mean of the per-batch means.
    first = model[0]
    means = torch.stack([first(x).mean(0) for x, _ in data]).mean(0)
    assert torch.allclose(model[1].running_mean, means, atol=1e-12)
    tensors_only = [x for x, _ in data]
    other = bn_model()
    update_bn(tensors_only, other)
    assert max_difference(model, other) <= TOLERANCE


def test_state_dict_round_trip_resumes_exactly() -> None:
    model = bn_model()
    data = batches(20)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ema = EMA(model, decay=0.8, average_buffers=True)
    for x, y in data[:10]:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        ema.update()
    saved = pickle.loads(pickle.dumps(ema.state_dict()))
    fresh_model = bn_model()
    fresh_model.load_state_dict(model.state_dict())
    resumed = EMA(fresh_model, decay=0.8, average_buffers=True)
    resumed.load_state_dict(saved)
    for x, y in data[10:]:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        ema.update()
        resumed.update(model)
    assert resumed.n_averaged == ema.n_averaged == 20
    assert max_difference(resumed.module, ema.module) == 0.0


def test_averaged_module_takes_no_gradients_and_is_a_copy() -> None:
    model = bn_model()
    ema = EMA(model)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()
    assert ema(torch.zeros(2, 5, dtype=torch.float64)).shape == (2, 3)


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (lambda: EMA(bn_model(), decay=1.5), ValueError, r"EMA: invalid decay=1\.5; expected"),
        (lambda: EMA(bn_model(), decay=-0.1), ValueError, r"invalid decay=-0\.1"),
        (lambda: EMA(bn_model(), decay="0.9"), ValueError, r"invalid decay='0\.9'"),
        (lambda: EMA(bn_model(), decay=True), ValueError, r"invalid decay=True"),
        (lambda: SWA("model"), TypeError, r"SWA: model must be a torch\.nn\.Module"),
        (
            lambda: SWA(bn_model(), average_buffers=1),
            TypeError,
            r"invalid average_buffers=1; expected True or False",
        ),
        (lambda: update_bn([], bn_model()), ValueError, r"update_bn: the loader gave no batches"),
        (lambda: update_bn([["x"]], bn_model()), TypeError, r"each batch must be a tensor"),
        (
            lambda: SWA(bn_model()).load_state_dict(EMA(bn_model()).state_dict()),
            ValueError,
            r"state is of a 'ema' averager, expected 'swa'",
        ),
        (
            lambda: EMA(bn_model(), 0.9).load_state_dict(EMA(bn_model(), 0.5).state_dict()),
            ValueError,
            r"the state has decay=0\.5, this averager decay=0\.9",
        ),
    ],
)
def test_bad_input(factory: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        factory()
