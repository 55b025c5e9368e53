"""Argument checks shared by the layers and the models: each message names the argument, its
value and what is allowed."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any


def check_integer(owner: str, name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected an integer >= {minimum}")


def check_probability(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1`` (a drop probability)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected a number in [0, 1)")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``; suggest the closest."""
    allowed = sorted(choices)
    if isinstance(value, str) and value in allowed:
        return
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(map(repr, allowed))
    raise ValueError(f"{owner}: unknown {name}={value!r}; expected one of {listed}{hint}")
