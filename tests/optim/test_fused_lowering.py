"""The fused backend's lowering of the trust ratio computes what the rule computes.

The fused step traces :mod:`gradkit.optim.fused._trust_ratio` in place of
``ScaleByTrustRatio``'s rule (one expression per parameter, LAMB's update in a kept workspace).
Both are run here eagerly on the same constructed buckets, the lowering on a
:class:`FusedBucket` that holds the hyperparameters as 0-d tensors, as the backend makes them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import gradkit.optim as gk
from gradkit.optim._core import Bucket, is_off
from gradkit.optim.fused._bucket import FusedBucket
from gradkit.optim.fused._step import _run_chain
from gradkit.optim.fused._trust_ratio import LOWERINGS, needs_workspace, trust_ratio
from gradkit.optim.transforms import ScaleByTrustRatio


def _tensors() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights and updates with the guard's cases: a zero weight, a zero update."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,), (5,), (2, 2)]
    params = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    updates = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    params[1].zero_()  # a fresh bias
    updates[2].zero_()  # no gradient
    return params, updates


def _hyper(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_hyper(v) for v in value)
    return torch.tensor(float(value), dtype=torch.float64)


def _fused(bucket: Bucket, numeric: dict[str, Any]) -> FusedBucket:
    fused = FusedBucket.of(bucket)
    fused.hypers = {key: _hyper(value) for key, value in numeric.items() if value is not None}
    fused.off = frozenset(key for key, value in numeric.items() if is_off(value))
    fused.workspaces = [torch.empty_like(p) for p in bucket.params]
    return fused


CASES = [
    ("lamb", {"weight_norm_bounds": None}, {}),
    ("lamb", {"weight_norm_bounds": (0.5, 2.0)}, {}),
    ("lamb", {"weight_norm_bounds": None}, {"layer_adaptation": False}),
    ("lars", {"trust_coefficient": 1e-3, "weight_decay": 1e-2, "eps": 1e-8}, {}),
    ("lars", {"trust_coefficient": 0.02, "weight_decay": 0.0, "eps": 0.0}, {}),
    (
        "lars",
        {"trust_coefficient": 1e-3, "weight_decay": 5e-2, "eps": 0.0},
        {"unit_ratio_on_zero_grad": True},
    ),
    (
        "lars",
        {"trust_coefficient": 1e-3, "weight_decay": 1e-2, "eps": 0.0},
        {"layer_adaptation": False},
    ),
]


@pytest.mark.parametrize(("form", "numeric", "flags"), CASES)
def test_the_lowering_gives_the_rules_updates(
    form: str, numeric: dict[str, Any], flags: dict[str, bool]
) -> None:
    rule = ScaleByTrustRatio(form)  # type: ignore[arg-type]
    group: dict[str, Any] = {"layer_adaptation": True, **numeric, **flags}
    if form == "lars":
        group.setdefault("unit_ratio_on_zero_grad", False)
    params, updates = _tensors()
    eager = Bucket(group, 0, params, [u.clone() for u in updates], [{} for _ in params])
    rule.update([eager])
    lowered = _fused(Bucket(group, 0, params, [u.clone() for u in updates], []), numeric)
    trust_ratio(rule, [lowered])
    for got, want in zip(lowered.updates, eager.updates, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0.0)
    # The updates changed at all where the case scales them (a lowering that did nothing
    # would pass the comparison above only for the cases that do nothing).
    if group["layer_adaptation"] or (form == "lars" and numeric["weight_decay"]):
        assert any(
            not torch.equal(after, before)
            for after, before in zip(eager.updates, updates, strict=True)
        )


class _HalvedTrustRatio(ScaleByTrustRatio):
    """A subclass that computes something else: the backend must run its rule, not LAMB's."""

    def apply(self, bucket: Bucket) -> None:
        super().apply(bucket)
        torch._foreach_mul_(bucket.updates, 0.5)


def test_a_subclass_runs_its_own_rule_in_the_fused_program() -> None:
    """The program's Python (``_run_chain``, run here without compiling it) picks a lowering
    by exact type."""
    assert type(_HalvedTrustRatio()) not in LOWERINGS
    chain = gk.chain(_HalvedTrustRatio("lamb"))
    group = {"layer_adaptation": True, "weight_norm_bounds": None, "maximize": False}
    params, updates = _tensors()
    fused_params = [p.clone() for p in params]
    bucket = _fused(Bucket(group, 0, fused_params, list(updates), []), {"weight_norm_bounds": None})
    _run_chain(chain, [bucket])
    eager = Bucket(group, 0, params, [u.clone() for u in updates], [])
    chain.update([eager])
    for param, before, update in zip(fused_params, params, eager.updates, strict=True):
        torch.testing.assert_close(param, before + update, rtol=1e-14, atol=0.0)


def test_a_workspace_is_made_where_lambs_trust_ratio_is_part_of_the_chain() -> None:
    lamb = gk.scale_by_trust_ratio("lamb")
    assert needs_workspace(gk.chain(gk.scale_by_adam(), lamb, gk.scale_by_learning_rate()))
    assert needs_workspace(gk.chain(gk.when("layer_adaptation", copy.copy(lamb))))
    assert not needs_workspace(gk.chain(gk.scale_by_trust_ratio("lars"), gk.trace()))
    assert not needs_workspace(gk.chain(_HalvedTrustRatio("lamb")))


def test_a_fused_bucket_without_counts_refuses_per_step_values() -> None:
    params, updates = _tensors()
    bucket = FusedBucket({}, 0, params, updates, [])
    with pytest.raises(RuntimeError, match="counts"):
        bucket.per_step(lambda step: step)
