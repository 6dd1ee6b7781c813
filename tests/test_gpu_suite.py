"""benchmarks/gpu_suite.sh: the order of the parts, the model handed from render to fit, the CUDA
tests' selection and data, failures that do not stop the suite, packing. A stand-in interpreter
records each command instead of running the tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"

# Records its arguments (and, for pytest, two variables); writes a result file into --out and the
# --save_model file; fails for fit.
FAKE_PYTHON = r"""#!/usr/bin/env bash
if [ "$1" = "-" ]; then cat >/dev/null; echo "stand-in python"; exit 0; fi
if [ "$1" = "-m" ]; then
  echo "$* | CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES FACENERF_TEST_TALK=${FACENERF_TEST_TALK:-}" >>"$CALLS"
  exit 0
fi
echo "$*" >>"$CALLS"
out=""; model=""
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift;;
    --save_model) model=$2; shift;;
  esac
  shift
done
[ -n "$model" ] && echo weights >"$model"
echo '{}' >"$out/result_$RANDOM.json"
case "$(tail -n 1 "$CALLS")" in
  *fit_speed.py*) echo "error: the fit broke" >&2; exit 3;;
esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_suite(tmp_path: Path, *parts: str, **env_extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.touch()
    env = dict(os.environ, PYTHON=str(fake), CALLS=str(calls), MODEL=str(tmp_path / "model.pt"),
               WHEELS=str(tmp_path / "no_wheels"), TALK_DATA=str(tmp_path / "no_talk"),
               TEST_TALK=str(tmp_path / "no_test_talk"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(env_extra)
    proc = subprocess.run(["bash", str(SUITE), str(tmp_path / "out"), *parts], env=env, capture_output=True,
                          text=True, timeout=60)
    return proc, calls.read_text().splitlines()


def test_usage_without_arguments():
    proc = subprocess.run(["bash", str(SUITE)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "OUT" in proc.stdout and "PART" in proc.stdout


def test_parts_in_order_model_handed_on_failure_logged(tmp_path):
    proc, calls = run_suite(tmp_path, MOFANERF_TRAIN_S="7", BLENDSHAPE_TRAIN_S="9")
    assert proc.returncode == 0, proc.stderr
    assert [c.split()[0] for c in calls] == ["-m", "benchmarks/mofanerf_render.py", "benchmarks/fit_speed.py",
                                             "benchmarks/blendshape_speed.py"]
    tests, render, fit, blend = calls
    assert tests.startswith("-m pytest") and " -m cuda " in tests and tests.split(" | ")[0].endswith(" tests")
    assert "CUDA_VISIBLE_DEVICES=0 " in tests and tests.endswith("FACENERF_TEST_TALK=")  # GPU 0; no test data
    assert "--device cuda" in render and "--train_seconds 7" in render
    assert f"--save_model {tmp_path / 'model.pt'}" in render
    assert f"--ckpt {tmp_path / 'model.pt'}" in fit and "--train_seconds" not in fit  # reuses render's model
    assert "--train_seconds 9" in blend and "--data" not in blend  # no dataset: the benchmark renders one
    log = (tmp_path / "out" / "suite.log").read_text()
    assert "fit: exit 3" in log and "the fit broke" in log  # the failure is logged ...
    assert "blendshape: exit 0" in log and log.rstrip().endswith("done")  # ... and the suite goes on
    assert len(list((tmp_path / "out").glob("result_*.json"))) == 3


def test_fit_alone_trains_its_own_model_and_datasets_are_used(tmp_path):
    (tmp_path / "talk").mkdir()
    (tmp_path / "test_talk").mkdir()
    _, calls = run_suite(tmp_path, "fit", "blendshape", "tests", "nonsense", TALK_DATA=str(tmp_path / "talk"),
                         TEST_TALK=str(tmp_path / "test_talk"), DEVICE="cpu", CUDA_VISIBLE_DEVICES="3")
    fit, blend, tests = calls
    assert "--ckpt" not in fit and "--train_seconds 60" in fit and "--device cpu" in fit
    assert f"--data {tmp_path / 'talk'}" in blend
    assert tests.endswith(f"CUDA_VISIBLE_DEVICES=3 FACENERF_TEST_TALK={tmp_path / 'test_talk'}")
    assert "unknown part 'nonsense'" in (tmp_path / "out" / "suite.log").read_text()


def test_pack_puts_each_part_in_one_archive(tmp_path):
    proc, calls = run_suite(tmp_path, "tests", "render", "fit", PACK="1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert f"--junitxml {out / 'tests' / 'cuda_tests.xml'}" in calls[0]
    assert sorted(p.name for p in out.iterdir()) == ["fit.tar.gz", "render.tar.gz", "suite.log", "tests.tar.gz"]
    with tarfile.open(out / "render.tar.gz") as tar:
        names = tar.getnames()
    assert "render/render.log" in names and any(n.startswith("render/result_") for n in names)
