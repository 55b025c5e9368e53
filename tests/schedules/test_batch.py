"""ScheduledBatchSampler (growing batches, exact resume), micro-batches, scale_learning_rate."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gradkit.schedules import (
    ScheduledBatchSampler,
    constant,
    linear,
    multistep,
    scale_learning_rate,
)

SAMPLERS = {
    "multistep-doubling": dict(data_size=53, batch_size=2, schedule=multistep([3, 7], gamma=2.0)),
    "linear-growth-capped": dict(
        data_size=97, batch_size=3, schedule=linear(12, start=1.0, end=6.0), max_batch_size=11
    ),
    "text-schedule": dict(data_size=40, batch_size=4, schedule="multistep([2, 5], gamma=2.0)"),
    "constant": dict(data_size=10, batch_size=3, schedule=None),
}


def _sampler(name: str, **overrides) -> ScheduledBatchSampler:
    kwargs = {**SAMPLERS[name], **overrides}
    return ScheduledBatchSampler(kwargs.pop("data_size"), kwargs.pop("batch_size"), **kwargs)


def _epochs(sampler: ScheduledBatchSampler, count: int) -> list[list[list[int]]]:
    return [list(sampler) for _ in range(count)]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_index_once_per_epoch_and_sizes_follow_the_schedule(name: str) -> None:
    sampler = _sampler(name, seed=3)
    step = 0
    for epoch in _epochs(sampler, 5):
        seen = [index for batch in epoch for index in batch]
        assert sorted(seen) == list(range(sampler.data_size))
        for position, batch in enumerate(epoch):
            want = sampler.batch_size_at(step)
            if position < len(epoch) - 1:
                assert len(batch) == want, (step, position)
            else:  # the last batch of an epoch holds what is left
                assert 1 <= len(batch) <= want
            step += 1
    assert sampler.state_dict() == {"step": step}


def test_batch_sizes_of_the_growing_schedules() -> None:
    doubling = _sampler("multistep-doubling")
    assert [doubling.batch_size_at(k) for k in range(10)] == [2, 2, 2, 4, 4, 4, 4, 8, 8, 8]
    assert doubling.batch_size_at(10**9) == 8
    growing = _sampler("linear-growth-capped")
    sizes = [growing.batch_size_at(k) for k in range(20)]
    assert sizes[0] == 3
    assert all(a <= b for a, b in itertools.pairwise(sizes))
    assert max(sizes) == 11 == sizes[-1]  # capped: round(3 * 6) = 18 > 11
    assert sizes == [min(11, max(1, round(3 * linear(12, 1.0, 6.0)(k)))) for k in range(20)]
    # A schedule falling to zero still gives batches of one.
    tiny = ScheduledBatchSampler(10, 4, "linear(3, start=1.0, end=0.0)")
    assert [tiny.batch_size_at(k) for k in range(5)] == [4, 3, 1, 1, 1]


def test_deterministic_given_the_seed_and_different_across_epochs() -> None:
    first = _epochs(_sampler("multistep-doubling", seed=7), 4)
    again = _epochs(_sampler("multistep-doubling", seed=7), 4)
    other = _epochs(_sampler("multistep-doubling", seed=8), 4)
    assert first == again
    assert first != other
    orders = [[i for batch in epoch for i in batch] for epoch in first]
    assert len({tuple(order) for order in orders}) == len(orders)
    in_order = _epochs(_sampler("multistep-doubling", shuffle=False), 2)
    for epoch in in_order:
        assert [i for batch in epoch for i in batch] == list(range(53))


def test_works_as_a_dataloader_batch_sampler() -> None:
    features = torch.arange(53 * 2, dtype=torch.float64).reshape(53, 2)
    labels = torch.arange(53)
    dataset = TensorDataset(features, labels)
    sampler = _sampler("multistep-doubling", seed=1)
    loader = DataLoader(dataset, batch_sampler=sampler)
    reference = _sampler("multistep-doubling", seed=1)
    for _ in range(3):
        expected = list(reference)
        assert len(loader) == len(expected)
        batches = list(loader)
        assert len(batches) == len(expected)
        for (x, y), indices in zip(batches, expected, strict=True):
            assert y.tolist() == indices
            assert torch.equal(x, features[indices])
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(53))


def _flatten(sampler: ScheduledBatchSampler, count: int) -> list[list[int]]:
    """The next ``count`` batches, calling iter() again at each epoch's end."""
    batches: list[list[int]] = []
    while len(batches) < count:
        epoch = list(sampler)
        assert epoch, "an iter() yielded nothing"
        batches += epoch
    return batches[:count]


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("seed", range(4))
def test_resume_yields_exactly_the_remaining_batches(name: str, seed: int) -> None:
    total = 60
    uninterrupted = _flatten(_sampler(name, seed=5), total)
    step = random.Random(seed).randrange(1, total)
    loaded = _sampler(name, seed=5)
    loaded.load_state_dict({"step": step})
    started = _sampler(name, seed=5, start_step=step)
    assert loaded.state_dict() == started.state_dict() == {"step": step}
    assert _flatten(loaded, total - step) == uninterrupted[step:]
    assert _flatten(started, total - step) == uninterrupted[step:]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_resume_at_epoch_boundaries(name: str) -> None:
    live = _sampler(name, seed=2)
    epochs = _epochs(live, 3)
    boundaries = list(itertools.accumulate(len(e) for e in epochs))
    everything = [batch for epoch in epochs for batch in epoch]
    for step in [0, *boundaries[:-1]]:
        resumed = _sampler(name, seed=2, start_step=step)
        assert _flatten(resumed, len(everything) - step) == everything[step:]


def test_resume_from_the_middle_of_an_epoch_interrupted_by_the_loop() -> None:
    """The loop takes some batches of an epoch, saves, and stops; a new sampler goes on."""
    live = _sampler("linear-growth-capped", seed=4)
    list(live)  # one whole epoch
    iterator = iter(live)
    taken = [next(iterator) for _ in range(3)]
    state = live.state_dict()
    rest_live = list(iter(live))  # a new iter() continues the current epoch
    resumed = _sampler("linear-growth-capped", seed=4)
    resumed.load_state_dict(state)
    assert list(resumed) == rest_live
    order = [i for batch in taken + rest_live for i in batch]
    assert sorted(order) == list(range(97))


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("taken", [0, 1, 2, 5])
def test_len_is_the_number_of_batches_the_next_iter_yields(name: str, taken: int) -> None:
    sampler = _sampler(name, seed=0)
    for _ in range(3):
        iterator = iter(sampler)
        consumed = list(itertools.islice(iterator, taken))
        if len(consumed) < taken:
            continue
        predicted = len(sampler)
        assert predicted == len(list(sampler))
        assert len(sampler) == len(list(sampler))  # and again for the next epoch


def test_taking_exactly_an_epoch_then_iter_again_matches_a_resumed_sampler() -> None:
    live = ScheduledBatchSampler(10, 3, shuffle=False)
    iterator = iter(live)
    first = [next(iterator) for _ in range(4)]  # 3 + 3 + 3 + 1: the whole epoch
    assert sorted(i for batch in first for i in batch) == list(range(10))
    resumed = ScheduledBatchSampler(10, 3, shuffle=False)
    resumed.load_state_dict(live.state_dict())
    assert list(live) == list(resumed) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


# --- gradient accumulation --------------------------------------------------------------------


@pytest.mark.parametrize("micro", [1, 2, 3, 7, 8, 100])
def test_micro_batches_accumulate_the_whole_batch_gradient(micro: int) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    targets = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    model = torch.nn.Linear(5, 2).double()
    batch = next(iter(ScheduledBatchSampler(64, 23, seed=1)))  # 23 shuffled indices

    def loss(indices: list[int]) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(inputs[indices]), targets[indices])

    model.zero_grad()
    loss(batch).backward()
    whole = [p.grad.clone() for p in model.parameters()]

    pieces = ScheduledBatchSampler.micro_batches(batch, micro)
    assert [i for piece in pieces for i in piece] == batch
    assert all(1 <= len(piece) <= micro for piece in pieces)
    assert len(pieces) == math.ceil(len(batch) / micro)
    model.zero_grad()
    for piece in pieces:
        (loss(piece) * len(piece) / len(batch)).backward()
    for got, want in zip((p.grad for p in model.parameters()), whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- learning-rate scaling --------------------------------------------------------------------


def test_scale_learning_rate_rules() -> None:
    assert scale_learning_rate(0.1, 512) == pytest.approx(0.2, rel=1e-15)
    assert scale_learning_rate(0.1, 1024, rule="linear") == pytest.approx(0.4, rel=1e-15)
    assert scale_learning_rate(0.1, 64, reference_batch_size=32) == pytest.approx(0.2, rel=1e-15)
    assert scale_learning_rate(0.1, 1024, rule="sqrt") == pytest.approx(0.2, rel=1e-15)
    assert scale_learning_rate(0.1, 128, rule="sqrt") == pytest.approx(0.1 / math.sqrt(2))
    assert scale_learning_rate(0.1, 4096, rule="none") == 0.1
    assert scale_learning_rate(0.1, 256) == 0.1
    assert scale_learning_rate(0, 512) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rule="cubic"), r"invalid rule='cubic'; expected 'linear', 'sqrt' or 'none'"),
        (dict(rule="Linear"), r"invalid rule='Linear'"),
        (dict(lr=-0.1), r"invalid lr=-0.1; expected a number >= 0"),
        (dict(lr=float("nan")), r"invalid lr=nan"),
        (dict(lr=True), r"invalid lr=True"),
        (dict(batch_size=0), r"invalid batch_size=0; expected an integer >= 1"),
        (dict(batch_size=32.0), r"invalid batch_size=32.0"),
        (dict(reference_batch_size=0), r"invalid reference_batch_size=0"),
    ],
)
def test_scale_learning_rate_refuses(kwargs: dict, message: str) -> None:
    arguments = {"lr": 0.1, "batch_size": 512, **kwargs}
    with pytest.raises(ValueError, match=message):
        scale_learning_rate(**arguments)


def test_an_overflowing_batch_size_is_a_clear_error() -> None:
    sampler = ScheduledBatchSampler(10, 4, 1e308 * constant())
    with pytest.raises(ValueError, match=r"gives batch size 4 \* 1e\+308 at step 0; expected a"):
        next(iter(sampler))
