"""Input encodings: frequency (positional), real spherical harmonics, multiresolution hash grid.

All encoders are ``nn.Module`` with an ``out_dim`` attribute and map ``[N, in_dim]`` to
``[N, out_dim]``. The hash grid also exists as a pure function, :func:`hash_grid_encode`, so
that models holding several tables (e.g. blended expression tables) can reuse the lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facenerf.errors import FaceNerfError

# instant-ngp / torch-ngp spatial hash primes (one per input dimension, up to 7).
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


class FrequencyEncoding(nn.Module):
    """NeRF positional encoding without a pi factor.

    Output per point: ``[x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ...,
    sin(2^(n-1) x), cos(2^(n-1) x)]`` where every block covers all ``in_dim`` coordinates, so
    ``out_dim = in_dim * (include_input + 2 * n_freqs)``: 63 for xyz with 10 frequencies and
    27 for directions with 4 (the MoFaNeRF layout).
    """

    def __init__(self, in_dim: int, n_freqs: int, include_input: bool = True):
        super().__init__()
        self.in_dim = in_dim
        self.n_freqs = n_freqs
        self.include_input = include_input
        self.out_dim = in_dim * (int(include_input) + 2 * n_freqs)
        self.register_buffer(
            "freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False
        )  # [n_freqs]

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in_dim] -> [N, out_dim]."""
        scaled = x[:, None, :] * self.freqs.to(x.dtype)[None, :, None]  # [N, n_freqs, in_dim]
        pairs = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=2)  # [N, n, 2, in_dim]
        parts = [x] if self.include_input else []
        parts.append(pairs.flatten(1))  # flatten, not reshape(N, -1): N may be 0
        return torch.cat(parts, dim=-1)


def spherical_harmonics(dirs: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics of unit directions [N, 3] up to ``degree`` -> [N, degree**2].

    Basis ``l = 0 .. degree - 1`` with the sign convention of tiny-cuda-nn / torch-ngp; the
    functions are orthonormal over the unit sphere.
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"SH degree must be in 1..4, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


class SHEncoding(nn.Module):
    """Real spherical-harmonics encoding of unit directions (components in [-1, 1]).

    ``degree`` counts bands, so the output has ``degree**2`` channels (16 for degree 4).
    Unlike tiny-cuda-nn, inputs are the directions themselves, not ``(d + 1) / 2``.
    """

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError(f"SH degree must be in 1..4, got {degree}")
        self.degree = degree
        self.in_dim = 3
        self.out_dim = degree**2

    def forward(self, dirs: Tensor) -> Tensor:
        """dirs [N, 3] unit vectors -> [N, degree**2]."""
        return spherical_harmonics(dirs, self.degree)


@dataclass(frozen=True)
class HashGridMeta:
    """Static layout of a multiresolution hash grid; build it with :func:`make_hash_grid_meta`,
    which guarantees what :func:`hash_grid_encode` relies on: resolutions never decrease, so
    the dense levels come first and the hashed levels all hold ``2^log2_table_size`` rows,
    stored back to back."""

    in_dim: int
    n_features: int
    level_scales: tuple[float, ...]  # p = x * scale_l + 0.5 (vertex units)
    level_resolutions: tuple[int, ...]  # R_l = ceil(scale_l) + 1; vertices per axis = R_l + 1
    level_sizes: tuple[int, ...]  # table rows of level l = min(2^log2, (R_l + 1)^D)
    level_offsets: tuple[int, ...]  # first table row of level l
    hashed: tuple[bool, ...]  # True where the level uses the XOR hash

    @property
    def n_levels(self) -> int:
        return len(self.level_scales)

    @property
    def table_rows(self) -> int:
        """P, the total number of table rows over all levels."""
        return self.level_offsets[-1] + self.level_sizes[-1]

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features


def make_hash_grid_meta(
    in_dim: int = 3,
    n_levels: int = 16,
    n_features: int = 2,
    log2_table_size: int = 19,
    base_resolution: int = 16,
    max_resolution: int = 2048,
) -> HashGridMeta:
    """Level layout of the torch-ngp grid encoder.

    Per-level growth ``b = 2^(log2(max/base) / (L - 1))``; level ``l`` has
    ``scale_l = base * b^l - 1`` and resolution ``R_l = ceil(scale_l) + 1`` (= ceil(base * b^l)).
    A level is stored densely when its ``(R_l + 1)^D`` vertices fit in ``2^log2_table_size``
    rows, otherwise it is hashed into exactly ``2^log2_table_size`` rows.
    """
    if not 1 <= in_dim <= len(HASH_PRIMES):
        raise ValueError(f"hash grid input dimension must be 1..{len(HASH_PRIMES)}, got {in_dim}")
    if n_levels < 1 or base_resolution < 1 or max_resolution < base_resolution:
        raise ValueError("hash grid needs n_levels >= 1 and 1 <= base_resolution <= max_resolution")
    if not 1 <= log2_table_size <= 32:
        raise ValueError(f"log2_table_size must be in 1..32 (uint32 hash), got {log2_table_size}")
    log2_growth = math.log2(max_resolution / base_resolution) / max(n_levels - 1, 1)
    cap = 2**log2_table_size
    scales, resolutions, sizes, offsets, hashed = [], [], [], [], []
    offset = 0
    for level in range(n_levels):
        scale = base_resolution * 2.0 ** (level * log2_growth) - 1.0
        resolution = int(math.ceil(scale)) + 1
        dense_rows = (resolution + 1) ** in_dim
        size = min(cap, dense_rows)
        scales.append(scale)
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offset)
        hashed.append(dense_rows > cap)
        offset += size
    return HashGridMeta(
        in_dim, n_features, tuple(scales), tuple(resolutions), tuple(sizes), tuple(offsets), tuple(hashed)
    )


def _encode_levels(
    pos: Tensor, table: Tensor, mult: Tensor, bias: Tensor, hashed: bool, size_mask: int
) -> Tensor:
    """Trilinear lookup for a group of levels that are all dense or all hashed.

    pos [N, G, D] vertex-space positions; table [rows, F] the group's rows; mult [G, D] the
    per-dimension multiplier (dense strides ``(R_l + 1)^d``, or hash primes); bias [G] the
    first row of each level inside ``table``. Dense rows are ``bias + sum_d c_d * mult_d``.
    Hashed rows are ``bias XOR (XOR_d c_d * prime_d)`` with every product reduced modulo the
    (power-of-two) level size: the low bits of the uint32 product ``c_d * prime_d mod 2^32``
    that the modulo keeps, computed in int64; ``bias`` (= level * size) occupies only the bits
    above, so XOR adds it. Returns [N, G, F].
    """
    base = torch.floor(pos)
    frac = (pos - base).to(table.dtype)  # [N, G, D]
    base = base.long()
    dim = pos.shape[-1]
    terms = []  # per dimension: (lower, upper) vertex contribution, [N, G] each
    for d in range(dim):
        lower = base[..., d] * mult[:, d]
        upper = lower + mult[:, d]
        if hashed:
            lower, upper = lower & size_mask, upper & size_mask
        if d == 0:
            lower, upper = (lower ^ bias, upper ^ bias) if hashed else (lower + bias, upper + bias)
        terms.append((lower, upper))
    weights = [(1.0 - frac[..., d], frac[..., d]) for d in range(dim)]
    out = None
    for corner in range(2**dim):
        bits = [(corner >> d) & 1 for d in range(dim)]
        rows, weight = terms[0][bits[0]], weights[0][bits[0]]
        for d in range(1, dim):
            rows = (rows ^ terms[d][bits[d]]) if hashed else (rows + terms[d][bits[d]])
            weight = weight * weights[d][bits[d]]
        feats = table.index_select(0, rows.reshape(-1)).view(*rows.shape, -1)  # [N, G, F]
        term = weight.unsqueeze(-1) * feats
        out = term if out is None else out + term
    return out


def hash_grid_encode(x: Tensor, table: Tensor, meta: HashGridMeta) -> Tensor:
    """Multiresolution hash-grid features of points ``x`` [N, D] in [0, 1]^D -> [N, L*F].

    ``table`` [P, F] holds all levels (level ``l`` starts at ``meta.level_offsets[l]``).
    Per level the point is scaled to ``p = x * scale_l + 0.5``; the 2^D surrounding vertices
    are looked up - dense index ``sum_d c_d (R_l + 1)^d`` where the level fits, otherwise the
    instant-ngp hash ``XOR_d (c_d * prime_d mod 2^32)`` modulo the level size - and blended
    with trilinear weights. Output is level-major. Points with any coordinate outside
    [0, 1] get zeros (and zero gradient). Gradients reach ``table`` (scatter-add through the
    gather) and ``x``.
    """
    if x.shape[-1] != meta.in_dim or table.shape != (meta.table_rows, meta.n_features):
        raise ValueError(
            f"hash_grid_encode: x {tuple(x.shape)} / table {tuple(table.shape)} do not match the "
            f"grid layout (D={meta.in_dim}, P={meta.table_rows}, F={meta.n_features})"
        )
    device, dim, n_points = x.device, meta.in_dim, x.shape[0]
    # Resolutions grow with the level, so dense levels form a prefix and every hashed level
    # has the same power-of-two size, stored back to back.
    n_dense = meta.hashed.index(True) if any(meta.hashed) else meta.n_levels
    scales = torch.tensor(meta.level_scales, dtype=x.dtype, device=device)  # [L]
    pos = x.clamp(0.0, 1.0)[:, None, :] * scales[None, :, None] + 0.5  # [N, L, D]
    groups = []
    if n_dense:
        verts = torch.tensor(meta.level_resolutions[:n_dense], device=device) + 1  # [Ld]
        strides = verts[:, None] ** torch.arange(dim, device=device)  # [Ld, D]
        offsets = torch.tensor(meta.level_offsets[:n_dense], device=device)
        groups.append(_encode_levels(pos[:, :n_dense], table, strides, offsets, False, 0))
    if n_dense < meta.n_levels:
        size = meta.level_sizes[-1]
        primes = torch.tensor(HASH_PRIMES[:dim], device=device).expand(meta.n_levels - n_dense, dim)
        level_bias = torch.arange(meta.n_levels - n_dense, device=device) * size  # [Lh]
        hashed_table = table[meta.level_offsets[n_dense]:]
        groups.append(_encode_levels(pos[:, n_dense:], hashed_table, primes, level_bias, True, size - 1))
    out = groups[0] if len(groups) == 1 else torch.cat(groups, dim=1)  # [N, L, F]
    inside = ((x >= 0) & (x <= 1)).all(dim=-1)  # [N]
    out = out * inside[:, None, None].to(out.dtype)
    return out.reshape(n_points, meta.n_levels * meta.n_features)


def blend_tables(tables: Tensor, coeffs: Tensor) -> Tensor:
    """Per-frame tables ``H(e_b) = sum_k e_bk H_k``: tables [K+1, P, F], coeffs [B, K+1] -> [B, P, F].

    One matrix product (NeRFBlendShape's blend); differentiable in both arguments.
    """
    n_tables, rows, feats = tables.shape
    if coeffs.dim() != 2 or coeffs.shape[1] != n_tables:
        raise ValueError(f"coefficients {tuple(coeffs.shape)} must be [B, {n_tables}] for {n_tables} tables")
    return (coeffs.to(tables.dtype) @ tables.reshape(n_tables, rows * feats)).view(-1, rows, feats)


def _check_frames(x: Tensor, n_tables: int, frame_index: Tensor | None) -> None:
    """Validate a per-point frame index [N] against B tables (one sync for the value range)."""
    if frame_index is None:
        if n_tables != 1:
            raise ValueError(f"{n_tables} per-frame tables need a frame_index [N] per point")
        return
    if frame_index.shape != (x.shape[0],) or frame_index.is_floating_point() or frame_index.is_complex():
        raise ValueError(f"frame_index {tuple(frame_index.shape)} must be an integer tensor [{x.shape[0]}]")
    if frame_index.numel():
        low, high = torch.stack(torch.aminmax(frame_index)).tolist()
        if low < 0 or high >= n_tables:
            raise ValueError(f"frame_index values must lie in [0, {n_tables}), got [{low}, {high}]")


def hash_grid_encode_frames(x: Tensor, tables: Tensor, frame_index: Tensor | None, meta: HashGridMeta) -> Tensor:
    """Points read per-frame tables: x [N, D], tables [B, P, F], frame_index [N] integer in
    [0, B) (None when B = 1) -> [N, L*F], point n encoded with ``tables[frame_index[n]]``.

    Pure PyTorch, one :func:`hash_grid_encode` per frame present; the reference for the
    accelerated lookup. Gradients reach ``tables`` and ``x``.
    """
    if tables.dim() != 3:
        raise ValueError(f"per-frame tables must be [B, P, F], got {tuple(tables.shape)}")
    _check_frames(x, tables.shape[0], frame_index)
    if frame_index is None:
        return hash_grid_encode(x, tables[0], meta)
    out = x.new_zeros(x.shape[0], meta.out_dim, dtype=tables.dtype)  # [N, L*F]
    for frame in torch.unique(frame_index).tolist():
        rows = torch.nonzero(frame_index == frame).squeeze(1)  # [n_b]
        out = out.index_copy(0, rows, hash_grid_encode(x.index_select(0, rows), tables[frame], meta))
    return out


def encode_hash_grid(
    x: Tensor, table: Tensor, meta: HashGridMeta, frame_index: Tensor | None = None,
    implementation: str = "auto",
) -> Tensor:
    """Hash-grid features, choosing the implementation: x [N, D] in [0, 1]^D, table [P, F]
    (one table) or [B, P, F] with ``frame_index`` [N] (per-frame tables) -> [N, L*F].

    ``implementation``: "torch" (the reference and CPU path), "triton" (CUDA kernel; 3-D grids;
    no gradient with respect to ``x``), or "auto" (triton for CUDA tensors when triton is
    installed and ``x`` needs no gradient, else torch). See ``facenerf.core.backends``.
    """
    from facenerf.core import backends  # the only route to an accelerator

    tables = table if table.dim() == 3 else table.unsqueeze(0)  # [B, P, F]
    if table.dim() not in (2, 3) or tables.shape[1:] != (meta.table_rows, meta.n_features):
        raise ValueError(f"table {tuple(table.shape)} must be [P, F] or [B, P, F] with P={meta.table_rows}, "
                         f"F={meta.n_features}")
    x_grad = x.requires_grad and torch.is_grad_enabled()
    kernel = backends.hash_grid_kernel(implementation, x.device, meta.in_dim, x_grad)
    if kernel is None:
        return hash_grid_encode_frames(x, tables, frame_index, meta)
    _check_frames(x, tables.shape[0], frame_index)
    return kernel.encode_frames(x, tables, meta, frame_index)


def blended_hash_grid_encode(
    x: Tensor, tables: Tensor, coeffs: Tensor, frame_index: Tensor | None, meta: HashGridMeta,
    implementation: str = "torch",
) -> Tensor:
    """NeRFBlendShape's expression-blended lookup: x [N, D], tables [K+1, P, F], coeffs
    [B, K+1] (one row per frame), frame_index [N] in [0, B) (None when B = 1) -> [N, L*F].

    Point n is encoded from its frame's table ``sum_k coeffs[b, k] tables[k]``, b =
    ``frame_index[n]``; the result is linear in the coefficients. The blend is one matrix
    product; the lookup is :func:`encode_hash_grid` with ``implementation`` (default: the
    pure-PyTorch reference). Gradients reach ``tables`` and ``coeffs`` (and ``x`` on the torch path).
    """
    return encode_hash_grid(x, blend_tables(tables, coeffs), meta, frame_index, implementation)


class HashGridEncoding(nn.Module):
    """Multiresolution hash-grid encoding (pure PyTorch, torch-ngp layout and hashing).

    Inputs are points in [0, 1]^D (map the scene box to the unit cube first with
    :func:`facenerf.core.scene_box.to_unit_cube`); output is ``[N, n_levels * n_features]``,
    level-major. Attributes: ``level_resolutions``, ``level_offsets`` (first table row of each
    level), ``table_rows`` (P) and the parameter ``embeddings`` [P, F], initialised uniform in
    [-init_scale, init_scale]. ``implementation`` picks the lookup as :func:`encode_hash_grid`
    does, through :mod:`facenerf.core.backends`: ``"torch"`` (the reference), ``"triton"``
    (the CUDA kernel) or ``"auto"`` (the kernel for CUDA tensors when it can serve the call,
    else torch); every implementation reads the same parameter layout.
    """

    def __init__(
        self,
        in_dim: int = 3,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        init_scale: float = 1e-4,
        implementation: str = "auto",
    ):
        super().__init__()
        from facenerf.core.backends import HASH_GRID_IMPLEMENTATIONS

        if implementation not in HASH_GRID_IMPLEMENTATIONS:  # fail here, not at the first call
            raise FaceNerfError(f"unknown hash-grid implementation {implementation!r}: use one of "
                                f"{', '.join(HASH_GRID_IMPLEMENTATIONS)}")
        self.implementation = implementation
        self.meta = make_hash_grid_meta(
            in_dim, n_levels, n_features, log2_table_size, base_resolution, max_resolution
        )
        self.in_dim = in_dim
        self.out_dim = self.meta.out_dim
        self.embeddings = nn.Parameter(
            torch.empty(self.meta.table_rows, n_features).uniform_(-init_scale, init_scale)
        )  # [P, F]

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        return self.meta.level_resolutions

    @property
    def level_offsets(self) -> tuple[int, ...]:
        return self.meta.level_offsets

    @property
    def table_rows(self) -> int:
        return self.meta.table_rows

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in_dim] in [0, 1] -> [N, out_dim]."""
        return encode_hash_grid(x, self.embeddings, self.meta, implementation=self.implementation)
