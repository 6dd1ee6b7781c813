"""Backends: the PyTorch reference is the default; accelerated lookups are chosen by name, lazily,
and agree with the reference in values and gradients."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenerf.core import backends
from facenerf.core.encodings import HashGridEncoding, hash_grid_encode
from facenerf.errors import FaceNerfError


def test_torch_is_always_available_and_default():
    report = backends.available_backends()
    assert report["torch"]["available"] is True
    assert isinstance(report["compiled"]["available"], bool)
    assert backends.resolve_implementation("torch") == "torch"
    assert backends.resolve_implementation("auto", "cpu") == "torch"  # compiled only on CUDA by default
    assert backends.hash_grid_function("torch") is hash_grid_encode
    assert HashGridEncoding(n_levels=2, log2_table_size=8, max_resolution=32).implementation == "torch"


def test_unusable_or_unknown_implementation_is_a_user_error(monkeypatch):
    with pytest.raises(FaceNerfError, match="unknown implementation"):
        HashGridEncoding(implementation="cuda-magic")
    monkeypatch.setattr(backends, "available_backends",
                        lambda: {"torch": {"available": True}, "compiled": {"available": False}})
    with pytest.raises(FaceNerfError, match="implementation = torch"):
        backends.resolve_implementation("compiled")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled lookup is checked on CUDA (compiling "
                    "it on a 2-core CPU takes longer than the whole suite should)")
def test_compiled_hash_grid_matches_the_reference_in_values_and_gradients():
    device = torch.device("cuda")
    torch.manual_seed(0)
    ref = HashGridEncoding(n_levels=8, n_features=2, log2_table_size=12, max_resolution=256, init_scale=0.1).to(device)
    fast = HashGridEncoding(n_levels=8, n_features=2, log2_table_size=12, max_resolution=256,
                            implementation="compiled").to(device)
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(5000, 3, device=device)
    out_ref, out_fast = ref(x), fast(x)
    torch.testing.assert_close(out_fast, out_ref, atol=1e-5, rtol=1e-4)
    (g_ref,) = torch.autograd.grad(out_ref.square().sum(), ref.embeddings)
    (g_fast,) = torch.autograd.grad(out_fast.square().sum(), fast.embeddings)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-4, rtol=1e-3)


def test_importing_the_core_has_no_side_effects():
    code = (
        "import sys, torch\n"
        "state = torch.random.get_rng_state().clone()\n"
        "import facenerf.core.cameras, facenerf.core.rays, facenerf.core.encodings, facenerf.core.mlp\n"
        "import facenerf.core.volume_rendering, facenerf.core.samplers, facenerf.core.occupancy_grid\n"
        "import facenerf.core.renderer, facenerf.core.backends, facenerf.core.fields, facenerf.core.packed\n"
        "assert torch.equal(state, torch.random.get_rng_state()), 'RNG touched at import'\n"
        "assert 'triton' not in sys.modules, 'accelerator imported eagerly'\n"
        "assert not facenerf.core.backends._COMPILED, 'compiled at import'\n"
        "assert torch.get_default_dtype() == torch.float32\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
