"""Smaller fault findings: problems reported once up front, limits that are errors rather than
silent caps, boolean flags that take a value, one-line environment errors, and docs that never
advise unsafe loading."""

from __future__ import annotations

import ast
import errno
import sys
from pathlib import Path

import pytest

from fault_tools import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from facenerf.errors import FaceNerfError, run_cli  # noqa: E402


def test_missing_predef_folder_is_reported_once_before_the_batch(tmp_path, capsys):
    import align_clip
    from facenerf.data.synthetic import __main__ as synthetic

    assert synthetic.main(["--ids", "2", "--out", str(tmp_path), "--expressions", "1,2", "--texture_size", "16",
                           "--vertices", "600", "--progress", "false"]) == 0
    args = ["--data", str(tmp_path), "--predef", str(tmp_path / "nowhere"), "--progress", "false"]
    with pytest.raises(FaceNerfError, match=r"predef folder .*nowhere not found: clipping needs it; pass --predef"):
        align_clip.main(args)
    assert not (tmp_path / "models_out").exists()          # nothing started
    # without Rt_scale_dict.json nor any 3D landmarks no mesh can be aligned: one line, before the batch
    with pytest.raises(FaceNerfError, match="Rt_scale_dict.json not found .* no 3D landmarks to align by"):
        align_clip.main(args + ["--clip_radius", "300"])
    out = capsys.readouterr().out
    assert out.count("predef folder") == 1 and out.count("maxDistance") == 0
    assert not list((tmp_path / "models_out").rglob("*.obj"))


def test_more_views_than_the_rig_is_an_error():
    from facenerf.preprocess.training import rig

    assert len(rig.select_views(120)) == 120
    with pytest.raises(FaceNerfError, match="--views 500 asks for more views than the 120 the rig has"):
        rig.select_views(500)
    with pytest.raises(FaceNerfError, match="the 20 the rig keeps with --pitches/--yaws; use --views 20"):
        rig.select_views(21, pitches=[0])


def test_refine_boolean_flags_take_true_and_false():
    from facenerf.cli import parse_args
    from facenerf.models.refine.options import build_train_parser

    parse = lambda *argv: parse_args(build_train_parser(), list(argv))  # noqa: E731
    assert parse("--cache", "false").cache is False and parse("--cache").cache is True
    assert parse("--cache", "true", "--flip", "no").flip is False and parse().cache is False
    config = ROOT / "configs" / "refine_tiny.txt"
    assert parse("-c", str(config)).cache is True and parse("-c", str(config), "--cache", "false").cache is False


def test_run_cli_turns_environment_os_errors_into_one_line(capsys):
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.png")

    with pytest.raises(SystemExit) as done:
        run_cli(full)
    assert done.value.code == 2
    assert capsys.readouterr().err == ("error: cannot access /data/out/x.png: No space left on device; "
                                       "check the disk and the folder's permissions\n")

    def bug():
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):                          # a programming error keeps its traceback
        run_cli(bug)


def _docstrings(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                yield text


def test_docs_never_suggest_allow_pickle():
    texts = {path: path.read_text() for path in ROOT.rglob("*.md") if ".venv" not in path.parts}
    for folder in ("facenerf", "fittingDataPreprocess", "trainingDataPreprocess"):
        for path in (ROOT / folder).rglob("*.py"):
            texts[path] = "\n".join(_docstrings(path))
    texts.update({path: "\n".join(_docstrings(path)) for path in ROOT.glob("*.py")})
    assert [str(p) for p, text in texts.items() if "allow_pickle=True" in text.replace(" ", "")] == []
