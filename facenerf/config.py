"""Text-file configuration for every command (ConfigArgParse).

Precedence: command-line flags > config file > defaults. Config files hold ``key = value``
lines with ``#`` comments; a key is a flag's long name without the dashes. Everything a user
can get wrong here (a missing file, an unknown key, a bad value) raises
:class:`~facenerf.errors.FaceNerfError` with one line naming the file, the key and the fix.
The resolved configuration is written next to every output with :func:`save_config` and can be
passed back with ``-c``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tempfile
from pathlib import Path
from typing import Any

import configargparse

from facenerf.errors import FaceNerfError

CONFIG_FLAGS = ("-c", "--config")


def str2bool(text) -> bool:
    """``true/false, yes/no, on/off, 1/0`` (any case) -> bool, for ``type=`` of boolean keys.

    Config files hold text, so a boolean key is written ``key = true``; anything else is a
    one-line argparse error.
    """
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Parser(configargparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`FaceNerfError` instead of usage + exit."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise FaceNerfError(f"{message} (see {self.prog} --help)")


def make_parser(description: str, default_config_files: list[str] | None = None,
                prog: str | None = None) -> configargparse.ArgumentParser:
    """A parser with ``-c/--config`` for a ``key = value`` text file."""
    parser = _Parser(
        description=description,
        prog=prog,
        default_config_files=list(default_config_files or []),
        config_file_parser_class=configargparse.DefaultConfigFileParser,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(*CONFIG_FLAGS, is_config_file=True, metavar="FILE",
                        help="config file of `key = value` lines; flags given on the command line win")
    return parser


def _known_keys(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Map every accepted config key (long option without dashes, and dest) to its dest."""
    keys: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps no public list of actions
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
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    path = _config_path_from_argv(argv)
    if path is None:
        path = next((p for p in parser._default_config_files if Path(p).is_file()), None)
    if path is not None:
        _check_config_file(parser, path)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [f"--{k}" for k in _known_keys(parser)]
        close = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"see {parser.prog} --help"
        raise FaceNerfError(f"unknown argument '{unknown[0]}': {hint}")
    return args


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def save_config(args: argparse.Namespace, out_dir: str | Path, name: str = "config.txt") -> Path:
    """Write the resolved configuration as ``key = value`` lines; return the file's path.

    The file can be passed back with ``-c`` to repeat the run. Unset (None) values are written
    as comments.
    """
    out = ensure_writable_dir(out_dir) / name
    lines = ["# resolved configuration; rerun with: -c " + str(out)]
    for key, value in sorted(vars(args).items()):
        if key == "config":
            continue
        if value is None:
            lines.append(f"# {key} = (unset)")
        else:
            lines.append(f"{key} = {_format_value(value)}")
    from facenerf.io import write_text

    return write_text(out, "\n".join(lines) + "\n", "config file")


def config_to_dict(args: argparse.Namespace | dict) -> dict:
    """A primitive-only copy of ``args`` (str/int/float/bool/None/lists), safe for checkpoints."""
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    result = {}
    for key, value in items:
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        if isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        if value is None or isinstance(value, (str, int, float, bool, list)):
            result[key] = value
        else:
            result[key] = str(value)
    return result


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check a file can be written there."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise FaceNerfError(f"cannot write to output directory {folder}: {reason}; "
                            "choose a writable directory") from err
    if not os.access(folder, os.W_OK):
        raise FaceNerfError(f"cannot write to output directory {folder}: permission denied; "
                            "choose a writable directory")
    return folder
