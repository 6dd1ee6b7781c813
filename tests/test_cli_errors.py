"""Every command answers a wrong config key, a missing config file and an unwritable output folder
with one `error:` line and exit status 2 (run as a user would, in a fresh interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "run_train": ["run_train.py"],
    "run_fit": ["run_fit.py"],
    "align_clip": ["align_clip.py"],
    "render": ["render.py"],
    "refine_train": ["trainingDataPreprocess/train.py"],
    "refine_test": ["trainingDataPreprocess/test.py", "--nerf_folder", "x"],
    "make_pairs": ["trainingDataPreprocess/make_pairs.py"],
    "wild_preprocess": ["fittingDataPreprocess/wildData_preprocess.py", "--filePath", "x"],
    "synthetic": ["-m", "facenerf.data.synthetic"],
    "talking_head": ["-m", "facenerf.tools.talking_head"],
    "process": ["data_utils/process.py", "video.mp4"],
    "video_evaluate": ["-m", "facenerf.tools.video_evaluate", "a", "b"],
    "core_demo": ["-m", "facenerf.tools.core_demo"],
}


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def _assert_one_line_error(proc, pattern):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert pattern in lines[-1], lines[-1]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_wrong_config_key_and_missing_config_file(name, tmp_path):
    script = COMMANDS[name]
    first = [str(ROOT / script[0])] + script[1:] if script[0].endswith(".py") else script
    bad = tmp_path / "bad.txt"
    bad.write_text("# a typo in a key\nprogres = false\n")
    _assert_one_line_error(_run([*first, "-c", str(bad)], tmp_path), "unknown key 'progres'")
    _assert_one_line_error(_run([*first, "-c", str(tmp_path / "missing.txt")], tmp_path), "config file not found")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _run(["-m", "facenerf.tools.core_demo", "--out", str(blocker / "out")], tmp_path)
    _assert_one_line_error(proc, "cannot write to output directory")
    proc = _run(["-m", "facenerf.data.synthetic", "--ids", "1", "--out", str(blocker / "data")], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("option, value", [("--corner_window", "-0.1"), ("--max_follow", "-1"),
                                           ("--jpeg_quality", "0"), ("--fps", "0")])
def test_process_refuses_an_out_of_range_option_before_reading_the_video(option, value, tmp_path):
    video = tmp_path / "vids" / "clip.mp4"                # absent: the option is refused first
    proc = _run([str(ROOT / "data_utils" / "process.py"), str(video), option, value,
                 "--out", str(tmp_path / "out")], tmp_path)
    _assert_one_line_error(proc, f"{option} must be")
    assert not (tmp_path / "out").exists()
