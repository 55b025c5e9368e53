"""The registry of models: one entry per name, read by the CLI, the studies and the tests."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

from torch import nn

from gradkit._lookup import lookup
from gradkit.models._mnist1d import MLP, ConvNet1d, GRUClassifier, LogisticRegression
from gradkit.models._resnet import NFResNet, ResNet


@dataclass(frozen=True)
class ModelSpec:
    """A named model.

    Attributes:
        name: the registry name, as used in configs and on the command line.
        builder: builds the model from keyword arguments.
        paper: where the architecture comes from (an arXiv id where there is one).
        defaults: the full default configuration, passed to ``builder`` under any overrides.
        input_shape: the shape of one input sample at the defaults (without the batch).
        dataset: the dataset the defaults are sized for.
        summary: one line for listings.
    """

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = (40,)
    dataset: str = "mnist1d"
    summary: str = ""

    def options(self) -> tuple[str, ...]:
        """The keyword arguments ``builder`` accepts."""
        parameters = inspect.signature(self.builder).parameters
        return tuple(sorted(name for name in parameters if name not in self._fixed()))

    def _fixed(self) -> Mapping[str, Any]:
        return self.builder.keywords if isinstance(self.builder, partial) else {}

    def create(self, **overrides: Any) -> nn.Module:
        """Build the model: this entry's defaults, then ``overrides``."""
        allowed = self.options()
        for key in overrides:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"create_model: unknown option {key!r} for model {self.name!r}{hint}; "
                    f"expected one of {', '.join(map(repr, allowed))}"
                )
        return self.builder(**{**self.defaults, **overrides})


def _frozen(**values: Any) -> Mapping[str, Any]:
    return MappingProxyType(values)


_MNIST1D_PAPER = "arXiv 2011.14439"
_SPECS = (
    ModelSpec(
        "logistic",
        LogisticRegression,
        "Cox 1958; " + _MNIST1D_PAPER,
        _frozen(in_features=40, classes=10),
        summary="logistic regression (410 parameters)",
    ),
    ModelSpec(
        "mlp",
        MLP,
        _MNIST1D_PAPER,
        _frozen(in_features=40, classes=10, width=100, depth=2, dropout=0.0),
        summary="the MNIST-1D MLP (15,210 parameters)",
    ),
    ModelSpec(
        "cnn",
        ConvNet1d,
        _MNIST1D_PAPER,
        _frozen(length=40, in_channels=1, classes=10, width=25, depth=3),
        summary="the MNIST-1D CNN (5,210 parameters)",
    ),
    ModelSpec(
        "gru",
        GRUClassifier,
        _MNIST1D_PAPER,
        _frozen(length=40, in_channels=1, classes=10, width=6, depth=1, bidirectional=True),
        summary="the MNIST-1D bidirectional GRU (5,134 parameters)",
    ),
)
_RESNET_DEFAULTS = {"classes": 10, "width": 16, "depth": 2, "stages": 3, "activation": "relu"}
_RESNET_DEFAULTS |= {"dropout": 0.0, "stochastic_depth": 0.0}
for _dims, _channels, _shape, _dataset in (
    (1, 1, (40,), "mnist1d"),
    (2, 3, (3, 32, 32), "cifar10"),
):
    _SPECS += (
        ModelSpec(
            f"resnet{_dims}d",
            partial(ResNet, dims=_dims),
            "arXiv 1603.05027",
            _frozen(in_channels=_channels, **_RESNET_DEFAULTS, norm="batch", groups=8),
            _shape,
            _dataset,
            f"pre-activation ResNet, {_dims}-D, any norm",
        ),
        ModelSpec(
            f"nf_resnet{_dims}d",
            partial(NFResNet, dims=_dims),
            "arXiv 2101.08692, 2102.06171",
            _frozen(in_channels=_channels, **_RESNET_DEFAULTS, alpha=0.2, skip_gain=0.0),
            _shape,
            _dataset,
            f"normalizer-free ResNet, {_dims}-D",
        ),
    )

MODELS: Mapping[str, ModelSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every registered model by name."""


def get_model(name: str) -> ModelSpec:
    """The registry entry called ``name``; a ``KeyError`` suggests the closest names."""
    return lookup(MODELS, name, "model")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` (``overrides`` win over its defaults)."""
    return get_model(name).create(**overrides)


def classifier_head(model: nn.Module) -> nn.Module:
    """The classifier head of a gradkit model (its ``.head``), e.g. to exempt it from AGC.

    Example:
        >>> groups = gradkit.optim.param_groups(model, weight_decay=5e-5,
        ...                                     head=classifier_head(model))
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise TypeError(
            f"classifier_head: {type(model).__name__} has no .head module; "
            "give param_groups the head's parameter names instead"
        )
    return head


def count_parameters(model: nn.Module) -> int:
    """The number of trainable scalars of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
