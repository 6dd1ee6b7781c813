"""The one atomic writer (facenerf.io): all-or-nothing files, one-line errors, stale temporaries,
and a scan proving that nothing else in the project writes output files."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facenerf import io
from facenerf.errors import FaceNerfError, OutputError

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_only_a_complete_file(tmp_path):
    target = tmp_path / "out" / "a.txt"
    io.write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_write(target) as tmp:
            tmp.write_text("half of the sec")
            assert tmp.parent == target.parent and tmp.suffix == ".txt" and io.is_temporary(tmp.name)
            raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]   # temporary removed


def test_write_errors_are_one_line_output_errors(tmp_path):
    folder = tmp_path / "a_folder.png"
    folder.mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        io.write_image(folder, np.zeros((4, 4, 3)))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as err:
        io.write_json(blocker / "sub" / "r.json", {"a": 1})
    message = str(err.value)
    assert "\n" not in message and str(blocker / "sub" / "r.json") in message and "not a folder" in message
    assert isinstance(err.value, FaceNerfError)


def test_torch_write_failure_reports_the_os_cause():
    inner = OSError(28, "No space left on device")
    try:
        try:
            raise inner
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 704 vs 598")
    except RuntimeError as err:
        message = str(io.output_error("/x/step_00000001.pt", "checkpoint", err))
    assert message == ("cannot write checkpoint /x/step_00000001.pt: No space left on device; "
                       "free disk space or choose another output folder")


def test_typed_writers_round_trip(tmp_path):
    image = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)
    assert np.abs(io.read_image(io.write_image(tmp_path / "i.png", image)) - image).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(np.load(io.write_npy(tmp_path / "a.npy", np.arange(5))), np.arange(5))
    record = np.load(io.write_npy(tmp_path / "noext", {"k": 1}, allow_pickle=True), allow_pickle=True).item()
    assert record == {"k": 1}
    with np.load(io.write_npz(tmp_path / "z.npz", v=np.ones(3))) as npz:
        assert npz["v"].sum() == 3
    assert np.allclose(np.loadtxt(io.write_array_text(tmp_path / "l.txt", np.eye(2))), np.eye(2))
    assert io.copy_file(tmp_path / "l.txt", tmp_path / "c" / "l2.txt").read_text() == (tmp_path / "l.txt").read_text()
    payload = {"w": torch.arange(3.0)}
    loaded = torch.load(io.save_torch(tmp_path / "w.pt", payload), weights_only=True)
    assert torch.equal(loaded["w"], payload["w"])
    assert not [p for p in tmp_path.rglob("*") if io.is_temporary(p.name)]


def test_video_is_checked_complete(tmp_path):
    frames = [np.full((16, 16, 3), v, np.float32) for v in np.linspace(0, 1, 6)]
    video = io.write_video(tmp_path / "v.mp4", frames, fps=5)
    assert io.mp4_complete(video)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size - 40])
    assert not io.mp4_complete(cut)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".0_3.tmp-{dead_pid}-abcd1234.png"
    legacy = tmp_path / ".step_00000010.pt.x1y2z3.tmp"
    live = tmp_path / f".0_4.tmp-{os.getpid()}-abcd1234.png"
    kept = [tmp_path / ".hidden", tmp_path / "0_5.png", tmp_path / "x.tmp-1-ab.png"]
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / f".a.tmp-{dead_pid}-00ff.json"
    for path in [stale, legacy, live, nested, *kept]:
        path.write_text("x")
    assert sorted(io.remove_stale_temporaries(tmp_path)) == sorted([stale, legacy])
    assert nested.exists() and live.exists() and all(p.exists() for p in kept)
    assert io.remove_stale_temporaries(tmp_path, recursive=True) == [nested]


def test_image_listing_ignores_hidden_temporaries(tmp_path):
    io.write_image(tmp_path / "a.png", np.zeros((2, 2, 3)))
    (tmp_path / ".a.tmp-1-ff.png").write_bytes(b"")
    assert io.list_images(tmp_path) == [tmp_path / "a.png"]


# --------------------------------------------------------------- nothing bypasses the writer

_WRITE_CALLS = {"write_text", "write_bytes", "savefig", "imwrite", "savetxt", "savez", "savez_compressed",
                "copyfile", "export", "get_writer"}
_WRITE_MODES = ("w", "a", "x")


def _writes_outside_io(path: Path) -> list[str]:
    """Calls in ``path`` that create a file without facenerf.io (by name, or ``open(..., 'w')``)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if isinstance(func, ast.Attribute) and name in _WRITE_CALLS:
            found.append(f"{path.name}:{node.lineno} .{name}()")
        elif (owner in ("np", "numpy", "torch") and name == "save") or (owner == "shutil" and "copy" in name):
            found.append(f"{path.name}:{node.lineno} {owner}.{name}()")
        elif name == "open" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith(_WRITE_MODES):
            found.append(f"{path.name}:{node.lineno} open(..., {node.args[1].value!r})")
    return found


def test_every_output_goes_through_the_atomic_writer():
    sources = [p for p in ROOT.glob("*.py")]
    for folder in ("facenerf", "fittingDataPreprocess", "trainingDataPreprocess", "benchmarks", "data_utils"):
        sources += list((ROOT / folder).rglob("*.py"))
    allowed = {ROOT / "facenerf" / "io.py",                   # the writer itself
               ROOT / "facenerf" / "engine" / "logger.py"}    # the append-only text log
    offenders = [hit for path in sources if path not in allowed for hit in _writes_outside_io(path)]
    assert offenders == [], offenders
