"""Name look-ups with suggestions, shared by every registry and parser."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def did_you_mean(name: str, candidates: Iterable[str], *, n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the closest candidates, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=n)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name.lower()]``, or a ``KeyError`` that suggests names and lists the known ones."""
    entry = table.get(name.lower()) if isinstance(name, str) else None
    if entry is None:
        hint = did_you_mean(str(name).lower(), table)
        raise KeyError(f"unknown {what} {name!r}{hint} (known: {', '.join(table)})")
    return entry
