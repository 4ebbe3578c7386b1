"""Typed nested configs: dataclasses, dotted-key overrides, YAML round trip.

A recipe is a function returning a config dataclass; the CLI applies ``--set a.b=value`` overrides with
:func:`apply_overrides`; a run writes ``config.yaml`` (:func:`save_config`) and can be rebuilt from it
(:func:`config_from_dict`). Each component receives only its own sub-config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vidfm.errors import ConfigError, did_you_mean

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists, so YAML stays plain)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        last_error: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError) as exc:
                last_error = exc
        raise ValueError(f"cannot convert {value!r} to {annotation}: {last_error}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping for {annotation.__name__}, got {value!r}")
        return config_from_dict(annotation, value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        inner = args[0] if args else Any
        seq = [_coerce(v, inner) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt): _coerce(v, vt) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {args}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"cannot read {value!r} as a bool")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"cannot read {value!r} as an int")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"cannot read {value!r} as an int")
        return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
    if annotation is float:
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            return str(value)
        return value
    return value


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a nested dict; unknown keys are an error (typos must not pass)."""
    types_ = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        hint = did_you_mean(sorted(unknown)[0], names) if len(unknown) == 1 else ""
        raise ConfigError(f"{cls.__name__} has no field(s) {sorted(unknown)}{hint} (fields: {sorted(names)})")
    kwargs = {k: _coerce(v, types_[k]) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(cfg: T, overrides: list[str] | None) -> T:
    """Return a copy of ``cfg`` with ``["a.b=value", ...]`` applied; values are parsed as YAML scalars.

    Exclusive fields (declared with ``field(metadata={"excludes": "other"})``, e.g. ``train.lr`` and
    ``train.blr``): setting one to a value clears the other; setting both in one call is an error.
    Raises :class:`vidfm.errors.ConfigError` naming the key, what it accepts and, for a misspelt key, the
    closest one.
    """
    exclusive: set[str] = set()  # exclusive keys set to a value so far
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key.path=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), raw, [], exclusive)
    return cfg


def _dotted_fields(obj: Any, prefix: str = "") -> list[str]:
    """Every settable dotted key under a config, e.g. ``["train.steps", "train.lr", ...]``."""
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += _dotted_fields(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _set_path(obj: Any, path: list[str], raw: str, done: list[str], exclusive: set[str]) -> Any:
    """Set ``path`` (dotted key split, ``done`` = the part already walked) to the text ``raw``;
    ``exclusive``: the exclusive keys already set to a value in this call (this one is added)."""
    name, here = path[0], ".".join(done + path[:1])
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"cannot set {'.'.join(done + path)}: {'.'.join(done)} is a value, not a section")
    names = [f.name for f in dataclasses.fields(obj)]
    if name not in names:
        keys = _dotted_fields(obj, ".".join(done) + "." if done else "")
        wanted = ".".join(done + path)
        # A key right but for its section ("steps" for "train.steps") is the likeliest meaning.
        same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == path[-1]]
        hint = f"; did you mean {same_leaf[0]}?" if len(same_leaf) == 1 else did_you_mean(wanted, keys)
        section = f"{'.'.join(done)} has" if done else "the config has"
        raise ConfigError(f"unknown key {wanted}{hint} ({section}: {', '.join(names)})")
    current = getattr(obj, name)
    if len(path) > 1:
        return dataclasses.replace(
            obj, **{name: _set_path(current, path[1:], raw, done + path[:1], exclusive)}
        )
    annotation = _field_types(type(obj))[name]
    try:
        parsed = yaml.safe_load(raw) if raw.strip() != "" else ""
        if isinstance(parsed, (dict, list)) or parsed is None:
            value = _coerce(parsed, annotation)
        else:
            # Keep the raw string for str fields (YAML would turn "1e-3" or "on" into other types).
            value = _coerce(raw if _is_str_like(annotation) else parsed, annotation)
    except (TypeError, ValueError, yaml.YAMLError) as e:
        # The conversion's own words only where they add something (how many values a tuple takes).
        detail = f" ({e})" if typing.get_origin(annotation) in (tuple, list, dict) else ""
        raise ConfigError(f"{here}={raw}: expected {_describe(annotation)}{detail}") from None
    other = dataclasses.fields(obj)[names.index(name)].metadata.get("excludes")
    if other is not None and value is not None:  # the exclusive partner gives way
        other_key = ".".join(done + [other])
        if other_key in exclusive:
            raise ConfigError(f"{here} and {other_key} exclude each other: set only one of them")
        exclusive.add(here)
        return dataclasses.replace(obj, **{name: value, other: None})
    return dataclasses.replace(obj, **{name: value})


def _describe(annotation: Any) -> str:
    """What a field accepts, in words: ``"an integer"``, ``"one of 'dense', 'segment'"``, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    words = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    if annotation in words:
        return words[annotation]
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or none" if type(None) in args else "")
    if origin in (tuple, list):
        return "a list like [1, 2]"
    return getattr(annotation, "__name__", str(annotation))


def _is_str_like(annotation: Any) -> bool:
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and str in args


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from vidfm.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(cls: type[T], path: str | Path) -> T:
    """Rebuild a config written by :func:`save_config`."""
    with open(path) as f:
        return config_from_dict(cls, yaml.safe_load(f) or {})
