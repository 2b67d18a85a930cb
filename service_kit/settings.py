"""Typed service settings: a frozen dataclass per service, read from the config mapping its app
factory receives. Unknown keys are refused (a typo must not silently fall back to a default),
and each value is checked against the field's type before the service starts."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from service_kit.errors import ConfigError

T = TypeVar("T")


def _check(name: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(name, value, option)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {name!r} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting {name!r} must be an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {name!r} must be a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"setting {name!r} must be a string")
        return value
    if origin in (list, tuple, Sequence):
        (item,) = typing.get_args(kind)[:1]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name!r} must be a list")
        return tuple(_check(name, v, item) for v in value)
    if origin in (dict, Mapping):
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting {name!r} must be a mapping")
        return {_check(name, k, key_kind): _check(name, v, value_kind) for k, v in value.items()}
    if kind is Any:
        return value
    raise ConfigError(f"setting {name!r} has an unsupported type")  # pragma: no cover


def load_settings(cls: type[T], config: Mapping[str, Any] | None) -> T:
    """``cls`` (a dataclass) from ``config``: unknown keys and ill-typed values are refused;
    fields without a default are required."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError("settings classes are dataclasses")
    given = dict(config or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in given:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise ConfigError(f"setting {name!r} is required")
            continue
        values[name] = _check(name, given[name], hints[name])
    return cls(**values)
