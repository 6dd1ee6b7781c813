"""Typed configuration: dataclass fields that are also config keys, and their primitive dicts.

Every setting a user can change is a field of a frozen dataclass declared with :func:`option`,
which holds its one default, its help line and its config key (the seed's key name where it
differs from the field name, e.g. ``shape_dim`` is ``input_ch_shapeCodes``). Commands build
their parsers from these fields (:mod:`facenerf.cli`), so a default is written exactly once.

Checkpoints and result files store a config as a primitive dict (:func:`to_dict`, nested by
dataclass); :func:`from_dict` reads it back, ignoring keys it does not know. Older files that
stored one flat ``{config key: value}`` dict are read with :func:`from_flat`. The resolved
configuration is written next to every output as ``key = value`` lines (:func:`save_config`)
that a command reads back with ``-c``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

from facenerf.errors import FaceNerfError


@dataclass(frozen=True)
class OptionSpec:
    """How a dataclass field appears as a config key and command-line flag."""

    help: str
    key: str | None = None           # config key / flag name; None = the field's name
    aliases: tuple[str, ...] = ()    # older names accepted for the same setting
    choices: tuple | None = None
    hidden: bool = False             # accepted, but not listed by --help
    parse: Callable[[str], Any] | None = None  # text -> value (default: from the field's type)


def option(default: Any = MISSING, help: str = "", *, key: str | None = None, aliases: tuple[str, ...] = (),
           choices: tuple | None = None, hidden: bool = False, parse: Callable[[str], Any] | None = None):
    """A dataclass field that is also a config key (see the module docstring).

    ``default`` must be immutable (use tuples for lists); leave it out for a required key.
    """
    spec = OptionSpec(help, key, tuple(aliases), tuple(choices) if choices else None, hidden, parse)
    if default is MISSING:
        return dataclasses.field(metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


def option_spec(f: dataclasses.Field) -> OptionSpec | None:
    return f.metadata.get("option")


def option_key(f: dataclasses.Field) -> str:
    spec = option_spec(f)
    return (spec.key if spec is not None and spec.key else None) or f.name


def field_types(cls) -> dict[str, Any]:
    """Resolved annotations of a dataclass (string annotations evaluated)."""
    return typing.get_type_hints(cls)


def nested_type(kind) -> type | None:
    """The dataclass of a field annotated with one, else None."""
    return kind if isinstance(kind, type) and is_dataclass(kind) else None


def option_fields(cls, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Every option field of ``cls`` and of the dataclasses nested in it, as ``(path, field, type)``.

    ``path`` is the attribute path from ``cls`` (``("render", "near")``).
    """
    kinds = field_types(cls)
    found = []
    for f in fields(cls):
        inner = nested_type(kinds[f.name])
        if inner is not None:
            found += option_fields(inner, prefix + (f.name,))
        elif option_spec(f) is not None:
            found.append((prefix + (f.name,), f, kinds[f.name]))
    return found


# ----------------------------------------------------------------------------- text -> values

def str2bool(text) -> bool:
    """``true/false, yes/no, on/off, 1/0`` (any case) -> bool."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _list_items(text) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(v) for v in text]
    return [part for part in str(text).strip().strip("[]()").replace(" ", ",").split(",") if part]


def parse_int_list(text, name: str = "value") -> tuple[int, ...]:
    """``"32,32,64"``, ``"[32, 32, 64]"`` or ``[32, 32, 64]`` -> ``(32, 32, 64)``; FaceNerfError otherwise."""
    try:
        return tuple(int(v) for v in _list_items(text))
    except ValueError as err:
        raise FaceNerfError(f"{name} = {text!r} is not a comma-separated list of integers, e.g. 32,32,64") from err


def parse_float_list(text, name: str = "value") -> tuple[float, ...]:
    """``"0.25,0.5,1"`` -> ``(0.25, 0.5, 1.0)``; FaceNerfError for anything else or an empty list."""
    try:
        values = tuple(float(v) for v in _list_items(text))
    except ValueError as err:
        raise FaceNerfError(f"--{name} = {text!r} is not a comma-separated list of numbers") from err
    if not values:
        raise FaceNerfError(f"--{name} is empty; give comma-separated numbers")
    return values


def _base_type(kind):
    """``int | None`` -> ``int``; other annotations unchanged."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return kind


def value_parser(f: dataclasses.Field, kind) -> Callable[[str], Any]:
    """The function turning a config-file/command-line text into this field's value."""
    spec = option_spec(f)
    if spec is not None and spec.parse is not None:
        return spec.parse
    kind = _base_type(kind)
    if kind is bool:
        return str2bool
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if item is int:
            return lambda text: parse_int_list(text, option_key(f))
        return lambda text: parse_float_list(text, option_key(f))
    if kind in (int, float, Path):
        return kind
    return str


def coerce(f: dataclasses.Field, kind, value):
    """``value`` (text, list or already typed) as this field's type; None stays None."""
    if value is None:
        return None
    base = _base_type(kind)
    if isinstance(value, str) or (typing.get_origin(base) is tuple and isinstance(value, list)):
        return value_parser(f, kind)(value)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ----------------------------------------------------------------------------- dict round trips

def _primitive(value):
    if is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_primitive(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _primitive(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def to_dict(cfg) -> dict:
    """A dataclass as a nested dict of primitives (tuples as lists, paths as strings)."""
    return {f.name: _primitive(getattr(cfg, f.name)) for f in fields(cfg)}


def from_dict(cls, data: Mapping[str, Any]):
    """The inverse of :func:`to_dict`; unknown keys are ignored, missing ones keep their defaults."""
    kinds = field_types(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        inner = nested_type(kinds[f.name])
        value = data[f.name]
        if inner is not None and isinstance(value, Mapping):
            values[f.name] = from_dict(inner, value)
        elif inner is None:
            values[f.name] = coerce(f, kinds[f.name], tuple(value) if isinstance(value, list) else value)
    return cls(**values)


def flat_options(cfg) -> dict[str, Any]:
    """``{config key: value}`` of every option field of ``cfg`` and its nested dataclasses."""
    out = {}
    for path, f, _ in option_fields(type(cfg)):
        value = cfg
        for name in path:
            value = getattr(value, name)
        out[option_key(f)] = value
    return out


def from_flat(cls, flat: Mapping[str, Any], **given):
    """Build ``cls`` from one flat ``{config key: value}`` dict (older checkpoints and config files).

    Each field reads its key or one of its aliases; text values are parsed; absent keys keep
    their defaults. ``given`` replaces whole fields (e.g. a nested config built elsewhere).
    """
    kinds = field_types(cls)
    values = dict(given)
    for f in fields(cls):
        if f.name in values:
            continue
        inner = nested_type(kinds[f.name])
        if inner is not None:
            values[f.name] = from_flat(inner, flat)
            continue
        spec = option_spec(f)
        if spec is None:
            continue
        for key in (option_key(f), *spec.aliases):
            if key in flat and flat[key] is not None:
                values[f.name] = coerce(f, kinds[f.name], flat[key])
                break
    return cls(**values)


# ----------------------------------------------------------------------------- config files

def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def save_config(values, out_dir: str | Path, name: str = "config.txt") -> Path:
    """Write a resolved configuration as ``key = value`` lines (atomically); return the file's path.

    ``values`` is a typed config (its option keys are written) or a ``{key: value}`` mapping.
    The file can be passed back with ``-c``; unset (None) values are written as comments.
    """
    from facenerf.io import ensure_writable_dir, write_text

    flat = flat_options(values) if is_dataclass(values) else dict(values)
    out = ensure_writable_dir(out_dir) / name
    lines = ["# resolved configuration; rerun with: -c " + str(out)]
    for key, value in sorted(flat.items()):
        if key == "config":
            continue
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {format_value(value)}")
    return write_text(out, "\n".join(lines) + "\n", "config file")
