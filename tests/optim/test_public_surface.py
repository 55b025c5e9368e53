"""What ``gradkit.optim`` and ``gradkit.optim.transforms`` export.

``gradkit.optim.__all__`` is what training code uses: the named optimizers, the wrappers and
averagers, the factories a chain is built from, the registry and the two types a user composes
with. The classes the factories return live in ``gradkit.optim.transforms`` and stay importable
from ``gradkit.optim`` (not listed) for code written before that module existed.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import gradkit.optim as optim
from gradkit.optim import transforms

NAMED = {
    "SGD", "SGDW", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam",
    "RAdam", "LARS", "LAMB", "Lion", "Adan",
}  # fmt: skip
WRAPPERS = {"SAM", "Lookahead", "ScheduleFreeSGD", "ScheduleFreeAdamW", "EMA", "SWA", "update_bn"}
FACTORIES = {
    "chain", "when", "unless", "scale_by_adam", "scale_by_adamax", "scale_by_nadam",
    "scale_by_radam", "scale_by_adan", "scale_by_proximal_decay", "scale_by_adagrad",
    "scale_by_rms", "scale_by_adadelta", "scale_by_lion", "trace", "add_decayed_weights",
    "scale_by_learning_rate", "clip_by_global_norm", "clip_by_agc", "scale_by_trust_ratio",
}  # fmt: skip
REGISTRY = {"OPTIMIZERS", "SCHEDULE_FREE", "OptimizerSpec", "create_optimizer", "get_optimizer"}
OTHERS = {
    "ChainedOptimizer", "GradientTransformation", "Hyper", "param_groups", "NORM_MODULES",
    "adaptive_clip_grad_", "unitwise_norm",
}  # fmt: skip


def test_optim_exports_exactly_the_public_surface():
    assert set(optim.__all__) == NAMED | WRAPPERS | FACTORIES | REGISTRY | OTHERS
    assert len(optim.__all__) == len(set(optim.__all__))
    namespace: dict[str, object] = {}
    exec("from gradkit.optim import *", namespace)
    assert {name for name in namespace if not name.startswith("__")} == set(optim.__all__)


def test_every_factory_is_exported_and_returns_a_class_of_transforms():
    """A new ``scale_by_*`` must be added to both lists; its class to transforms."""
    for name, function in inspect.getmembers(optim, inspect.isfunction):
        returned = inspect.signature(function).return_annotation  # a string: lazy annotations
        if returned in transforms.__all__:
            assert name in optim.__all__, f"factory {name} is not in gradkit.optim.__all__"
    built = [getattr(optim, name)() for name in FACTORIES - {"chain", "when", "unless"}]
    built += [optim.chain(optim.trace()), optim.when("flag", optim.trace())]
    for transformation in built:
        assert type(transformation).__name__ in transforms.__all__, transformation


def test_transforms_holds_the_classes_and_optim_still_gives_them():
    for name in transforms.__all__:
        cls = getattr(transforms, name)
        assert inspect.isclass(cls), name
        assert name not in optim.__all__, name
        assert getattr(optim, name) is cls  # backwards compatible: from gradkit.optim import X
        if name != "Bucket":
            assert issubclass(cls, optim.GradientTransformation), name
    assert "ScaleByAdam" not in dir(optim)


def test_a_name_neither_module_has_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'ScaleByNothing'"):
        optim.ScaleByNothing  # noqa: B018


def test_the_named_optimizers_are_torch_optimizers():
    for name in NAMED:
        assert issubclass(getattr(optim, name), torch.optim.Optimizer), name
