"""``argparse`` types shared by the verbs: each names the bad value and what is allowed."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_integer", "positive_float", "positive_integer"]


def _integer_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"invalid value {value}; expected an integer >= {minimum}")
    return value


def positive_integer(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    return _integer_at_least(text, 1)


def non_negative_integer(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _integer_at_least(text, 0)


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {value}; expected a number > 0")
    return value
