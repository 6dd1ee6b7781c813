"""Command-line parsing for every command (ConfigArgParse): the command layer's only tool.

Precedence: command-line flags > config file (``-c``) > defaults. Config files hold
``key = value`` lines with ``#`` comments; a key is a flag's long name without the dashes.
Everything a user can get wrong here (a missing file, an unknown key, a bad value) raises
:class:`~facenerf.errors.FaceNerfError` with one line naming the file, the key and the fix.

Options come from typed config dataclasses (:func:`facenerf.config.option` fields):
:func:`add_options` adds their flags with the dataclass's defaults, and :func:`from_namespace`
turns the parsed namespace back into the dataclass. Only command modules (the scripts at the
repository root, ``options.py`` modules, ``facenerf/tools`` and ``__main__`` modules) import
this module; nothing below them sees an ``argparse.Namespace``.

Every boolean option takes ``--flag`` (true), ``--flag true|false`` and ``flag = true|false`` in
a config file. ``--help`` lists each option's default once.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Iterable

import configargparse

from facenerf.config import (coerce, field_types, nested_type, option_fields, option_key, option_spec,
                             str2bool, value_parser)
from facenerf.errors import FaceNerfError

CONFIG_FLAGS = ("-c", "--config")
BOOL_METAVAR = "true|false"


def bool_type(text) -> bool:
    """``type=`` of boolean flags: :func:`facenerf.config.str2bool` with argparse's error type."""
    try:
        return str2bool(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def bool_flag(default: bool | None, help: str) -> dict:
    """``add_argument`` keywords of a boolean option: ``--x``, ``--x true|false``, ``x = true``."""
    return {"type": bool_type, "nargs": "?", "const": True, "default": default, "metavar": BOOL_METAVAR,
            "help": help}


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default once (not when the help already says it, nor empty ones).

    A description or epilog written over several lines is kept as written; one line is wrapped.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        """The help line, with `` (default: X)`` appended once; help texts are plain (a ``%`` is a percent)."""
        text = action.help or ""
        if text is argparse.SUPPRESS:
            return text
        default = action.default
        if ("default" in text.lower() or not action.option_strings or default in (None, "", argparse.SUPPRESS)
                or (isinstance(default, (tuple, list)) and not default) or isinstance(action, argparse._HelpAction)):
            return text.replace("%", "%%")
        if isinstance(default, bool):
            shown = "true" if default else "false"
        elif isinstance(default, (tuple, list)):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown})".replace("%", "%%")


class _Parser(configargparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`FaceNerfError` instead of usage + exit."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise FaceNerfError(f"{message} (see {self.prog} --help)")


def make_parser(description: str, prog: str | None = None, epilog: str | None = None) -> configargparse.ArgumentParser:
    """A parser with ``-c/--config`` for a ``key = value`` text file."""
    parser = _Parser(description=description, prog=prog, epilog=epilog,
                     config_file_parser_class=configargparse.DefaultConfigFileParser,
                     formatter_class=HelpFormatter, allow_abbrev=False,
                     add_config_file_help=False, add_env_var_help=False)
    parser.add_argument(*CONFIG_FLAGS, is_config_file=True, metavar="FILE",
                        help="config file of `key = value` lines; flags given on the command line win")
    return parser


# ----------------------------------------------------------------------------- typed options

def _existing_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions}  # argparse keeps no public list of actions


def add_options(parser: argparse.ArgumentParser, cls, title: str | None = None, *,
                only: Iterable[str] | None = None, skip: Iterable[str] = (), unset: str | None = None,
                hidden: bool = False, skip_existing: bool = False):
    """Add a flag for every option field of ``cls`` (nested dataclasses included) to ``parser``.

    Args:
        title: argument group shown by ``--help`` (None: the parser's own list).
        only / skip: config keys to include / leave out.
        unset: when given, every flag defaults to None (= "not set") and its help says
            "(default: <unset>)", e.g. "the checkpoint's": the caller fills unset keys itself.
        hidden: accept the keys but leave them out of ``--help``.
        skip_existing: silently leave out keys the parser already has.
    Returns the argument group (or the parser).
    """
    group = parser.add_argument_group(title) if title else parser
    wanted = None if only is None else set(only)
    skipped = set(skip)
    existing = _existing_dests(parser)
    for _, f, kind in option_fields(cls):
        key = option_key(f)
        if (wanted is not None and key not in wanted) or key in skipped or (skip_existing and key in existing):
            continue
        kwargs = _argument(f, kind, unset, hidden)
        group.add_argument(f"--{key}", **kwargs)
        for alias in option_spec(f).aliases:  # an older name: accepted, not listed
            group.add_argument(f"--{alias}", **{**kwargs, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS,
                                                "required": False})
        existing.add(key)
    return group


def _argument(f, kind, unset: str | None, hidden: bool) -> dict:
    spec = option_spec(f)
    text = argparse.SUPPRESS if hidden else spec.help
    if unset is not None and not hidden:
        text = f"{spec.help} (default: {unset})"
    required = f.default is MISSING and unset is None
    default = None if unset is not None or f.default is MISSING else f.default
    parse = value_parser(f, kind)
    if parse is str2bool:
        kwargs = bool_flag(default, text)
    else:
        kwargs = {"type": parse, "default": default, "help": text, "metavar": _metavar(kind)}
    if spec.choices:
        kwargs["choices"] = spec.choices
        kwargs.pop("metavar", None)
    if required:
        kwargs["required"] = True
    kwargs["dest"] = option_key(f)
    return kwargs


def _metavar(kind) -> str:
    """How ``--help`` shows a value: N (integer), X (number), A,B,... (list), TEXT."""
    if typing.get_origin(kind) is tuple:
        return "A,B,..."
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return {int: "N", float: "X"}.get(kind, "TEXT")


def from_namespace(cls, namespace: argparse.Namespace, **given):
    """Build ``cls`` (and its nested dataclasses) from the parsed ``namespace``.

    A field whose key the parser does not have keeps its default; ``given`` sets whole fields.
    """
    kinds = field_types(cls)
    values = dict(given)
    for f in fields(cls):
        if f.name in values:
            continue
        inner = nested_type(kinds[f.name])
        if inner is not None:
            values[f.name] = from_namespace(inner, namespace)
        elif option_spec(f) is not None and getattr(namespace, option_key(f), None) is not None:
            values[f.name] = coerce(f, kinds[f.name], getattr(namespace, option_key(f)))
    return cls(**values)


def set_options(cls, namespace: argparse.Namespace) -> dict[str, Any]:
    """``{field name: value}`` of the option fields of ``cls`` (not nested) that are not None.

    With flags added by ``add_options(..., unset=...)`` these are the keys the user set.
    """
    kinds = field_types(cls)
    found = {}
    for f in fields(cls):
        if option_spec(f) is None or nested_type(kinds[f.name]) is not None:
            continue
        value = getattr(namespace, option_key(f), None)
        if value is not None:
            found[f.name] = coerce(f, kinds[f.name], value)
    return found


# ----------------------------------------------------------------------------- parsing

def _known_keys(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Map every accepted config key (long option without dashes, and dest) to its dest."""
    keys: dict[str, str] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                keys[option[2:]] = action.dest
        keys.setdefault(action.dest, action.dest)
    return keys


def _config_path_from_argv(argv: list[str]) -> str | None:
    for i, token in enumerate(argv):
        if token in CONFIG_FLAGS:
            if i + 1 >= len(argv):
                raise FaceNerfError(f"{token} needs a file path: pass -c path/to/config.txt")
            return argv[i + 1]
        for flag in CONFIG_FLAGS:
            if token.startswith(flag + "="):
                return token.split("=", 1)[1]
    return None


def _check_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Raise a one-line error for a missing/unreadable file or any unknown key in it."""
    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"config file not found: {path} (check the path given to -c/--config)")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise FaceNerfError(f"cannot read config file {path}: {err}") from err
    known = _known_keys(parser)
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";", "[")):
            continue
        key = stripped.split("=", 1)[0].split(":", 1)[0].strip()
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"see {parser.prog} --help for valid keys"
            raise FaceNerfError(f"unknown key '{key}' in {path} line {lineno}: {hint}")


def parse_args(parser: configargparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and the config file it names.

    Raises :class:`FaceNerfError` for a missing config file, an unknown key in it, an unknown
    command-line flag or a value of the wrong type.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    path = _config_path_from_argv(argv)
    if path is not None:
        _check_config_file(parser, path)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [f"--{k}" for k in _known_keys(parser)]
        close = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"see {parser.prog} --help"
        raise FaceNerfError(f"unknown argument '{unknown[0]}': {hint}")
    return args


def hidden_flags_given(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> list[str]:
    """Keys of ``argv`` (default ``sys.argv[1:]``) whose options are accepted but not listed by
    ``--help`` (a command's unread keys, kept so that another command's config file loads), in
    order, each once. A command names them in a note: on its command line they do nothing."""
    argv = list(sys.argv[1:] if argv is None else argv)
    listed = {action.dest for action in parser._actions if action.help != argparse.SUPPRESS}  # aliases share these
    hidden = {opt[2:] for action in parser._actions if action.help == argparse.SUPPRESS and action.dest not in listed
              for opt in action.option_strings if opt.startswith("--")}
    given = [token[2:].split("=", 1)[0] for token in argv if token.startswith("--")]
    return list(dict.fromkeys(key for key in given if key in hidden))


def namespace_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The parsed values as a plain dict (for :func:`facenerf.config.save_config`)."""
    return {key: value for key, value in vars(namespace).items() if key != "config"}
