"""Ctrl-C and kill -9 in the middle of a batch: a rerun finishes it with every output complete and
without redoing finished work; render.py's workers die with their parent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fault_tools import ROOT, assert_all_complete, run, snapshot, start, wait_until
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import gl

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None
needs_gl = pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")
QUIET = ["--progress", "false"]


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> Path:
    """2 synthetic identities x 2 expressions, aligned into models_out."""
    import sys

    sys.path.insert(0, str(ROOT))
    import align_clip
    from facenerf.data.synthetic import __main__ as synthetic

    root = tmp_path_factory.mktemp("faces")
    assert synthetic.main(["--ids", "2", "--out", str(root), "--expressions", "1,2", "--texture_size", "64",
                           "--vertices", "1200", *QUIET]) == 0
    assert align_clip.main(["--data", str(root), *QUIET]) == 0
    return root


def _complete_pngs(folder: Path) -> list[Path]:
    from PIL import Image

    done = []
    for path in folder.rglob("*.png"):
        if path.name.startswith("."):
            continue
        try:
            with Image.open(path) as handle:
                handle.load()
            done.append(path)
        except OSError:
            pass
    return done


def _interrupt(args: list[str], log: Path, ready, how: int) -> subprocess.Popen:
    """Start a command, wait until ``ready()``, send ``how``; the command must still have been running."""
    proc = start(args, log)
    try:
        assert wait_until(ready, 240, proc), log.read_text()[-3000:]
        assert proc.poll() is None, "the batch finished before it could be interrupted: " + log.read_text()[-2000:]
        os.kill(proc.pid, how)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_handle.close()
    return proc


@needs_gl
def test_render_resumes_after_ctrl_c_and_kill_9(aligned, tmp_path):
    out = tmp_path / "mv"
    args = ["render.py", "--data", str(aligned), "--out", str(out), "--resolution", "48", "--views", "30",
            "--workers", "1", "--gl", PLATFORM, *QUIET]
    total = 2 * 2 * 30
    first = _interrupt(args, tmp_path / "1.txt", lambda: len(_complete_pngs(out)) >= 10, signal.SIGINT)
    text = (tmp_path / "1.txt").read_text()
    assert first.returncode == 130 and text.strip().splitlines()[-1] == "interrupted" and "Traceback" not in text
    import json

    assert json.loads((out / "render_report.json").read_text())["stopped"] == "interrupted"
    assert_all_complete(out)                                # Ctrl-C leaves no partial or temporary file
    after_int = len(_complete_pngs(out))
    second = _interrupt(args, tmp_path / "2.txt", lambda: len(_complete_pngs(out)) >= after_int + 20, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    kept = snapshot(_complete_pngs(out))
    assert after_int + 20 <= len(kept) < total
    done = run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"rendered {total - len(kept)} views, skipped {len(kept)} finished views" in done.stdout
    assert snapshot(list(kept)) == kept                     # nothing finished was rendered again
    files = assert_all_complete(out)
    assert len([p for p in files if p.suffix == ".png"]) == total


def test_wild_preprocess_resumes_after_ctrl_c_and_kill_9(tmp_path):
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    face = Image.fromarray(data.astronaut())
    for i in range(10):
        (face.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else face).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    args = ["fittingDataPreprocess/wildData_preprocess.py", "--filePath", str(photos), "--out", str(out),
            "--image_size", "128", "--upsample", "0", *QUIET]
    poses = lambda: sorted(out.glob("pose_*.npy"))  # noqa: E731
    first = _interrupt(args, tmp_path / "1.txt", lambda: len(poses()) >= 1, signal.SIGINT)
    text = (tmp_path / "1.txt").read_text()
    assert first.returncode == 130 and text.strip().splitlines()[-1] == "interrupted" and "Traceback" not in text
    assert_all_complete(out)
    n1 = len(poses())
    second = _interrupt(args, tmp_path / "2.txt", lambda: len(poses()) >= n1 + 2, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    finished = [p.stem[len("pose_"):] for p in poses()]
    assert n1 + 2 <= len(finished) < 10
    outputs = [out / d / f"{s}.png" for s in finished for d in ("aligned", "mask", "segRes", "segRelRes")]
    kept = snapshot(outputs + [out / "landmarks" / f"{s}.txt" for s in finished] + poses())
    done = run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"summary: 10 ok, 0 skipped, {len(finished)} of them done by an earlier run" in done.stdout
    assert done.stdout.count("finished by an earlier run") == len(finished)
    assert snapshot(list(kept)) == kept                     # no photo was processed twice
    files = assert_all_complete(out)
    assert len([p for p in files if p.parent.name == "segRelRes"]) == 10
    assert (out / "contact" / "contact_sheet_001.png").is_file() and (out / "contact" / "contact_sheet_002.png").is_file()


# ----------------------------------------------------------------------------- worker lifetime

def _session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> state letter."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            found[int(entry.name)] = state
    return found


@needs_gl
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list processes")
def test_render_workers_die_with_their_parent(aligned, tmp_path):
    out = tmp_path / "mv"
    args = ["render.py", "--data", str(aligned), "--out", str(out), "--resolution", "64", "--views", "60",
            "--workers", "2", "--gl", PLATFORM, *QUIET]
    proc = start(args, tmp_path / "log.txt")
    try:
        assert wait_until(lambda: len(list(out.rglob("*.png"))) >= 6, 240, proc), (tmp_path / "log.txt").read_text()
        workers = set(_session_processes(proc.pid)) - {proc.pid}
        assert proc.poll() is None and len(workers) >= 2, workers
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at = time.monotonic()
        gone = wait_until(lambda: not _session_processes(proc.pid), 1.0, interval=0.01)
        alive = _session_processes(proc.pid)
        assert gone, f"still alive {time.monotonic() - killed_at:.2f} s after the parent was killed: {alive}"
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.log_handle.close()
    count = len(list(out.rglob("*.png")))
    time.sleep(1.0)
    assert len(list(out.rglob("*.png"))) == count            # nothing renders on after the kill
    log = (tmp_path / "log.txt").read_text()
    assert not re.search(r"Traceback", log), log[-3000:]
