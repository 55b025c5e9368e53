"""Optimizers as chains of gradient transformations, drop-in for ``torch.optim``.

Named optimizers (``SGD`` ... ``LAMB``, ``Lion``, ``Adan``) are ``torch.optim.Optimizer``
subclasses; each is a short :func:`chain` of the transformations whose factories are below
(``scale_by_adam()``, ``trace()``, ...), and users can build their own with
:class:`ChainedOptimizer`. :class:`SAM` wraps any optimizer. :func:`param_groups` builds the
groups that exempt biases and normalization parameters, and :data:`OPTIMIZERS` is the registry
(:data:`SCHEDULE_FREE` the schedule-free optimizers').
:class:`Lookahead` wraps any optimizer; :class:`ScheduleFreeSGD` and :class:`ScheduleFreeAdamW`
average instead of scheduling; :class:`EMA`, :class:`SWA` and :func:`update_bn` average weights.

The classes the factories return (``ScaleByAdam``, ``Trace``, ``Chain``, ``Bucket``, ...) are in
:mod:`gradkit.optim.transforms`, for writing or inspecting a transformation; they can still be
imported from here, as before that module existed.
"""

from typing import Any

from gradkit.optim import transforms as _transforms
from gradkit.optim._adam import scale_by_adam, scale_by_adamax, scale_by_nadam, scale_by_radam
from gradkit.optim._adan import scale_by_adan, scale_by_proximal_decay
from gradkit.optim._adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_rms
from gradkit.optim._averaging import EMA, SWA, update_bn
from gradkit.optim._basic import add_decayed_weights, scale_by_learning_rate, trace
from gradkit.optim._clipping import (
    adaptive_clip_grad_,
    clip_by_agc,
    clip_by_global_norm,
    unitwise_norm,
)
from gradkit.optim._core import GradientTransformation, chain, unless, when
from gradkit.optim._hyper import Hyper
from gradkit.optim._layerwise import scale_by_trust_ratio
from gradkit.optim._lookahead import Lookahead
from gradkit.optim._named import (
    LAMB,
    LARS,
    SGD,
    SGDW,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Adan,
    Lion,
    NAdam,
    RAdam,
    RMSprop,
)
from gradkit.optim._optimizer import ChainedOptimizer
from gradkit.optim._param_groups import NORM_MODULES, param_groups
from gradkit.optim._registry import (
    OPTIMIZERS,
    SCHEDULE_FREE,
    OptimizerSpec,
    create_optimizer,
    get_optimizer,
)
from gradkit.optim._sam import SAM
from gradkit.optim._schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from gradkit.optim._sign import scale_by_lion

__all__ = [
    "EMA",
    "LAMB",
    "LARS",
    "NORM_MODULES",
    "OPTIMIZERS",
    "SAM",
    "SCHEDULE_FREE",
    "SGD",
    "SGDW",
    "SWA",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Adan",
    "ChainedOptimizer",
    "GradientTransformation",
    "Hyper",
    "Lion",
    "Lookahead",
    "NAdam",
    "OptimizerSpec",
    "RAdam",
    "RMSprop",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "adaptive_clip_grad_",
    "add_decayed_weights",
    "chain",
    "clip_by_agc",
    "clip_by_global_norm",
    "create_optimizer",
    "get_optimizer",
    "param_groups",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_nadam",
    "scale_by_proximal_decay",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_trust_ratio",
    "trace",
    "unitwise_norm",
    "unless",
    "update_bn",
    "when",
]


def __getattr__(name: str) -> Any:
    """The transformation classes, importable from here as before :mod:`.transforms` existed."""
    if name in _transforms.__all__:
        return getattr(_transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
