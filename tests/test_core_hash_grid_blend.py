"""Per-frame and expression-blended hash-grid lookups (pure PyTorch) and the implementation switch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenerf.core import backends
from facenerf.core.encodings import (
    blend_tables,
    blended_hash_grid_encode,
    encode_hash_grid,
    hash_grid_encode,
    hash_grid_encode_frames,
    make_hash_grid_meta,
)
from facenerf.errors import FaceNerfError


def _setup(n_tables=4, n_frames=3, n_points=30, seed=0):
    meta = make_hash_grid_meta(3, n_levels=3, n_features=2, log2_table_size=7, base_resolution=2, max_resolution=12)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_points, 3, generator=gen, dtype=torch.float64)
    x[0] = torch.tensor([0.5, 1.3, 0.5], dtype=torch.float64)  # out of the box
    tables = torch.randn(n_tables, meta.table_rows, 2, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(n_frames, n_tables, generator=gen, dtype=torch.float64)
    frames = torch.randint(0, n_frames, (n_points,), generator=gen)
    return meta, x, tables, coeffs, frames


def test_blended_lookup_is_the_coefficient_weighted_sum_of_per_table_lookups():
    meta, x, tables, coeffs, frames = _setup()
    assert any(meta.hashed) and not all(meta.hashed)
    out = blended_hash_grid_encode(x, tables, coeffs, frames, meta)
    per_table = torch.stack([hash_grid_encode(x, tables[k], meta) for k in range(tables.shape[0])])  # [K+1, N, LF]
    expected = torch.einsum("nk,knc->nc", coeffs[frames], per_table)
    assert out.shape == (x.shape[0], meta.out_dim)
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.equal(out[0], torch.zeros(meta.out_dim, dtype=torch.float64))


def test_blended_gradients_are_the_per_table_features_and_the_frame_coefficients():
    meta, x, tables, coeffs, frames = _setup(seed=1)
    tables.requires_grad_(True)
    coeffs.requires_grad_(True)
    upstream = torch.randn(x.shape[0], meta.out_dim, dtype=torch.float64)
    (blended_hash_grid_encode(x, tables, coeffs, frames, meta) * upstream).sum().backward()
    per_table = torch.stack([hash_grid_encode(x, tables[k].detach(), meta) for k in range(tables.shape[0])])
    for frame in range(coeffs.shape[0]):  # d/d e_bk = sum over frame b's points of upstream . enc_k
        mine = frames == frame
        assert torch.allclose(coeffs.grad[frame], (per_table[:, mine] * upstream[mine]).sum((1, 2)), atol=1e-10)
    # d/d H_k = sum_b e_bk * (gradient of the lookup of frame b's points into one table)
    probe = tables.detach()[0].clone().requires_grad_(True)
    expected = torch.zeros_like(tables)
    for frame in range(coeffs.shape[0]):
        mine = frames == frame
        (grad,) = torch.autograd.grad((hash_grid_encode(x[mine], probe, meta) * upstream[mine]).sum(), probe)
        expected += coeffs.detach()[frame][:, None, None] * grad
    assert torch.allclose(tables.grad, expected, atol=1e-10)


def test_per_frame_tables_read_each_points_own_table():
    meta, x, tables, _, frames = _setup(seed=2)
    out = hash_grid_encode_frames(x, tables[:3], frames, meta)
    for n in range(x.shape[0]):
        assert torch.allclose(out[n], hash_grid_encode(x[n : n + 1], tables[frames[n]], meta)[0], atol=1e-12)
    assert torch.equal(blend_tables(tables, torch.eye(4, dtype=torch.float64)[[2, 0]]), tables[[2, 0]])


def test_hash_indices_and_interpolation_match_hand_computed_values():
    # One dense level (R = 2: 3^3 = 27 <= 32 rows) and one hashed level (R = 5: 216 > 32).
    meta = make_hash_grid_meta(3, n_levels=2, n_features=1, log2_table_size=5, base_resolution=2, max_resolution=5)
    assert meta.level_resolutions == (2, 5) and meta.hashed == (False, True)
    assert meta.level_offsets == (0, 27) and meta.table_rows == 59
    table = torch.arange(59, dtype=torch.float64)[:, None] ** 2  # row i holds i^2
    x = torch.tensor([[0.25, 0.75, 0.5]], dtype=torch.float64)
    # Level 0: scale 1, p = (0.75, 1.25, 1.0): cell (0, 1, 1), fractions (0.75, 0.25, 0);
    # dense rows c0 + 3 c1 + 9 c2 of the 4 corners with weight: 12, 13, 15, 16.
    level0 = 0.25 * 0.75 * 12**2 + 0.75 * 0.75 * 13**2 + 0.25 * 0.25 * 15**2 + 0.75 * 0.25 * 16**2
    # Level 1: scale 4, p = (1.5, 3.5, 2.5): cell (1, 3, 2), all fractions 0.5, weight 1/8 each.
    # Hash (c0 ^ c1 * 2654435761 ^ c2 * 805459861) mod 2^32 & 31, computed by hand:
    # 3 * 2654435761 = 7963307283 -> mod 2^32 = 3668339987, & 31 = 19; 4 * 2654435761 & 31 = 4;
    # 2 * 805459861 & 31 = 10; 3 * 805459861 & 31 = 31.
    rows = [(c0 ^ a ^ b) for b in (10, 31) for a in (19, 4) for c0 in (1, 2)]
    assert rows == [1 ^ 19 ^ 10, 2 ^ 19 ^ 10, 1 ^ 4 ^ 10, 2 ^ 4 ^ 10, 1 ^ 19 ^ 31, 2 ^ 19 ^ 31, 1 ^ 4 ^ 31, 2 ^ 4 ^ 31]
    level1 = sum((27 + r) ** 2 for r in rows) / 8
    out = hash_grid_encode(x, table, meta)
    assert torch.allclose(out, torch.tensor([[level0, level1]], dtype=torch.float64), atol=1e-12)
    blended = blended_hash_grid_encode(x, torch.stack([table, 2 * table]), torch.tensor([[0.5, 1.0]], dtype=torch.float64),
                                       None, meta)
    assert torch.allclose(blended, 2.5 * out, atol=1e-12)


def test_frame_index_is_checked():
    meta, x, tables, coeffs, frames = _setup()
    with pytest.raises(ValueError, match="frame_index"):
        blended_hash_grid_encode(x, tables, coeffs, None, meta)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        blended_hash_grid_encode(x, tables, coeffs, torch.full_like(frames, 3), meta)
    with pytest.raises(ValueError, match="integer"):
        blended_hash_grid_encode(x, tables, coeffs, frames.double(), meta)
    with pytest.raises(ValueError, match="coefficients"):
        blend_tables(tables, coeffs[:, :2])


def test_implementation_switch_on_cpu(monkeypatch):
    meta, x, tables, _, frames = _setup()
    reference = hash_grid_encode_frames(x, tables[:3], frames, meta)
    for impl in ("auto", "torch"):
        assert torch.equal(encode_hash_grid(x, tables[:3], meta, frames, implementation=impl), reference)
    assert torch.equal(encode_hash_grid(x, tables[1], meta), hash_grid_encode(x, tables[1], meta))
    assert backends.hash_grid_kernel("auto", "cpu") is None
    with pytest.raises(FaceNerfError, match="unknown hash-grid implementation"):
        encode_hash_grid(x, tables[1], meta, implementation="cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(backends, "_installed", lambda module: True)
    with pytest.raises(FaceNerfError, match="needs CUDA.*implementation = torch"):
        encode_hash_grid(x, tables[1], meta, implementation="triton")
    monkeypatch.setattr(backends, "_installed", lambda module: False)
    with pytest.raises(FaceNerfError, match="triton is not installed"):
        backends.hash_grid_kernel("triton", "cuda")
    assert backends.hash_grid_kernel("auto", "cuda") is None


def test_kernel_refuses_what_it_does_not_compute(monkeypatch):
    monkeypatch.setattr(backends, "_installed", lambda module: True)
    with pytest.raises(FaceNerfError, match="no gradient with respect to the points"):
        backends.hash_grid_kernel("triton", "cuda", x_grad=True)
    with pytest.raises(FaceNerfError, match="3-D grids only"):
        backends.hash_grid_kernel("triton", "cuda", in_dim=2)
    for kwargs in (dict(x_grad=True), dict(in_dim=2)):  # auto falls back to the PyTorch path
        assert backends.hash_grid_kernel("auto", "cuda", **kwargs) is None


def test_torch_path_never_imports_triton():
    code = (
        "import sys, torch\n"
        "from facenerf.core.encodings import blended_hash_grid_encode, encode_hash_grid, make_hash_grid_meta\n"
        "meta = make_hash_grid_meta(3, 2, 2, 6, 2, 6)\n"
        "x = torch.rand(5, 3)\n"
        "encode_hash_grid(x, torch.rand(meta.table_rows, 2), meta, implementation='auto')\n"
        "blended_hash_grid_encode(x, torch.rand(2, meta.table_rows, 2), torch.rand(1, 2), None, meta, 'auto')\n"
        "assert 'triton' not in sys.modules, 'triton imported'\n"
        "assert 'facenerf.core.kernels.hash_grid_triton' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], env=env)
    assert result.returncode == 0, result.stderr
