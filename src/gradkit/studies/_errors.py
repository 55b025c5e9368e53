"""The errors of a study spec and the readers of its tables (a leaf: no other study module)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from gradkit._lookup import did_you_mean

__all__ = ["SpecError", "check_table", "is_finite_number", "named_tables"]


class SpecError(ValueError):
    """A study spec that cannot be run: the message names the file, the table and the key."""


def check_table(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    """``table`` as a dict, if it is a table whose keys are all ``allowed``; else SpecError."""
    if not isinstance(table, Mapping):
        raise SpecError(f"{where} must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            raise SpecError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed, n=1)} "
                f"(allowed: {', '.join(allowed)})"
            )
    return dict(table)


def named_tables(
    tables: list[Any], allowed: tuple[str, ...], kind: str, source: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each table of an array of named tables (arms, interpolations): ``(where, name, table)``.

    Checks each is a table of ``allowed`` keys with a unique non-empty ``name``; ``where``
    names it in messages (``"study.toml: arm 'sgd'"``).
    """
    names: set[str] = set()
    for number, table in enumerate(tables, 1):
        table = check_table(table, allowed, f"{source}: {kind} {number}")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{source}: {kind} {number}: needs a name (a non-empty string)")
        if name in names:
            raise SpecError(f"{source}: two {kind}s are called {name!r}")
        names.add(name)
        yield f"{source}: {kind} {name!r}", name, table


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
