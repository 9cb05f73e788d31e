"""Hyperparameter declarations: the type and range of every constructor argument, in one place.

An algorithm declares its hyperparameters next to its constructor::

    class ItemKNN(SessionRecommender):
        hyperparameters = {"n_sims": Int(low=1), "alpha": Float(0, 1), ...}

:mod:`benchmark.config` checks every configured value against this declaration before any data
is loaded, so a bad value stops the run at start-up with a message naming the file and key.
A parameter without a declaration (or an algorithm without any) is checked against the type of
its constructor default (:func:`inferred_spec`), so a new algorithm works without one.

Each spec's :meth:`Spec.problem` returns ``None`` for a valid value and otherwise the end of a
sentence ("must be an integer >= 1").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np


class Spec:
    """A set of valid values; subclasses say which."""

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is valid, else "must be <description>"."""
        return None if self.accepts(value) else f"must be {self.describe()}"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def _in_range(
    value: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


@dataclass(frozen=True)
class Int(Spec):
    """An integer (not a bool, not a float such as 1.5 or 2.0) in ``[low, high]``."""

    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        limits = _range_text(self.low, self.high, False, False)
        return "an integer" + (f" {limits}" if limits else "")

    def accepts(self, value: Any) -> bool:
        return _is_int(value) and _in_range(int(value), self.low, self.high, False, False)


@dataclass(frozen=True)
class Float(Spec):
    """A finite number (int or float; never NaN, and never infinity unless ``allow_inf``, which
    admits +inf where a parameter means "off" at infinity) within the given bounds."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False

    def describe(self) -> str:
        limits = _range_text(self.low, self.high, self.low_open, self.high_open)
        what = "a number (inf allowed)" if self.allow_inf else "a finite number"
        return what + (f" {limits}" if limits else "")

    def accepts(self, value: Any) -> bool:
        if not (_is_int(value) or isinstance(value, (float, np.floating))):
            return False
        finite = math.isfinite(value) or (self.allow_inf and value == math.inf)
        return finite and _in_range(
            float(value), self.low, self.high, self.low_open, self.high_open
        )


@dataclass(frozen=True)
class Bool(Spec):
    """``true`` or ``false``."""

    def describe(self) -> str:
        return "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Str(Spec):
    """Any string."""

    def describe(self) -> str:
        return "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)


@dataclass(frozen=True)
class Choice(Spec):
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(_show(v) for v in self.values)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class Pattern(Spec):
    """A string matching a regular expression (whole string), described in words."""

    regex: str
    description: str

    def describe(self) -> str:
        return self.description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class ListOf(Spec):
    """A non-empty list (or tuple) whose every element satisfies ``item``."""

    item: Spec

    def describe(self) -> str:
        return f"a non-empty list of {_plural(self.item.describe())}"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) > 0
            and all(self.item.accepts(v) for v in value)
        )


@dataclass(frozen=True)
class AnyOf(Spec):
    """A value satisfying at least one of ``options``."""

    options: tuple[Spec, ...]

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def accepts(self, value: Any) -> bool:
        return any(o.accepts(value) for o in self.options)


@dataclass(frozen=True)
class Optional(Spec):
    """``None`` (left out of the config: TOML has no null) or a value satisfying ``spec``."""

    spec: Spec

    def describe(self) -> str:
        return self.spec.describe()

    def accepts(self, value: Any) -> bool:
        return value is None or self.spec.accepts(value)


@dataclass(frozen=True)
class Anything(Spec):
    """No constraint (a constructor argument whose default says nothing about its type)."""

    def describe(self) -> str:
        return "anything"

    def accepts(self, value: Any) -> bool:
        return True


def inferred_spec(default: Any) -> Spec:
    """The check for an undeclared parameter: the type of its constructor default."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Float()
    if isinstance(default, str):
        return Str()
    return Anything()


def format_value(value: Any) -> str:
    """A value as it would be written in TOML (strings quoted, ``nan``/``inf`` bare)."""
    return _show(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def _plural(text: str) -> str:
    return re.sub(r"^an? (\w+)", r"\1s", text)
