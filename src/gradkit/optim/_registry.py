"""The registry of optimizers: one entry per name, read by the CLI, the studies and the tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from gradkit._lookup import lookup
from gradkit.optim import _named
from gradkit.optim._schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD


@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer configuration.

    Attributes:
        name: the registry name (lower case, as used in configs and on the command line).
        cls: the optimizer class.
        defaults: keyword arguments applied on top of the class defaults (``momentum=0.9``
            for ``"momentum"``).
        paper: where the algorithm comes from (an arXiv id where there is one).
        summary: one line for listings.
        torch_equivalent: the ``torch.optim`` class with the same update rule, if any.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    summary: str = ""
    torch_equivalent: str | None = None

    def create(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], **overrides: Any):
        """Build the optimizer: class defaults, then this entry's, then ``overrides``."""
        return self.cls(params, **{**self.defaults, **overrides})


_SPECS = (
    OptimizerSpec("sgd", _named.SGD, {}, "Robbins & Monro 1951", "plain SGD", "SGD"),
    OptimizerSpec(
        "momentum", _named.SGD, {"momentum": 0.9}, "Polyak 1964", "heavy-ball momentum", "SGD"
    ),
    OptimizerSpec(
        "nag",
        _named.SGD,
        {"momentum": 0.9, "nesterov": True},
        "Sutskever et al., ICML 2013",
        "Nesterov accelerated gradient",
        "SGD",
    ),
    OptimizerSpec(
        "sgdw",
        _named.SGDW,
        {"momentum": 0.9},
        "arXiv 1711.05101",
        "momentum SGD with decoupled weight decay",
    ),
    OptimizerSpec("adagrad", _named.Adagrad, {}, "Duchi et al., JMLR 2011", "AdaGrad", "Adagrad"),
    OptimizerSpec("rmsprop", _named.RMSprop, {}, "Hinton 2012, lecture 6e", "RMSProp", "RMSprop"),
    OptimizerSpec("adadelta", _named.Adadelta, {}, "arXiv 1212.5701", "Adadelta", "Adadelta"),
    OptimizerSpec("adam", _named.Adam, {}, "arXiv 1412.6980", "Adam", "Adam"),
    OptimizerSpec("amsgrad", _named.Adam, {"amsgrad": True}, "arXiv 1904.09237", "AMSGrad", "Adam"),
    OptimizerSpec("adamax", _named.Adamax, {}, "arXiv 1412.6980", "Adamax", "Adamax"),
    OptimizerSpec("nadam", _named.NAdam, {}, "Dozat 2016", "Adam with Nesterov momentum", "NAdam"),
    OptimizerSpec(
        "adamw", _named.AdamW, {}, "arXiv 1711.05101", "Adam with decoupled weight decay", "AdamW"
    ),
    OptimizerSpec("radam", _named.RAdam, {}, "arXiv 1908.03265", "rectified Adam", "RAdam"),
    OptimizerSpec("lars", _named.LARS, {}, "arXiv 1708.03888", "layer-wise adaptive rate scaling"),
    OptimizerSpec("lamb", _named.LAMB, {}, "arXiv 1904.00962", "layer-wise adaptive moments"),
    OptimizerSpec("lion", _named.Lion, {}, "arXiv 2302.06675", "sign of interpolated momentum"),
    OptimizerSpec("adan", _named.Adan, {}, "arXiv 2208.06677", "adaptive Nesterov momentum"),
)

OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every registered chain optimizer by name (each takes ``maximize``, ``fused``, AGC)."""

_SCHEDULE_FREE_SPECS = (
    OptimizerSpec(
        "schedule_free_sgd",
        ScheduleFreeSGD,
        {},
        "arXiv 2405.15682",
        "schedule-free SGD: an average of the iterates instead of an lr schedule",
    ),
    OptimizerSpec(
        "schedule_free_adamw",
        ScheduleFreeAdamW,
        {},
        "arXiv 2405.15682",
        "schedule-free AdamW: an average of the iterates instead of an lr schedule",
    ),
)

SCHEDULE_FREE: Mapping[str, OptimizerSpec] = MappingProxyType(
    {spec.name: spec for spec in _SCHEDULE_FREE_SPECS}
)
"""The schedule-free optimizers by name. They are not chains (no ``fused`` or ``maximize``)
and their parameters hold either the point where gradients are taken (``train()``) or the
average to evaluate (``eval()``), so they are kept apart from :data:`OPTIMIZERS`;
:func:`get_optimizer` and the engine's ``optim.name`` know both."""

_EVERY: Mapping[str, OptimizerSpec] = MappingProxyType({**OPTIMIZERS, **SCHEDULE_FREE})


def get_optimizer(name: str) -> OptimizerSpec:
    """The entry of :data:`OPTIMIZERS` or :data:`SCHEDULE_FREE` called ``name``; a ``KeyError``
    suggests the closest names."""
    return lookup(_EVERY, name, "optimizer")


def create_optimizer(
    name: str, params: Iterable[Tensor] | Iterable[dict[str, Any]], **overrides: Any
) -> torch.optim.Optimizer:
    """Build the registered optimizer ``name`` over ``params`` (``overrides`` win)."""
    return get_optimizer(name).create(params, **overrides)
