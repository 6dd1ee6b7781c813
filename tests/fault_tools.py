"""Helpers of the fault tests: a size-limited disk, command runs, polling, and a check that every
file in a folder is complete (decodes), not just present."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPEND_LOGS = ("train_log.txt",)          # append-only logs, not files written in one piece
LOG_FOLDERS = ("tensorboard",)


def env() -> dict:
    gl_file = ROOT / ".venv" / ".gl-platform"
    extra = {"PYOPENGL_PLATFORM": gl_file.read_text().strip()} if gl_file.is_file() and \
        "PYOPENGL_PLATFORM" not in os.environ else {}
    return {**os.environ, **extra, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a command-line script (path relative to the repository root) as a user would."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def start(args: list[str], log: Path) -> subprocess.Popen:
    """Start a command in its own session (so its whole process tree can be found); output to ``log``."""
    handle = open(log, "w")
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env(), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_handle = handle
    return proc


def wait_until(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
               interval: float = 0.02) -> bool:
    """Poll ``condition`` until true (True), ``timeout`` seconds pass or ``proc`` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(interval)
    return False


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, and stderr ends in exactly one ``error:`` line holding ``fragments``."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# ---------------------------------------------------------------------------------- small disks

@contextlib.contextmanager
def small_disk(path: Path, size_kib: int, read_only: bool = False):
    """A tmpfs of ``size_kib`` KiB mounted at ``path`` (skips the test when mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k,mode=0777" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"cannot mount a size-limited tmpfs to fill ({err}); needs root and mount(8)")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs to fill ({done.stderr.strip()}); needs root "
                    "(CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(disk: Path, leave_kib: int) -> None:
    """Fill ``disk`` with one file so that about ``leave_kib`` KiB stay free."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    size = max(free - leave_kib * 1024, 0)
    with open(disk / "filler.bin", "wb") as handle:
        handle.write(b"\0" * size)


# ---------------------------------------------------------------------------- complete files

def _check_file(path: Path) -> None:
    from PIL import Image

    from facenerf.data.meshio import read_obj
    from facenerf.io import load_weights_file
    from facenerf.fitting.inputs import load_pose_file
    from facenerf.io import mp4_complete

    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        with Image.open(path) as handle:
            handle.load()
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".npy":
        load_pose_file(path) if path.name.startswith("pose_") else np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            [npz[key] for key in npz.files]
    elif suffix in (".pt", ".tar"):
        load_weights_file(path)
    elif suffix == ".obj":
        read_obj(path)
    elif suffix == ".mp4":
        assert mp4_complete(path)
    elif path.name.endswith("landmarks.txt") or path.parent.name == "landmarks":
        assert np.loadtxt(path).reshape(-1).size == 68 * (3 if path.name.endswith(".landmarks.txt") else 2)
    else:
        path.read_bytes().decode("utf-8")


def assert_all_complete(root: Path, ignore: tuple[str, ...] = ("filler.bin",)) -> list[Path]:
    """Every file under ``root`` decodes completely and no temporary file is left; returns the files.

    Append-only logs (the text log, TensorBoard events) are not written in one piece and are skipped.
    """
    from facenerf.io import is_temporary

    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        assert not is_temporary(path.name), f"temporary file left behind: {path}"
        if path.name in ignore or path.name in APPEND_LOGS or set(path.relative_to(root).parts) & set(LOG_FOLDERS):
            continue
        try:
            _check_file(path)
        except Exception as err:  # noqa: BLE001 - any failure to decode is the finding
            raise AssertionError(f"{path} is incomplete or corrupt: {err!r}") from err
        files.append(path)
    return files


def snapshot(files: list[Path]) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) per file: an atomic rewrite gets a new inode, so any rewrite shows."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
