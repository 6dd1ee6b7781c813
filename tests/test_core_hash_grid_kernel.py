"""The optional Triton hash-grid kernel against the PyTorch path, in values and gradients.

Skipped where triton is not installed (it is not a requirement; CI has none). On the CPU the
kernel runs under Triton's interpreter in a subprocess, so ``TRITON_INTERPRET`` never reaches
other tests. The CUDA test needs a GPU visible to the suite: conftest hides GPUs unless
``CUDA_VISIBLE_DEVICES`` is set, e.g. ``CUDA_VISIBLE_DEVICES=0 pytest tests/test_core_hash_grid_kernel.py``.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenerf.core import backends

HERE = Path(__file__).resolve().parent
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (optional CUDA accelerator)")


@needs_triton
def test_kernel_matches_torch_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(HERE / "hash_grid_kernel_checks.py"), "cpu"], capture_output=True,
                            text=True, timeout=300, cwd=HERE.parent, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checks passed on cpu" in result.stdout


@needs_triton
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU visible to the suite (set CUDA_VISIBLE_DEVICES)")
def test_kernel_matches_torch_on_cuda():
    assert os.environ.get("TRITON_INTERPRET", "") != "1", "run the CUDA test without TRITON_INTERPRET"
    assert backends.hash_grid_kernel("auto", "cuda") is not None  # chosen automatically on CUDA
    sys.path.insert(0, str(HERE))
    try:
        import hash_grid_kernel_checks
    finally:
        sys.path.remove(str(HERE))
    hash_grid_kernel_checks.run("cuda")
