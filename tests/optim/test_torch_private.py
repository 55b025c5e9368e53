"""Each private torch hook of the fused backend exists and behaves as the backend uses it.

One test per function of :mod:`gradkit.optim.fused._torch_private`. A torch release that
renames or changes one of them fails here (these tests never skip), instead of the fused step
quietly falling back to its slower guarded call or to inductor's default settings.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from gradkit.optim.fused import _torch_private as private
from gradkit.optim.fused._step import INDUCTOR_OPTIONS


def test_tensor_checks_notice_a_change_of_size_stride_dtype_or_requires_grad() -> None:
    tensor = torch.randn(4, 3)
    checks = private.tensor_checks([tensor, torch.zeros(2)])
    assert checks.check(tensor, torch.zeros(2))
    assert checks.check(torch.randn(4, 3), torch.ones(2))  # other values, same metadata
    assert not checks.check(torch.randn(5, 3), torch.zeros(2))
    column_major = torch.randn(3, 4).t()
    assert column_major.shape == tensor.shape and column_major.stride() != tensor.stride()
    assert not checks.check(column_major, torch.zeros(2))
    assert not checks.check(tensor.double(), torch.zeros(2))
    assert not checks.check(tensor, torch.zeros(2, requires_grad=True))


def test_global_state_snapshot_notices_grad_mode_and_default_dtype() -> None:
    snapshot = private.global_state_snapshot()
    assert snapshot.check()
    with torch.no_grad():
        assert not snapshot.check()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if default == torch.float32 else torch.float32)
    try:
        assert not snapshot.check()
    finally:
        torch.set_default_dtype(default)
    assert snapshot.check()


def test_compile_with_inductor_has_its_entry_points() -> None:
    """compile_fx takes config patches, and V.set_choices_handler installs the step's
    heuristics while it runs (the fused tests compile through it end to end)."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.virtualized import V

    assert "config_patches" in inspect.signature(compile_fx).parameters
    choices = private.step_choices()
    with V.set_choices_handler(choices):
        assert V.choices is choices


def test_every_inductor_option_the_step_sets_exists() -> None:
    for name in INDUCTOR_OPTIONS:
        assert private.inductor_option_exists(name), name
    assert not private.inductor_option_exists("no_such_option")
    assert not private.inductor_option_exists("cpp.no_such_option")
    assert not private.inductor_option_exists("no_such_section.min_chunk_size")


def test_a_missing_inductor_option_is_left_out_with_one_warning() -> None:
    private._warn_missing_option.cache_clear()
    options = {"size_asserts": False, "cpp.min_chunk_size": 8, "cpp.no_such_option": 1}
    with pytest.warns(RuntimeWarning, match=r"no inductor option 'cpp.no_such_option'"):
        known = private.known_inductor_options(options)
    assert known == {"size_asserts": False, "cpp.min_chunk_size": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert private.known_inductor_options(options) == known  # warned once per process
    private._warn_missing_option.cache_clear()


def test_step_choices_override_inductors_horizontal_fusion_hook() -> None:
    from torch._inductor.choices import InductorChoices

    hook = inspect.getattr_static(InductorChoices, "can_fuse_horizontal")
    assert isinstance(hook, staticmethod)
    assert list(inspect.signature(InductorChoices.can_fuse_horizontal).parameters) == [
        "scheduler",
        "node1",
        "node2",
        "shared_data_score",
    ]
    kind = private.step_choices_class()
    assert issubclass(kind, InductorChoices)
    assert isinstance(inspect.getattr_static(kind, "can_fuse_horizontal"), staticmethod)
    # Loops sharing at least the step's threshold of bytes fuse whatever their distance.
    assert kind.can_fuse_horizontal(
        None, None, None, INDUCTOR_OPTIONS["score_fusion_memory_threshold"]
    )
    assert kind().uuid() == "gradkit.optim.fused.StepChoices/1"
