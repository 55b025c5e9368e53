"""The text form of schedules, for configs and the command line.

Grammar (whitespace is free)::

    expression := product (">>" product)*          # sequence: each piece restarts its time
    product    := atom ("*" atom)*                  # scaling by a number, or a product
    atom       := NUMBER | call | "(" expression ")"
    call       := NAME "(" [argument ("," argument)*] ")"
    argument   := [NAME "="] value
    value      := NUMBER | WORD | STRING | "[" [NUMBER ("," NUMBER)*] "]"

``NAME`` is a schedule (``cosine``, ``warmup``, ...); a ``WORD`` value is a bare identifier
(``triangular2``, ``true``, ``false``, ``none``); numbers without ``.`` or an exponent are
integers. A bare number is a constant. Example::

    warmup(500) >> cosine(10000, final=0.01)
    0.1 * sgdr(1000, mult=2, cycles=4)
    constant(1.0, steps=30000) >> multistep([10000, 20000], gamma=0.1)

``str(schedule)`` gives this form back, and ``parse(str(s)) == s``.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradkit.schedules import _library
from gradkit.schedules._base import Schedule

SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": _library.constant,
    "linear": _library.linear,
    "warmup": _library.warmup,
    "cosine": _library.cosine,
    "polynomial": _library.polynomial,
    "exponential": _library.exponential,
    "step_decay": _library.step_decay,
    "multistep": _library.multistep,
    "sgdr": _library.sgdr,
    "cyclic": _library.cyclic,
    "one_cycle": _library.one_cycle,
}
"""Every schedule the text form knows, by name."""

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op>>>|[*(),=\[\]])""",
    re.VERBOSE,
)
_WORDS = {"true": True, "false": False, "none": None}


class ScheduleSyntaxError(ValueError):
    """A malformed schedule expression; the message points at the bad token."""

    def __init__(self, message: str, text: str, start: int, end: int) -> None:
        self.text, self.start, self.end = text, start, end
        caret = " " * start + "^" * max(1, end - start)
        super().__init__(f"{message}\n  {text}\n  {caret}")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ScheduleSyntaxError(
                f"unexpected character {text[position]!r}", text, position, position + 1
            )
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def error(self, message: str, token: _Token | None = None) -> ScheduleSyntaxError:
        token = token or self.token
        end = token.end if token.kind != "end" else token.start + 1
        return ScheduleSyntaxError(message, self.text, token.start, end)

    def expect(self, text: str) -> _Token:
        token = self.token
        if token.text != text or token.kind not in ("op",):
            found = "the end" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected {text!r}, found {found}")
        self.index += 1
        return token

    def parse(self) -> Schedule:
        if self.token.kind == "end":
            raise self.error("empty schedule expression")
        result = self.sequence()
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r} after a complete schedule")
        return _as_schedule(result)

    def sequence(self) -> Any:
        result = self.product()
        while self.token.text == ">>":
            operator = self.token
            self.index += 1
            right = self.product()
            try:
                result = _as_schedule(result) >> _as_schedule(right)
            except ValueError as error:
                raise self.error(str(error), operator) from None
        return result

    def product(self) -> Any:
        result = self.atom()
        while self.token.text == "*":
            self.index += 1
            right = self.atom()
            result = result * right
        return result

    def atom(self) -> Any:
        token = self.token
        if token.kind == "number":
            self.index += 1
            return _number(token.text)
        if token.text == "(":
            self.index += 1
            result = self.sequence()
            self.expect(")")
            return result
        if token.kind == "name":
            return self.call()
        found = "the end" if token.kind == "end" else repr(token.text)
        raise self.error(f"expected a schedule or a number, found {found}")

    def call(self) -> Schedule:
        name_token = self.token
        factory = SCHEDULES.get(name_token.text)
        if factory is None:
            close = difflib.get_close_matches(name_token.text, list(SCHEDULES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(
                f"unknown schedule {name_token.text!r}{hint}; known: {', '.join(SCHEDULES)}"
            )
        self.index += 1
        self.expect("(")
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        parameters = inspect.signature(factory).parameters
        while self.token.text != ")":
            if self.token.kind == "name" and self.tokens[self.index + 1].text == "=":
                key_token = self.token
                if key_token.text not in parameters:
                    close = difflib.get_close_matches(key_token.text, list(parameters), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise self.error(
                        f"{name_token.text} has no argument {key_token.text!r}{hint}; "
                        f"expected {', '.join(parameters)}",
                        key_token,
                    )
                if key_token.text in keywords:
                    raise self.error(f"argument {key_token.text!r} given twice", key_token)
                self.index += 2
                keywords[key_token.text] = self.value()
            else:
                if keywords:
                    raise self.error("a positional argument cannot follow a keyword argument")
                positional.append(self.value())
            if self.token.text == ",":
                self.index += 1
            elif self.token.text != ")":
                found = "the end" if self.token.kind == "end" else repr(self.token.text)
                raise self.error(f"expected ',' or ')' in {name_token.text}(...), found {found}")
        close_token = self.expect(")")
        span = _Token("name", self.text[name_token.start : close_token.end], name_token.start)
        try:
            bound = inspect.signature(factory).bind(*positional, **keywords)
        except TypeError as error:
            raise self.error(f"{name_token.text}: {error}", span) from None
        try:
            return factory(*bound.args, **bound.kwargs)
        except (ValueError, TypeError) as error:
            raise self.error(str(error), span) from None

    def value(self) -> Any:
        token = self.token
        if token.kind == "number":
            self.index += 1
            return _number(token.text)
        if token.kind == "name":
            self.index += 1
            return _WORDS.get(token.text.lower(), token.text)
        if token.kind == "string":
            self.index += 1
            return token.text[1:-1]
        if token.text == "[":
            self.index += 1
            items = []
            while self.token.text != "]":
                if self.token.kind != "number":
                    raise self.error("expected a number in the list")
                items.append(_number(self.token.text))
                self.index += 1
                if self.token.text == ",":
                    self.index += 1
                elif self.token.text != "]":
                    raise self.error("expected ',' or ']' in the list")
            self.index += 1
            return items
        found = "the end" if token.kind == "end" else repr(token.text)
        raise self.error(f"expected a value, found {found}")


def _number(text: str) -> int | float:
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


def _as_schedule(value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    return _library.constant(float(value))


def parse(text: str) -> Schedule:
    """Parse the text form of a schedule; a :class:`ScheduleSyntaxError` points at the error.

    Example:
        >>> parse("warmup(500) >> cosine(10000, final=0.01)")(500)
        1.0
    """
    if not isinstance(text, str):
        raise TypeError(f"parse: expected a string, got {text!r}")
    return _Parser(text).parse()
