"""CrossProcessBatchNorm over 2 gloo processes equals batch norm of the concatenated batch
(outputs, input and parameter gradients, running statistics), in float32 for bfloat16 inputs;
in evaluation and alone it is nn.BatchNorm of the local batch, and never communicates."""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gradkit.nn import CrossProcessBatchNorm, convert_to_cross_process_batchnorm

WORKER = Path(__file__).with_name("cross_process_worker.py")
TIMEOUT_S = 120


def _worker_module():
    spec = importlib.util.spec_from_file_location("cross_process_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(tmp_path: Path, scenario: str, world_size: int = 2) -> list[tuple[int, str]]:
    """Run every rank of ``scenario``; their exit statuses and logs (fails on a hang)."""
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.update(OMP_NUM_THREADS="1")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(rank),
                str(world_size),
                str(port),
                str(tmp_path / f"rank{rank}.pt"),
                scenario,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    try:
        logs = [process.communicate(timeout=TIMEOUT_S)[0] for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
            process.wait()
        pytest.fail(f"cross-process batch norm did not finish in {TIMEOUT_S} s (hang?)")
    return [(process.returncode, log) for process, log in zip(processes, logs, strict=True)]


def _run_ranks(tmp_path: Path, world_size: int = 2) -> list[dict[str, torch.Tensor]]:
    for returncode, log in _launch(tmp_path, "train", world_size):
        assert returncode == 0, log
    return [
        torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)
    ]


def _reference(worker) -> dict[str, torch.Tensor]:
    """Single-process nn.BatchNorm2d on the concatenated batch, the same steps."""
    layer = nn.BatchNorm2d(3, momentum=0.3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    saved: dict[str, torch.Tensor] = {}
    for step in range(2):
        x, g = worker.batch(step)
        x.requires_grad_(True)
        layer.zero_grad()
        out = layer(x)
        (out * g).sum().backward()
        saved[f"out{step}"] = out.detach()
        saved[f"input_grad{step}"] = x.grad
        saved[f"weight_grad{step}"] = layer.weight.grad.clone()
        saved[f"bias_grad{step}"] = layer.bias.grad.clone()
    saved["running_mean"] = layer.running_mean.clone()
    saved["running_var"] = layer.running_var.clone()
    saved["num_batches_tracked"] = layer.num_batches_tracked.clone()
    layer.eval()
    saved["eval"] = layer(worker.batch(2)[0]).detach()
    return saved


def test_two_gloo_processes_equal_batch_norm_of_the_whole_batch(tmp_path: Path) -> None:
    worker = _worker_module()
    ranks = _run_ranks(tmp_path)
    reference = _reference(worker)
    close = {"rtol": 1e-10, "atol": 1e-12}
    bounds = [0, worker.SPLITS[0], sum(worker.SPLITS)]
    for step in range(2):
        for name in (f"out{step}", f"input_grad{step}"):
            joined = torch.cat([rank[name] for rank in ranks])
            torch.testing.assert_close(joined, reference[name], **close)
        for name in (f"weight_grad{step}", f"bias_grad{step}"):
            # each process holds the gradient of its own loss; DDP sums (averages) them
            summed = sum(rank[name] for rank in ranks)
            torch.testing.assert_close(summed, reference[name], **close)
            assert not torch.allclose(ranks[0][name], reference[name])  # truly partial
    for rank, (low, high) in zip(ranks, itertools.pairwise(bounds), strict=True):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(rank[name], reference[name], **close)
        torch.testing.assert_close(rank["eval"], reference["eval"][low:high], **close)


@pytest.fixture(scope="module")
def evaluate_scenario(tmp_path_factory) -> tuple[list[tuple[int, str]], list[dict]]:
    """The worker's evaluate scenario, run once: exit statuses and logs, and what each rank
    saved (each phase is saved as it ends, so a later hang keeps the earlier results)."""
    tmp_path = tmp_path_factory.mktemp("evaluate")
    statuses = _launch(tmp_path, "evaluate")
    saved = [
        torch.load(path, weights_only=True) if path.exists() else {}
        for path in (tmp_path / f"rank{rank}.pt" for rank in range(len(statuses)))
    ]
    return statuses, saved


def test_bfloat16_statistics_are_reduced_in_float32(evaluate_scenario) -> None:
    worker = _worker_module()
    _, ranks = evaluate_scenario
    layer = nn.BatchNorm1d(3)  # float32, on the exact float32 values of the bfloat16 input
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.5, 2.0]).bfloat16())
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]).bfloat16())
        reference = layer(worker.bfloat16_batch().float()).bfloat16()
    joined = torch.cat([rank["bfloat16_out"] for rank in ranks])
    assert joined.dtype == torch.bfloat16
    # two bfloat16 roundings (2^-8 relative each) apart at most; a bfloat16 mean of 100 is off
    # by up to 0.25, a quarter of the standard deviation
    torch.testing.assert_close(joined, reference, rtol=2**-7, atol=1e-3)


def _evaluation_references(worker, low: int, high: int) -> dict[bool, torch.Tensor]:
    """Local nn.BatchNorm2d in evaluation, with running statistics from the whole batch of
    the training step, and without running statistics."""
    tracked = nn.BatchNorm2d(3)
    tracked(worker.batch(0)[0].float())
    layers = {True: tracked.eval(), False: nn.BatchNorm2d(3, track_running_stats=False).eval()}
    evaluated = worker.batch(1)[0].float()[low:high]
    with torch.no_grad():
        return {key: layer(evaluated) for key, layer in layers.items()}


def test_evaluation_is_local_batch_norm_with_and_without_running_stats(
    evaluate_scenario,
) -> None:
    worker = _worker_module()
    _, ranks = evaluate_scenario
    bounds = [0, worker.SPLITS[0], sum(worker.SPLITS)]
    for rank, (low, high) in zip(ranks, itertools.pairwise(bounds), strict=True):
        references = _evaluation_references(worker, low, high)
        for tracked in (True, False):
            torch.testing.assert_close(rank[f"eval_{tracked}"], references[tracked])
    # the local statistics differ from those of the whole batch, so this tells them apart
    whole = nn.BatchNorm2d(3, track_running_stats=False).eval()(worker.batch(1)[0].float())
    assert not torch.allclose(
        whole[: bounds[1]], _evaluation_references(worker, 0, bounds[1])[False]
    )


def test_one_process_may_evaluate_alone(evaluate_scenario) -> None:
    worker = _worker_module()
    statuses, ranks = evaluate_scenario
    # a collective in evaluation would wait for rank 1 until the group's timeout and fail
    for returncode, log in statuses:
        assert returncode == 0, log
    references = _evaluation_references(worker, 0, worker.SPLITS[0])
    for tracked in (True, False):
        torch.testing.assert_close(ranks[0][f"alone_{tracked}"], references[tracked])


def test_without_a_process_group_it_is_batch_norm() -> None:
    torch.manual_seed(0)
    ours = CrossProcessBatchNorm(4, momentum=None).double()
    theirs = nn.BatchNorm1d(4, momentum=None).double()
    for step in range(3):
        x = torch.randn(6, 4, 5, dtype=torch.float64) + step
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ours(a).square().sum().backward()
        theirs(b).square().sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


def test_convert_replaces_batch_norm_and_shares_its_state() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(2)))
    weight = model[1].weight
    converted = convert_to_cross_process_batchnorm(model)
    assert type(converted[1]) is CrossProcessBatchNorm
    assert type(converted[2][0]) is CrossProcessBatchNorm
    assert converted[1].weight is weight


def test_bad_input_dimension() -> None:
    with pytest.raises(ValueError) as error:
        CrossProcessBatchNorm(3)(torch.randn(3))
    assert str(error.value) == (
        "CrossProcessBatchNorm: expected a 2-D to 5-D input (batch, channels, ...), got 1-D"
    )
