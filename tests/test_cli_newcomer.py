"""What a newcomer meets first: inputs checked before heavy loads, the GL fallback explained, outputs
beside their data, relative paths that work from the script's folder, configs that agree with README."""

from __future__ import annotations

import re
import shlex

import pytest

import run_fit
from commands import ROOT, load_script
from facenerf.errors import FaceNerfError


def test_missing_image_is_reported_before_the_checkpoint_loads(tmp_path):
    broken = tmp_path / "step_00000001.pt"
    broken.write_bytes(b"not a checkpoint")          # loading it would fail with another message
    with pytest.raises(FaceNerfError, match="image not found: .*missing.png .*--filePath"):
        run_fit.main(["--filePath", str(tmp_path / "missing.png"), "--ckpt", str(broken)])
    with pytest.raises(FaceNerfError, match="fit file not found"):
        run_fit.main(["--filePath", str(tmp_path / "x.png"), "--renderType", "rendering", "--ckpt", str(broken)])
    with pytest.raises(FaceNerfError, match="file not found: .*stats.pt .*--code_stats"):
        run_fit.main(["--renderType", "random", "--code_stats", str(tmp_path / "stats.pt"), "--ckpt", str(broken)])


def test_osmesa_without_the_library_names_the_fix(monkeypatch):
    from facenerf.preprocess.training import gl

    monkeypatch.setattr(gl, "osmesa_installed", lambda: False)
    monkeypatch.delitem(__import__("sys").modules, "OpenGL", raising=False)
    with pytest.raises(FaceNerfError, match=r"make osmesa.*apt-get install -y libosmesa6.*--gl egl"):
        gl.select_gl_platform("osmesa")


def test_contact_sheet_goes_beside_its_data():
    from facenerf.preprocess.training.contact_sheet import ContactSheet

    assert ContactSheet(data="data/tiny", id="3").out_path.as_posix() == "data/tiny/contact_sheet_3.png"
    assert ContactSheet(data="data/tiny", out="x.png").out_path.as_posix() == "x.png"


def test_wild_preprocessing_reads_relative_inputs_from_the_repository_as_a_fallback(tmp_path, monkeypatch, capsys):
    cli = load_script(ROOT / "fittingDataPreprocess" / "wildData_preprocess.py")
    monkeypatch.chdir(ROOT / "fittingDataPreprocess")
    assert cli.input_path("../README.md", "--filePath") == "../README.md"            # found here: kept
    assert cli.input_path("./docs", "--filePath") == str(ROOT / "docs")              # not here: the repository's
    assert "not in" in capsys.readouterr().out
    assert cli.input_path("./nowhere", "--filePath") == "./nowhere"                  # neither: the error names it


def _data_args(command: str) -> dict[str, str]:
    """The flags that decide what data a command writes (``--workers`` and ``--progress`` do not)."""
    words = shlex.split(command.split(" #")[0])
    return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and w not in ("--workers", "--progress")}


def test_tiny_config_header_agrees_with_the_readme():
    header = [line[1:].strip() for line in (ROOT / "configs" / "mofanerf_tiny.txt").read_text().splitlines()
              if line.startswith("#")]
    readme = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text()).splitlines()
    for tool in ("python -m facenerf.data.synthetic", "python align_clip.py", "python render.py"):
        ours = next(line for line in header if line.startswith(tool))
        theirs = next(line for line in readme if line.startswith(tool))
        assert _data_args(ours) == _data_args(theirs), (ours, theirs)
