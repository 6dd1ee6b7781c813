"""Triton multiresolution hash-grid lookup from per-frame tables: forward and table gradient.

Same layout and semantics as :func:`facenerf.core.encodings.hash_grid_encode` (the reference,
and the CPU path): per level ``p = clamp(x, 0, 1) * scale_l + 0.5``, the 8 vertices of the
cell around ``p`` looked up densely (``c_0 + c_1 V + c_2 V^2``, ``V = R_l + 1``) where the level
fits its table, otherwise through the XOR hash ``c_0 ^ c_1 * 2654435761 ^ c_2 * 805459861``
(uint32 wrap-around) masked to the power-of-two level size; trilinear weights; points with a
coordinate outside [0, 1] get zeros and no gradient. Each point reads the table of its frame,
``tables[frame_index[n]]`` (NeRFBlendShape's per-frame blended tables).

One program handles ``BLOCK_N`` points of one level; consecutive programs take the levels of
the same points. Positions, weights and sums are fp32, in the PyTorch path's operation order and
without fused multiply-adds, so on fp32 tables the features equal the PyTorch path's (bitwise
on an H200 at the official sizes). Tables may be fp16/bf16: gathered as such, accumulated in
fp32, output in the table dtype. Index arithmetic is int32 unless an offset could reach 2^31.
The backward pass scatter-adds ``weight * grad_out`` into an fp32 gradient buffer with atomics.
The gradient with respect to ``x`` is not computed (the PyTorch path provides it): callers
that need it must use the PyTorch path, which ``facenerf.core.backends`` arranges.

Only ``facenerf.core.backends`` imports this module, and only on request: it imports triton.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from facenerf.core.encodings import HASH_PRIMES, HashGridMeta

BLOCK_N = 128  # points per program
NUM_WARPS = 4
_INT32_LIMIT = 2**31

assert HASH_PRIMES[:3] == (1, 2654435761, 805459861)  # the constants written in _corner below


@triton.jit
def _cell(x_ptr, pts, live, scale):
    """Lower cell vertex (int32) and fractions (fp32) of each point, and whether it is in the box."""
    x0 = tl.load(x_ptr + pts * 3, mask=live, other=0.0).to(tl.float32)
    x1 = tl.load(x_ptr + pts * 3 + 1, mask=live, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + pts * 3 + 2, mask=live, other=0.0).to(tl.float32)
    inside = live & (x0 >= 0.0) & (x0 <= 1.0) & (x1 >= 0.0) & (x1 <= 1.0) & (x2 >= 0.0) & (x2 <= 1.0)
    p0 = tl.minimum(tl.maximum(x0, 0.0), 1.0) * scale + 0.5
    p1 = tl.minimum(tl.maximum(x1, 0.0), 1.0) * scale + 0.5
    p2 = tl.minimum(tl.maximum(x2, 0.0), 1.0) * scale + 0.5
    g0, g1, g2 = tl.floor(p0), tl.floor(p1), tl.floor(p2)
    return inside, g0.to(tl.int32), g1.to(tl.int32), g2.to(tl.int32), p0 - g0, p1 - g1, p2 - g2


@triton.jit
def _corner(c0, c1, c2, f0, f1, f2, verts, size_mask, hashed, CORNER: tl.constexpr):
    """Row inside the level (uint32) and trilinear weight of one cell corner (bit d = dim d)."""
    u0 = (c0 + (CORNER & 1)).to(tl.uint32)
    u1 = (c1 + ((CORNER >> 1) & 1)).to(tl.uint32)
    u2 = (c2 + ((CORNER >> 2) & 1)).to(tl.uint32)
    if CORNER & 1:
        weight = f0
    else:
        weight = 1.0 - f0
    if (CORNER >> 1) & 1:
        weight = weight * f1
    else:
        weight = weight * (1.0 - f1)
    if (CORNER >> 2) & 1:
        weight = weight * f2
    else:
        weight = weight * (1.0 - f2)
    hashed_row = (u0 ^ (u1 * 2654435761) ^ (u2 * 805459861)) & size_mask
    dense_row = u0 + u1 * verts + u2 * (verts * verts)
    return tl.where(hashed, hashed_row, dense_row), weight


@triton.jit
def _program_setup(x_ptr, frame_ptr, scale_ptr, verts_ptr, offset_ptr, mask_ptr, hashed_ptr,
                   n_points, frame_rows, N_LEVELS: tl.constexpr, BLOCK: tl.constexpr,
                   HAS_FRAMES: tl.constexpr, WIDE: tl.constexpr):
    """This program's level, points, cell, and the first table row of each point's level."""
    pid = tl.program_id(0)
    level = pid % N_LEVELS
    pts = (pid // N_LEVELS) * BLOCK + tl.arange(0, BLOCK)
    if WIDE:
        pts = pts.to(tl.int64)
    live = pts < n_points
    inside, c0, c1, c2, f0, f1, f2 = _cell(x_ptr, pts, live, tl.load(scale_ptr + level))
    first_row = tl.load(offset_ptr + level) + tl.zeros([BLOCK], tl.int32)
    if WIDE:
        first_row = first_row.to(tl.int64)
    if HAS_FRAMES:
        frame = tl.load(frame_ptr + pts, mask=inside, other=0)
        if WIDE:
            first_row += frame.to(tl.int64) * frame_rows
        else:
            first_row += frame.to(tl.int32) * frame_rows
    verts = tl.load(verts_ptr + level).to(tl.uint32)
    size_mask = tl.load(mask_ptr + level).to(tl.uint32)
    hashed = tl.load(hashed_ptr + level) != 0
    return level, pts, live, inside, first_row, c0, c1, c2, f0, f1, f2, verts, size_mask, hashed


@triton.jit
def _hash_grid_forward(x_ptr, frame_ptr, table_ptr, out_ptr,
                       scale_ptr, verts_ptr, offset_ptr, mask_ptr, hashed_ptr, n_points, frame_rows,
                       N_LEVELS: tl.constexpr, F: tl.constexpr, F_POW2: tl.constexpr,
                       BLOCK: tl.constexpr, HAS_FRAMES: tl.constexpr, WIDE: tl.constexpr):
    level, pts, live, inside, first_row, c0, c1, c2, f0, f1, f2, verts, size_mask, hashed = _program_setup(
        x_ptr, frame_ptr, scale_ptr, verts_ptr, offset_ptr, mask_ptr, hashed_ptr,
        n_points, frame_rows, N_LEVELS, BLOCK, HAS_FRAMES, WIDE)
    feat = tl.arange(0, F_POW2)
    load_mask = inside[:, None] & (feat < F)[None, :]
    acc = tl.zeros([BLOCK, F_POW2], tl.float32)
    for corner in tl.static_range(8):
        row, weight = _corner(c0, c1, c2, f0, f1, f2, verts, size_mask, hashed, corner)
        if WIDE:
            row = row.to(tl.int64)
        else:
            row = row.to(tl.int32)
        values = tl.load(table_ptr + (first_row + row)[:, None] * F + feat[None, :], mask=load_mask, other=0.0)
        acc += weight[:, None] * values.to(tl.float32)
    out_offsets = pts[:, None] * (N_LEVELS * F) + level * F + feat[None, :]
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=live[:, None] & (feat < F)[None, :])


@triton.jit
def _hash_grid_backward(x_ptr, frame_ptr, grad_out_ptr, grad_table_ptr,
                        scale_ptr, verts_ptr, offset_ptr, mask_ptr, hashed_ptr, n_points, frame_rows,
                        N_LEVELS: tl.constexpr, F: tl.constexpr, F_POW2: tl.constexpr,
                        BLOCK: tl.constexpr, HAS_FRAMES: tl.constexpr, WIDE: tl.constexpr):
    level, pts, live, inside, first_row, c0, c1, c2, f0, f1, f2, verts, size_mask, hashed = _program_setup(
        x_ptr, frame_ptr, scale_ptr, verts_ptr, offset_ptr, mask_ptr, hashed_ptr,
        n_points, frame_rows, N_LEVELS, BLOCK, HAS_FRAMES, WIDE)
    feat = tl.arange(0, F_POW2)
    mask = inside[:, None] & (feat < F)[None, :]
    grad = tl.load(grad_out_ptr + pts[:, None] * (N_LEVELS * F) + level * F + feat[None, :], mask=mask, other=0.0)
    grad = grad.to(tl.float32)
    for corner in tl.static_range(8):
        row, weight = _corner(c0, c1, c2, f0, f1, f2, verts, size_mask, hashed, corner)
        if WIDE:
            row = row.to(tl.int64)
        else:
            row = row.to(tl.int32)
        tl.atomic_add(grad_table_ptr + (first_row + row)[:, None] * F + feat[None, :],
                      weight[:, None] * grad, mask=mask, sem="relaxed")


@functools.lru_cache(maxsize=32)
def _level_arrays(meta: HashGridMeta, device: torch.device) -> tuple[Tensor, ...]:
    """Per-level constants on ``device``: scale (fp32), V = R + 1, first row, size - 1, hashed."""
    return (
        torch.tensor(meta.level_scales, dtype=torch.float32, device=device),
        torch.tensor([r + 1 for r in meta.level_resolutions], dtype=torch.int64, device=device),
        torch.tensor(meta.level_offsets, dtype=torch.int32, device=device),
        torch.tensor([s - 1 for s in meta.level_sizes], dtype=torch.int64, device=device),
        torch.tensor([int(h) for h in meta.hashed], dtype=torch.int32, device=device),
    )


def _launch(kernel, x: Tensor, frames: Tensor | None, first: Tensor, second: Tensor,
            meta: HashGridMeta, n_tables: int) -> None:
    """Run one of the two kernels over all (point block, level) programs."""
    n_points, n_feat = x.shape[0], meta.n_features
    wide = max(n_tables * meta.table_rows * n_feat, n_points * meta.out_dim, 3 * n_points) >= _INT32_LIMIT
    grid = (triton.cdiv(n_points, BLOCK_N) * meta.n_levels,)
    kernel[grid](
        x, frames if frames is not None else x, first, second, *_level_arrays(meta, x.device),
        n_points, meta.table_rows,
        N_LEVELS=meta.n_levels, F=n_feat, F_POW2=triton.next_power_of_2(n_feat), BLOCK=BLOCK_N,
        HAS_FRAMES=frames is not None, WIDE=wide, num_warps=NUM_WARPS, enable_fp_fusion=False,
    )


class _FrameTableLookup(torch.autograd.Function):
    """x [N, 3], tables [B, P, F], frame_index [N] or None -> [N, L*F]; gradient to tables only."""

    @staticmethod
    def forward(ctx, x: Tensor, tables: Tensor, frame_index: Tensor | None, meta: HashGridMeta) -> Tensor:
        out = torch.empty(x.shape[0], meta.out_dim, dtype=tables.dtype, device=x.device)  # [N, L*F]
        if x.shape[0]:
            _launch(_hash_grid_forward, x, frame_index, tables, out, meta, tables.shape[0])
        ctx.save_for_backward(x, frame_index)
        ctx.meta, ctx.table_shape, ctx.table_dtype = meta, tables.shape, tables.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, frame_index = ctx.saved_tensors
        grad_tables = None
        if ctx.needs_input_grad[1]:
            grad_tables = torch.zeros(ctx.table_shape, dtype=torch.float32, device=x.device)  # [B, P, F]
            if x.shape[0]:
                _launch(_hash_grid_backward, x, frame_index, grad_out.contiguous(), grad_tables,
                        ctx.meta, ctx.table_shape[0])
            grad_tables = grad_tables.to(ctx.table_dtype)
        return None, grad_tables, None, None


def encode_frames(x: Tensor, tables: Tensor, meta: HashGridMeta, frame_index: Tensor | None = None) -> Tensor:
    """Hash-grid features of ``x`` [N, 3] in [0, 1]^3 read from ``tables`` [B, P, F]
    (``tables[frame_index[n]]`` for point n; ``frame_index`` [N] integer, or None when B = 1)
    -> [N, L*F] in the tables' dtype. Differentiable with respect to ``tables`` only.
    """
    if meta.in_dim != 3 or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"the Triton hash-grid kernel is 3-D only: x {tuple(x.shape)}, grid D={meta.in_dim}")
    if tables.dim() != 3 or tables.shape[1:] != (meta.table_rows, meta.n_features):
        raise ValueError(f"tables {tuple(tables.shape)} must be [B, {meta.table_rows}, {meta.n_features}]")
    if frame_index is None and tables.shape[0] != 1:
        raise ValueError(f"{tables.shape[0]} tables need a frame_index per point")
    if frame_index is not None:
        frame_index = frame_index.contiguous()
    return _FrameTableLookup.apply(x.contiguous(), tables.contiguous(), frame_index, meta)
