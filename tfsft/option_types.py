"""One type check for every option, from YAML, the command line or Python alike.

Values are checked against the dataclass field's type hint and converted where the intent is
unambiguous: ``"5e-5"`` (PyYAML reads it as text) becomes ``5e-05``, ``"16"`` becomes ``16``,
``2.0`` becomes ``2`` for an integer, and a single text where a list is expected becomes a
one-element list. Everything else is a :class:`~tfsft.errors.ConfigError` naming the option.

>>> coerce("5e-5", float, "learning_rate")
5e-05
>>> coerce("neg", list[str], "exclude_labels")
['neg']
>>> coerce(1.5, int, "epochs")
Traceback (most recent call last):
...
tfsft.errors.ConfigError: epochs must be a whole number, got 1.5
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import types
import typing
from typing import Any

from tfsft.errors import ConfigError

_INT = re.compile(r"[+-]?\d+")


def _number(value: Any, name: str, kind: type) -> int | float:
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if _INT.fullmatch(text) else float(text)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {value!r}") from None
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real):
        value = float(value)
    else:
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked against (and converted to) the type ``hint`` of option ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return coerce(value, options[0], name)
        return value  # several types allowed: the option's own validation decides
    if value is None:
        raise ConfigError(f"{name} must be set (it cannot be empty)")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint in (int, float):
        return _number(value, name, hint)
    if hint is str:
        if isinstance(value, (dict, list, tuple, set)):
            raise ConfigError(f"{name} must be a text, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        inner = args[0] if args else Any
        return [coerce(item, inner, name) if inner is not Any else item for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return value
    return value


def coerce_fields(instance: Any, prefix: str = "") -> None:
    """Check and convert every field of a dataclass instance in place."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        setattr(instance, field.name, coerce(value, hints[field.name], prefix + field.name))
