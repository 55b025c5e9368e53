"""Argument checks for the model builders (messages name the argument, value and range)."""

from __future__ import annotations

import math
import numbers
from typing import Any


def check_integer(owner: str, name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected an integer >= {minimum}")


def check_fraction(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1`` (a drop rate)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected a number in [0, 1)")
