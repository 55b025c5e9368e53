"""Hyperparameter declarations and their validation.

Every transformation declares the param-group keys it reads as :class:`Hyper` entries. The
optimizer validates each param group against them when the group is added, so a bad value fails
at construction with a message that names the optimizer, the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Check = Callable[[Any], str | None]
"""A check returns ``None`` for a valid value, else a description of what is allowed."""


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        return float(value.detach().cpu().item())
    if isinstance(value, (int, float)):
        return float(value)
    return None


def non_negative(value: Any) -> str | None:
    """A finite number >= 0 (a one-element tensor is allowed, so schedules can pass tensors)."""
    number = _as_float(value)
    if number is None or not math.isfinite(number) or number < 0.0:
        return "a finite number >= 0"
    return None


def positive(value: Any) -> str | None:
    """A finite number > 0."""
    number = _as_float(value)
    if number is None or not math.isfinite(number) or number <= 0.0:
        return "a finite number > 0"
    return None


def unit_interval(value: Any) -> str | None:
    """A number in [0, 1): a decay rate such as momentum or a beta."""
    number = _as_float(value)
    if number is None or not 0.0 <= number < 1.0:
        return "a number in [0, 1)"
    return None


def closed_unit_interval(value: Any) -> str | None:
    """A number in [0, 1]: dampening."""
    number = _as_float(value)
    if number is None or not 0.0 <= number <= 1.0:
        return "a number in [0, 1]"
    return None


def betas(value: Any) -> str | None:
    """A pair (beta1, beta2), each in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return "a pair (beta1, beta2) of numbers in [0, 1)"
    if any(unit_interval(beta) is not None for beta in value):
        return "a pair (beta1, beta2) of numbers in [0, 1)"
    return None


def beta_triple(value: Any) -> str | None:
    """A triple (beta1, beta2, beta3), each in [0, 1): Adan's three decay rates."""
    message = "a triple (beta1, beta2, beta3) of numbers in [0, 1)"
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return message
    if any(unit_interval(beta) is not None for beta in value):
        return message
    return None


def boolean(value: Any) -> str | None:
    """True or False."""
    return None if isinstance(value, bool) else "True or False"


def optional_bounds(value: Any) -> str | None:
    """None, or a pair (low, high) with 0 <= low <= high (high may be infinite)."""
    if value is None:
        return None
    message = "None or a pair (low, high) with 0 <= low <= high"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return message
    low, high = (_as_float(v) for v in value)
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return message
    if not 0.0 <= low <= high or math.isinf(low):
        return message
    return None


def optional_non_negative(value: Any) -> str | None:
    """None (off), or a finite number >= 0."""
    return None if value is None else non_negative(value)


@dataclass(frozen=True)
class Hyper:
    """One param-group key that a transformation reads at every step.

    Attributes:
        key: the name in the param group (``"lr"``, ``"betas"``, ...).
        default: the value used when neither the optimizer nor the group sets it.
        check: the validation applied when a group is added.
    """

    key: str
    default: Any
    check: Check

    def with_default(self, default: Any) -> Hyper:
        return Hyper(self.key, default, self.check)


def validate_group(
    owner: str, group: dict[str, Any], hypers: dict[str, Hyper], index: int | None
) -> None:
    """Raise ``ValueError`` for the first key of ``group`` that fails its check.

    ``index`` names the param group in the message; ``None`` for plain arguments.
    """
    for key, hyper in hypers.items():
        value = group.get(key, hyper.default)
        allowed = hyper.check(value)
        if allowed is not None:
            where = "" if index is None else f" in param group {index}"
            raise ValueError(f"{owner}: invalid {key}={value!r}{where}; expected {allowed}")
