"""Argument checks for the dataset loaders (messages name the argument, value and range)."""

from __future__ import annotations

import math
import numbers
from typing import Any


def check_integer(owner: str, name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected an integer >= {minimum}")


def check_number(owner: str, name: str, value: Any, *, minimum: float = 0.0) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number ``>= minimum``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= minimum):
        raise ValueError(
            f"{owner}: invalid {name}={value!r}; expected a finite number >= {minimum:g}"
        )


def check_open_fraction(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``0 < value < 1``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected a number in (0, 1)")


def check_bool(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected True or False")


def split_sizes(owner: str, name: str, total: int, fraction: float) -> tuple[int, int]:
    """``(total - k, k)`` with ``k = round(total * fraction)``; both parts must be non-empty."""
    part = round(total * fraction)
    if not 0 < part < total:
        raise ValueError(
            f"{owner}: {name}={fraction!r} of {total} samples leaves "
            f"{total - part} and {part}; both parts must be non-empty"
        )
    return total - part, part
