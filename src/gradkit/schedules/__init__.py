"""Learning-rate, momentum and batch-size schedules as pure functions of the step count.

Build them in Python (``warmup(500) >> cosine(10000, final=0.01)``) or parse the same text
(:func:`parse`); drive any param-group key of any optimizer with :class:`ParamScheduler`; grow
the batch with :class:`ScheduledBatchSampler`; scale a rate to a batch size with
:func:`scale_learning_rate`.
"""

from gradkit.schedules._base import Product, Scaled, Schedule, Sequence
from gradkit.schedules._batch import ScheduledBatchSampler, scale_learning_rate
from gradkit.schedules._library import (
    SGDR,
    Constant,
    Cosine,
    Cyclic,
    Exponential,
    Linear,
    MultiStep,
    OneCycle,
    Polynomial,
    StepDecay,
    Warmup,
    constant,
    cosine,
    cyclic,
    exponential,
    linear,
    multistep,
    one_cycle,
    polynomial,
    sgdr,
    step_decay,
    warmup,
)
from gradkit.schedules._parse import SCHEDULES, ScheduleSyntaxError, parse
from gradkit.schedules._range import ValueRange, value_range
from gradkit.schedules._scheduler import ParamScheduler, ScheduledValueError

__all__ = [
    "SCHEDULES",
    "SGDR",
    "Constant",
    "Cosine",
    "Cyclic",
    "Exponential",
    "Linear",
    "MultiStep",
    "OneCycle",
    "ParamScheduler",
    "Polynomial",
    "Product",
    "Scaled",
    "Schedule",
    "ScheduleSyntaxError",
    "ScheduledBatchSampler",
    "ScheduledValueError",
    "Sequence",
    "StepDecay",
    "ValueRange",
    "Warmup",
    "constant",
    "cosine",
    "cyclic",
    "exponential",
    "linear",
    "multistep",
    "one_cycle",
    "parse",
    "polynomial",
    "scale_learning_rate",
    "sgdr",
    "step_decay",
    "value_range",
    "warmup",
]
