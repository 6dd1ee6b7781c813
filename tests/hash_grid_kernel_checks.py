"""Checks of the Triton hash-grid lookup against the PyTorch path, in values and gradients.

Run by ``test_core_hash_grid_kernel.py``: on CPU tensors in a subprocess with
``TRITON_INTERPRET=1`` (so the variable never reaches other tests), and on CUDA in-process.
``python tests/hash_grid_kernel_checks.py cpu|cuda`` runs them by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.core.encodings import (  # noqa: E402
    blended_hash_grid_encode, encode_hash_grid, hash_grid_encode, make_hash_grid_meta)


def _points(n: int, gen: torch.Generator, device: str) -> torch.Tensor:
    """n random points in the unit cube plus the two corners and three points outside -> [n+5, 3]."""
    inside = torch.rand(n, 3, generator=gen)
    special = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.2, 0.5, 0.5], [0.5, -0.01, 0.5], [0.3, 0.3, 1.5]])
    return torch.cat([inside, special]).to(device)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    err = float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0
    assert a.shape == b.shape and err <= atol, f"{what}: shapes {tuple(a.shape)}/{tuple(b.shape)}, max error {err:.3g}"


def check_per_frame_tables(device: str, n_points: int, n_features: int, meta_args: dict) -> None:
    """Per-frame tables [B, P, F] with a frame index: values and table gradients, fp32."""
    meta = make_hash_grid_meta(3, n_features=n_features, **meta_args)
    assert any(meta.hashed) and not all(meta.hashed)
    gen = torch.Generator().manual_seed(n_points + n_features)
    x = _points(n_points, gen, device)
    tables = torch.randn(3, meta.table_rows, n_features, generator=gen).to(device)  # [B, P, F]
    frames = torch.randint(0, 3, (x.shape[0],), generator=gen).to(device)
    upstream = torch.randn(x.shape[0], meta.out_dim, generator=gen).to(device)
    results = {}
    for impl in ("torch", "triton"):
        leaf = tables.clone().requires_grad_(True)
        out = encode_hash_grid(x, leaf, meta, frames, implementation=impl)
        (grad,) = torch.autograd.grad((out * upstream).sum(), leaf)
        results[impl] = (out.detach(), grad)
    _close(results["triton"][0], results["torch"][0], 1e-6, "per-frame values")
    _close(results["triton"][1], results["torch"][1], 1e-4, "per-frame table gradient")
    assert torch.equal(results["triton"][0][-3:], torch.zeros(3, meta.out_dim, device=device)), "out of box"
    single = encode_hash_grid(x, tables[1], meta, implementation="triton")  # one table, no index
    _close(single, hash_grid_encode(x, tables[1], meta), 1e-6, "single-table values")


def check_blended(device: str, n_points: int, meta_args: dict) -> None:
    """Blended expression tables: values and gradients to tables and coefficients."""
    meta = make_hash_grid_meta(3, n_features=2, **meta_args)
    gen = torch.Generator().manual_seed(7)
    x = _points(n_points, gen, device)
    tables = (torch.randn(5, meta.table_rows, 2, generator=gen) * 0.1).to(device)  # [K+1, P, F]
    coeffs = torch.rand(2, 5, generator=gen).to(device)  # [B, K+1]
    frames = torch.randint(0, 2, (x.shape[0],), generator=gen).to(device)
    upstream = torch.randn(x.shape[0], meta.out_dim, generator=gen).to(device)
    results = {}
    for impl in ("torch", "triton"):
        leaves = (tables.clone().requires_grad_(True), coeffs.clone().requires_grad_(True))
        out = blended_hash_grid_encode(x, *leaves, frames, meta, implementation=impl)
        results[impl] = (out.detach(), *torch.autograd.grad((out * upstream).sum(), leaves))
    for k, what in enumerate(("blended values", "expression-table gradient", "coefficient gradient")):
        _close(results["triton"][k], results["torch"][k], 1e-5 if k else 1e-6, what)


def check_half_tables(device: str, dtype: torch.dtype) -> None:
    """fp16/bf16 tables: gathered in their dtype, accumulated in fp32 -> close to the fp32 lookup."""
    meta = make_hash_grid_meta(3, n_levels=3, n_features=4, log2_table_size=8, base_resolution=3, max_resolution=24)
    gen = torch.Generator().manual_seed(3)
    x = _points(20, gen, device)
    tables = torch.randn(1, meta.table_rows, 4, generator=gen).to(device)
    low = tables.to(dtype).requires_grad_(True)
    out = encode_hash_grid(x, low, meta, implementation="triton")
    assert out.dtype == dtype
    _close(out, encode_hash_grid(x, low.detach().float(), meta, implementation="torch"), 2e-2, f"{dtype} values")
    out.float().sum().backward()
    assert low.grad is not None and low.grad.dtype == dtype


def run(device: str) -> None:
    small = dict(n_levels=4, log2_table_size=8, base_resolution=3, max_resolution=40)
    check_per_frame_tables(device, 24, 2, small)
    check_per_frame_tables(device, 24, 3, small)  # F not a power of two
    check_blended(device, 24, small)
    check_half_tables(device, torch.float16)
    if device == "cuda":  # the official NeRFBlendShape layout, many points
        official = dict(n_levels=16, log2_table_size=14, base_resolution=16, max_resolution=1024)
        check_per_frame_tables(device, 4096, 4, official)
        check_blended(device, 4096, official)
        check_half_tables(device, torch.bfloat16)
    print("hash-grid kernel checks passed on", device)


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "cpu")
