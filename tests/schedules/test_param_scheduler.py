"""ParamScheduler: any group key, exact resume in any rebuild order, pickling, refusals."""

from __future__ import annotations

import io
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import gradkit.optim
from gradkit.schedules import ParamScheduler, cosine, parse, warmup

STEPS = 48


def _params() -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.nn.Parameter(torch.randn(4, 3, generator=generator, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(3, generator=generator, dtype=torch.float64)),
    ]


def _set_gradients(params: list[torch.nn.Parameter], step: int) -> None:
    """A deterministic gradient for each step: that of a quadratic with a moving target."""
    generator = torch.Generator().manual_seed(1000 + step)
    for param in params:
        target = torch.randn(param.shape, generator=generator, dtype=torch.float64)
        param.grad = 2 * (param.detach() - target)


@dataclass(frozen=True)
class Setup:
    name: str
    optimizer: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
    # (schedule text, key, mode) of each scheduler, built in this order.
    schedulers: tuple[tuple[str, str, str], ...]
    keys: tuple[str, ...]


def _groups(params, **per_group):
    return [
        {"params": [params[0]], **{k: v[0] for k, v in per_group.items()}},
        {"params": [params[1]], **{k: v[1] for k, v in per_group.items()}},
    ]


SETUPS = [
    Setup(
        "lr",
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        (("warmup(5) >> cosine(30, final=0.1)", "lr", "relative"),),
        ("lr",),
    ),
    Setup(
        "momentum",
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        (("cosine(40, final=0.5) >> constant(0.5)", "momentum", "relative"),),
        ("lr", "momentum"),
    ),
    Setup(
        "betas0-torch-adam",
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.99)),
        (
            ("one_cycle(40, pct_start=0.25)", "lr", "relative"),
            ("cyclic(5, 7, low=0.85, high=0.95)", "betas[0]", "absolute"),
        ),
        ("lr", "betas"),
    ),
    Setup(
        "betas0-gradkit-adam",
        lambda p: gradkit.optim.Adam(p, lr=0.01, betas=(0.9, 0.99)),
        (
            ("one_cycle(40, pct_start=0.25)", "lr", "relative"),
            ("cyclic(5, 7, low=0.85, high=0.95)", "betas[0]", "absolute"),
        ),
        ("lr", "betas"),
    ),
    Setup(
        "weight_decay",
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05),
        (("linear(30, start=1.0, end=0.2)", "weight_decay", "relative"),),
        ("lr", "weight_decay"),
    ),
    Setup(
        "two-keys-one-optimizer",
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.95, weight_decay=1e-3),
        (
            ("warmup(4) >> sgdr(6, mult=2, final=0.01)", "lr", "relative"),
            ("sgdr(6, mult=2, final=0.9)", "momentum", "relative"),
        ),
        ("lr", "momentum"),
    ),
    Setup(
        "per-group-base-lrs",
        lambda p: torch.optim.SGD(_groups(p, lr=(0.1, 0.003), momentum=(0.9, 0.5))),
        (
            ("multistep([7, 19, 30], gamma=0.3)", "lr", "relative"),
            ("0.5 * cosine(25) >> constant(0.0)", "momentum", "relative"),
        ),
        ("lr", "momentum"),
    ),
    Setup(
        "tensor-lr",
        lambda p: torch.optim.SGD(p, lr=torch.tensor(0.1, dtype=torch.float64), momentum=0.9),
        (("warmup(6) >> cosine(30, final=0.05)", "lr", "relative"),),
        ("lr",),
    ),
]


def _snapshot(optimizer: torch.optim.Optimizer, keys: tuple[str, ...]) -> tuple:
    values = []
    for group in optimizer.param_groups:
        for key in keys:
            value = group[key]
            if isinstance(value, torch.Tensor):
                assert value.dtype == torch.float64
                value = ("tensor", value.item())
            values.append(value)
    return tuple(values)


def _build_schedulers(setup: Setup, optimizer: torch.optim.Optimizer) -> list[ParamScheduler]:
    return [ParamScheduler(optimizer, text, key, mode=mode) for text, key, mode in setup.schedulers]


def _run(optimizer, schedulers, params, keys, first: int, last: int) -> list[tuple]:
    """Steps first .. last-1; the group values after each scheduler step."""
    record = []
    for step in range(first, last):
        _set_gradients(params, step)
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        record.append(_snapshot(optimizer, keys))
    return record


def _round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


ORDERS = ["scheduler-then-optimizer-state", "scheduler-state-first", "optimizer-state-first"]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", SETUPS, ids=lambda setup: setup.name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resume_gives_the_uninterrupted_sequence(setup: Setup, order: str, seed: int) -> None:
    resume_at = random.Random(seed).randrange(1, STEPS - 1)

    params = _params()
    optimizer = setup.optimizer(params)
    schedulers = _build_schedulers(setup, optimizer)
    initial = _snapshot(optimizer, setup.keys)
    before = _run(optimizer, schedulers, params, setup.keys, 0, resume_at)
    checkpoint = _round_trip(
        {
            "params": [p.detach().clone() for p in params],
            "optimizer": optimizer.state_dict(),
            "schedulers": [s.state_dict() for s in schedulers],
        }
    )
    after = _run(optimizer, schedulers, params, setup.keys, resume_at, STEPS)
    final_params = [p.detach().clone() for p in params]

    # A fresh process: same construction code, then the checkpoint.
    fresh = _params()
    with torch.no_grad():
        for param, saved in zip(fresh, checkpoint["params"], strict=True):
            param.copy_(saved)
    optimizer2 = setup.optimizer(fresh)
    if order == "optimizer-state-first":
        optimizer2.load_state_dict(checkpoint["optimizer"])
        schedulers2 = _build_schedulers(setup, optimizer2)
        for scheduler, state in zip(schedulers2, checkpoint["schedulers"], strict=True):
            scheduler.load_state_dict(state)
    else:
        schedulers2 = _build_schedulers(setup, optimizer2)
        assert _snapshot(optimizer2, setup.keys) == initial
        if order == "scheduler-then-optimizer-state":
            optimizer2.load_state_dict(checkpoint["optimizer"])
        for scheduler, state in zip(schedulers2, checkpoint["schedulers"], strict=True):
            scheduler.load_state_dict(state)
        if order == "scheduler-state-first":
            optimizer2.load_state_dict(checkpoint["optimizer"])
    assert _snapshot(optimizer2, setup.keys) == before[-1]
    resumed = _run(optimizer2, schedulers2, fresh, setup.keys, resume_at, STEPS)

    assert resumed == after
    for param, want in zip(fresh, final_params, strict=True):
        assert torch.equal(param.detach(), want)


@pytest.mark.parametrize("setup", SETUPS, ids=lambda setup: setup.name)
def test_values_follow_the_schedules(setup: Setup) -> None:
    params = _params()
    optimizer = setup.optimizer(params)
    bases = [  # float() copies a tensor lr, which the scheduler then changes in place
        [float(_read(group, key)) for group in optimizer.param_groups]
        for _, key, _ in setup.schedulers
    ]
    schedulers = _build_schedulers(setup, optimizer)
    for step in range(STEPS):
        if step:
            _set_gradients(params, step)
            optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
        for (text, key, mode), base, scheduler in zip(
            setup.schedulers, bases, schedulers, strict=True
        ):
            factor = parse(text)(step)
            expected = [factor if mode == "absolute" else b * factor for b in base]
            got = [_read(group, key) for group in optimizer.param_groups]
            assert [float(v) for v in got] == expected, (key, step)
            assert scheduler.values_at(step) == expected
            assert scheduler.get_last_value() == got
            assert scheduler.last_epoch == step


def _read(group: dict, key: str):
    if key.endswith("]"):
        name, index = key[:-1].split("[")
        return group[name][int(index)]
    return group[key]


def test_bases_are_stored_in_the_groups_and_the_state() -> None:
    params = _params()
    optimizer = torch.optim.SGD(_groups(params, lr=(0.1, 0.02), momentum=(0.9, 0.8)))
    lr = ParamScheduler(optimizer, "cosine(10)")
    momentum = ParamScheduler(optimizer, cosine(10, final=0.5), "momentum")
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.1, 0.02]
    assert [g["initial_momentum"] for g in optimizer.param_groups] == [0.9, 0.8]
    assert lr.state_dict() == {
        "schedule": "cosine(10)",
        "key": "lr",
        "mode": "relative",
        "base_values": [0.1, 0.02],
        "last_epoch": 0,
        "_step_count": 1,
    }
    assert momentum.state_dict()["base_values"] == [0.9, 0.8]
    assert momentum.state_dict()["schedule"] == "cosine(10, final=0.5)"


def test_betas_stay_tuples() -> None:
    for make in (torch.optim.Adam, gradkit.optim.Adam):
        optimizer = make(_params(), lr=0.01, betas=(0.9, 0.99))
        scheduler = ParamScheduler(optimizer, "linear(4, start=1.0, end=0.5)", "betas[0]")
        optimizer.step()
        scheduler.step()
        betas = optimizer.param_groups[0]["betas"]
        assert isinstance(betas, tuple)
        assert betas == (0.9 * 0.875, 0.99)
        assert optimizer.param_groups[0]["initial_betas[0]"] == 0.9


def test_tensor_lr_is_updated_in_place() -> None:
    lr = torch.tensor(0.1, dtype=torch.float64)
    optimizer = torch.optim.SGD(_params(), lr=lr)
    scheduler = ParamScheduler(optimizer, "cosine(10)")
    group_lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is group_lr
    assert group_lr.item() == 0.1 * cosine(10)(1)
    # The base is a copy, not the live tensor.
    assert scheduler.base_values[0].item() == 0.1
    assert scheduler.state_dict()["base_values"][0] is not group_lr


def _pickle_round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_pickled_scheduler_continues_identically() -> None:
    params = _params()
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    lr = ParamScheduler(optimizer, "warmup(3) >> sgdr(5, mult=2)")
    momentum = ParamScheduler(optimizer, "cosine(20, final=0.9)", "momentum")
    keys = ("lr", "momentum")
    _run(optimizer, [lr, momentum], params, keys, 0, 11)

    # The scheduler alone (it carries its optimizer) ...
    lr_copy = _pickle_round_trip(lr)
    assert lr_copy.optimizer is not optimizer
    assert lr_copy.state_dict() == lr.state_dict()
    # ... and the whole training state together, which keeps the sharing.
    optimizer2, lr2, momentum2 = _pickle_round_trip((optimizer, lr, momentum))
    assert lr2.optimizer is optimizer2 and momentum2.optimizer is optimizer2
    params2 = [p for group in optimizer2.param_groups for p in group["params"]]

    want = _run(optimizer, [lr, momentum], params, keys, 11, 30)
    got = _run(optimizer2, [lr2, momentum2], params2, keys, 11, 30)
    assert got == want
    for a, b in zip(params, params2, strict=True):
        assert torch.equal(a.detach(), b.detach())

    copy_params = [p for group in lr_copy.optimizer.param_groups for p in group["params"]]
    alone = _run(lr_copy.optimizer, [lr_copy], copy_params, ("lr",), 11, 30)
    assert alone == [(values[0],) for values in want]


# --- refusals ---------------------------------------------------------------------------------


def test_load_state_dict_with_another_schedule_raises() -> None:
    optimizer = torch.optim.SGD(_params(), lr=0.1)
    state = ParamScheduler(optimizer, "warmup(5) >> cosine(10)").state_dict()
    other = torch.optim.SGD(_params(), lr=0.1)
    scheduler = ParamScheduler(other, "warmup(5) >> cosine(11)")
    with pytest.raises(ValueError, match=r"saved with schedule='warmup\(5\) >> cosine\(10\)'"):
        scheduler.load_state_dict(state)
    with pytest.raises(ValueError, match="saved with key='lr'"):
        ParamScheduler(
            torch.optim.SGD(_params(), lr=0.1, momentum=0.9), "warmup(5) >> cosine(10)", "momentum"
        ).load_state_dict(state)
    with pytest.raises(ValueError, match="saved with mode='relative'"):
        ParamScheduler(
            torch.optim.SGD(_params(), lr=0.1), "warmup(5) >> cosine(10)", mode="absolute"
        ).load_state_dict(state)
    two_groups = torch.optim.SGD(_groups(_params(), lr=(0.1, 0.2)))
    with pytest.raises(ValueError, match="the state has 1 param groups, the optimizer 2"):
        ParamScheduler(two_groups, "warmup(5) >> cosine(10)").load_state_dict(state)


def test_a_missing_key_raises_key_error_naming_it() -> None:
    adam = torch.optim.Adam(_params(), lr=0.01)
    with pytest.raises(KeyError, match="param group 0 has no key 'momentum'"):
        ParamScheduler(adam, "cosine(10)", "momentum")
    sgd = torch.optim.SGD(_params(), lr=0.1)
    with pytest.raises(KeyError, match="has no key 'betas'"):
        ParamScheduler(sgd, "cosine(10)", "betas[0]")
    # A second group without the key is named too.
    optimizer = torch.optim.SGD(_groups(_params(), lr=(0.1, 0.2)))
    del optimizer.param_groups[1]["momentum"]
    with pytest.raises(KeyError, match="param group 1 has no key 'momentum'"):
        ParamScheduler(optimizer, "cosine(10)", "momentum")


def test_step_with_an_epoch_raises_type_error() -> None:
    optimizer = torch.optim.SGD(_params(), lr=0.1)
    scheduler = ParamScheduler(optimizer, warmup(3))
    with pytest.raises(TypeError, match="takes no epoch"):
        scheduler.step(3)
    with pytest.raises(TypeError, match="takes no epoch"):
        scheduler.step(0)
    assert scheduler.last_epoch == 0
