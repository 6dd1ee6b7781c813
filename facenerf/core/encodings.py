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

# instant-ngp / torch-ngp spatial hash primes (one per input dimension, up to 7).
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_UINT32_MASK = 0xFFFFFFFF


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
        parts.append(pairs.reshape(x.shape[0], -1))
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
    """Static layout of a multiresolution hash grid (see :func:`make_hash_grid_meta`)."""

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


def _level_index(corner: Tensor, strides: Tensor, primes: Tensor, hashed: Tensor) -> Tensor:
    """Row (before modulo) of integer vertices ``corner`` [N, L, D] per level.

    Dense levels: ``sum_d c_d * (R_l + 1)^d``. Hashed levels: XOR over ``d`` of
    ``c_d * prime_d`` with uint32 wrap-around, emulated in int64 by masking to 32 bits.
    """
    dense = (corner * strides).sum(-1)  # [N, L]
    prod = (corner * primes) & _UINT32_MASK  # [N, L, D]
    hashed_idx = prod[..., 0]
    for d in range(1, corner.shape[-1]):
        hashed_idx = hashed_idx ^ prod[..., d]
    return torch.where(hashed, hashed_idx, dense)


def hash_grid_encode(x: Tensor, table: Tensor, meta: HashGridMeta) -> Tensor:
    """Multiresolution hash-grid features of points ``x`` [N, D] in [0, 1]^D -> [N, L*F].

    ``table`` [P, F] holds all levels (level ``l`` starts at ``meta.level_offsets[l]``).
    Per level the point is scaled to ``p = x * scale_l + 0.5``; the 2^D surrounding vertices
    are looked up (dense index or XOR hash, modulo the level size) and blended with trilinear
    weights. Output is level-major. Points with any coordinate outside [0, 1] get zeros (and
    zero gradient). Gradients reach ``table`` (scatter-add through the gather) and ``x``.
    """
    if x.shape[-1] != meta.in_dim or table.shape != (meta.table_rows, meta.n_features):
        raise ValueError(
            f"hash_grid_encode: x {tuple(x.shape)} / table {tuple(table.shape)} do not match the "
            f"grid layout (D={meta.in_dim}, P={meta.table_rows}, F={meta.n_features})"
        )
    device, n_levels, dim = x.device, meta.n_levels, meta.in_dim
    inside = ((x >= 0) & (x <= 1)).all(dim=-1)  # [N]
    scales = torch.tensor(meta.level_scales, dtype=x.dtype, device=device)  # [L]
    sizes = torch.tensor(meta.level_sizes, dtype=torch.int64, device=device)  # [L]
    offsets = torch.tensor(meta.level_offsets, dtype=torch.int64, device=device)  # [L]
    hashed = torch.tensor(meta.hashed, device=device)  # [L]
    vertices = torch.tensor(meta.level_resolutions, dtype=torch.int64, device=device) + 1  # [L]
    strides = vertices[:, None] ** torch.arange(dim, device=device)  # [L, D]
    primes = torch.tensor(HASH_PRIMES[:dim], dtype=torch.int64, device=device)  # [D]

    pos = x.clamp(0.0, 1.0)[:, None, :] * scales[None, :, None] + 0.5  # [N, L, D]
    base = torch.floor(pos)
    frac = pos - base  # [N, L, D]
    base = base.long()
    out = x.new_zeros(x.shape[0], n_levels, meta.n_features)  # [N, L, F]
    for bits in range(2**dim):
        offset = torch.tensor([(bits >> d) & 1 for d in range(dim)], device=device)  # [D]
        corner = base + offset  # [N, L, D]
        weight = torch.where(offset.bool(), frac, 1.0 - frac).prod(dim=-1)  # [N, L]
        rows = _level_index(corner, strides, primes, hashed) % sizes + offsets  # [N, L]
        feats = table.index_select(0, rows.reshape(-1)).view(*rows.shape, -1)  # [N, L, F]
        out = out + weight.unsqueeze(-1).to(table.dtype) * feats
    out = out * inside[:, None, None].to(out.dtype)
    return out.reshape(x.shape[0], n_levels * meta.n_features)


class HashGridEncoding(nn.Module):
    """Multiresolution hash-grid encoding (pure PyTorch, torch-ngp layout and hashing).

    Inputs are points in [0, 1]^D (map a bounding box to the unit cube first); output is
    ``[N, n_levels * n_features]``, level-major. Attributes: ``level_resolutions``,
    ``level_offsets`` (first table row of each level), ``table_rows`` (P) and the parameter
    ``embeddings`` [P, F], initialised uniform in [-init_scale, init_scale].
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
    ):
        super().__init__()
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
        return hash_grid_encode(x, self.embeddings, self.meta)
