"""Backends: pure PyTorch always available; accelerators never imported unless asked."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenerf.core import backends
from facenerf.errors import FaceNerfError


def test_torch_is_always_available_and_default():
    report = backends.available_backends()
    assert report["torch"]["available"] is True
    assert all(isinstance(report[name]["available"], bool) for name in ("tcnn", "triton"))
    assert backends.resolve_backend("torch") == "torch"
    assert backends.resolve_backend("auto") in ("torch", "tcnn", "triton")


def test_unusable_or_unknown_backend_is_a_user_error(monkeypatch):
    monkeypatch.setattr(backends, "_installed", lambda module: False)
    with pytest.raises(FaceNerfError, match="backend = torch"):
        backends.resolve_backend("tcnn")
    with pytest.raises(FaceNerfError, match="unknown backend"):
        backends.resolve_backend("cuda-magic")
    with pytest.raises(FaceNerfError):
        backends.load_backend("torch")
    assert backends.resolve_backend("auto") == "torch"


def test_importing_the_core_has_no_side_effects():
    code = (
        "import sys, torch\n"
        "state = torch.random.get_rng_state().clone()\n"
        "import facenerf.core.cameras, facenerf.core.rays, facenerf.core.encodings, facenerf.core.mlp\n"
        "import facenerf.core.volume_rendering, facenerf.core.samplers, facenerf.core.occupancy_grid\n"
        "import facenerf.core.renderer, facenerf.core.backends\n"
        "assert torch.equal(state, torch.random.get_rng_state()), 'RNG touched at import'\n"
        "assert not {'tinycudann', 'triton'} & set(sys.modules), 'accelerator imported eagerly'\n"
        "assert torch.get_default_dtype() == torch.float32\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_hash_grid_encoding_takes_an_implementation_field():
    from facenerf.core.encodings import HashGridEncoding, hash_grid_encode

    enc = HashGridEncoding(n_levels=2, log2_table_size=8, max_resolution=32, init_scale=0.1)
    assert enc.implementation == "auto"  # torch on a CPU, the kernel for CUDA tensors
    x = torch.rand(50, 3)
    torch.testing.assert_close(enc(x), hash_grid_encode(x, enc.embeddings, enc.meta), rtol=0, atol=0)
    with pytest.raises(FaceNerfError, match="unknown hash-grid implementation"):
        HashGridEncoding(implementation="cuda-magic")
