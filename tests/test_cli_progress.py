"""Every command spells its progress-bar switch the same way: ``--progress true|false``.

Config files written by one command (``progress = false``) must be accepted by every other,
so each parser is checked for the one shared option, and the repository's scripts, configs
and docs are checked for the retired ``--no_progress`` flag.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from commands import ROOT, WITH_PROGRESS, build
from facenerf.cli import bool_type, namespace_values, parse_args
from facenerf.config import save_config
from facenerf.errors import FaceNerfError


@pytest.mark.parametrize("label", WITH_PROGRESS)
def test_every_command_has_the_same_progress_option(label):
    parser = build(label)
    by_dest = {action.dest: action for action in parser._actions}
    assert "no_progress" not in by_dest, f"{label} still has --no_progress"
    action = by_dest["progress"]
    assert action.option_strings == ["--progress"]
    assert action.type is bool_type and action.default is True and action.nargs == "?" and action.const is True
    assert action.help == "show a progress bar when the output is a terminal"


def test_progress_false_round_trips_through_a_config_file(tmp_path):
    parser = build("python -m facenerf.data.synthetic")
    config = tmp_path / "in.txt"
    config.write_text("progress = false\nids = 1\n")
    args = parse_args(parser, ["-c", str(config)])
    assert args.progress is False and args.ids == 1
    assert parse_args(parser, ["-c", str(config), "--progress", "yes"]).progress is True
    written = save_config(namespace_values(args), tmp_path / "out", "saved.txt")
    assert "progress = false" in Path(written).read_text().splitlines()
    assert parse_args(parser, ["-c", str(written)]).progress is False


def test_retired_flag_and_bad_values_are_one_line_errors(tmp_path):
    parser = build("align_clip.py")
    with pytest.raises(FaceNerfError, match="--progress"):
        parse_args(parser, ["--no_progress"])
    with pytest.raises(FaceNerfError, match="expected true or false"):
        parse_args(parser, ["--progress", "maybe"])
    old = tmp_path / "old.txt"
    old.write_text("no_progress = true\n")
    with pytest.raises(FaceNerfError, match="unknown key 'no_progress'.*'progress'"):
        parse_args(parser, ["-c", str(old)])


SKIP_TOP = {".git", ".venv", "data", "logs", "outputs", "demo_out"}   # generated or installed, not sources
SKIP_ANY = {"__pycache__", ".pytest_cache"}
SUFFIXES = {".py", ".sh", ".txt", ".md", ".cfg", ".toml", ".yml", ".yaml"}


def test_no_script_config_or_doc_uses_the_retired_flag():
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        top = Path(folder) == ROOT
        dirs[:] = [d for d in dirs if d not in SKIP_ANY and not (top and d in SKIP_TOP)]
        for name in files:
            path = Path(folder) / name
            if (path.suffix not in SUFFIXES and name != "Makefile") or path == Path(__file__).resolve():
                continue
            text = path.read_text(errors="replace")
            if "no_progress" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"use --progress false / progress = false instead of no_progress in {offenders}"
