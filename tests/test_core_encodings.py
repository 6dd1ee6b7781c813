"""Encodings: frequency layout, SH orthonormality, hash grid layout/values/gradients."""

import math

import pytest
import torch

from facenerf.core.encodings import (
    FrequencyEncoding,
    HashGridEncoding,
    SHEncoding,
    hash_grid_encode,
    make_hash_grid_meta,
)


# ---------------------------------------------------------------- frequency encoding
def test_frequency_encoding_dims_and_ordering():
    assert FrequencyEncoding(3, 10).out_dim == 63
    assert FrequencyEncoding(3, 4).out_dim == 27
    assert FrequencyEncoding(3, 4, include_input=False).out_dim == 24
    x = torch.tensor([[0.3, -1.2, 2.0], [0.0, 0.5, -0.7]])
    out = FrequencyEncoding(3, 10)(x)
    assert out.shape == (2, 63)
    assert torch.equal(out[:, :3], x)
    for k in range(10):
        block = out[:, 3 + 6 * k : 9 + 6 * k]
        assert torch.allclose(block[:, :3], torch.sin(2.0**k * x), atol=1e-6)
        assert torch.allclose(block[:, 3:], torch.cos(2.0**k * x), atol=1e-6)


# ---------------------------------------------------------------- spherical harmonics
def _fibonacci_sphere(n):
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def test_sh_is_orthonormal_on_the_sphere():
    dirs = _fibonacci_sphere(20000)
    basis = SHEncoding(4)(dirs)  # [N, 16]
    gram = basis.T @ basis * (4 * math.pi / dirs.shape[0])
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-3)


def test_sh_values_at_the_pole_and_degrees():
    up = torch.tensor([[0.0, 0.0, 1.0]])
    out = SHEncoding(4)(up)[0]
    expected = torch.zeros(16)
    expected[0], expected[2] = 0.28209479177387814, 0.4886025119029199
    expected[6] = 0.94617469575755997 - 0.31539156525251999
    expected[12] = 0.3731763325901154 * 2.0
    assert torch.allclose(out, expected, atol=1e-7)
    x_axis = SHEncoding(2)(torch.tensor([[1.0, 0.0, 0.0]]))[0]
    assert torch.allclose(x_axis, torch.tensor([0.28209479177387814, 0.0, 0.0, -0.4886025119029199]))
    assert [SHEncoding(d).out_dim for d in (1, 2, 3, 4)] == [1, 4, 9, 16]
    with pytest.raises(ValueError):
        SHEncoding(5)


# ---------------------------------------------------------------- hash grid layout
def test_official_nerfblendshape_grid_layout():
    enc = HashGridEncoding(in_dim=3, n_levels=16, n_features=4, log2_table_size=14,
                           base_resolution=16, max_resolution=1024)
    assert enc.level_resolutions == (16, 22, 28, 37, 49, 64, 85, 112, 148, 195, 256, 338, 446, 589, 777, 1024)
    assert enc.table_rows == 246_456
    assert enc.embeddings.shape == (246_456, 4)
    assert enc.meta.hashed == (False, False) + (True,) * 14
    assert enc.level_offsets[:3] == (0, 4913, 4913 + 12167)
    assert enc.out_dim == 64
    assert float(enc.embeddings.detach().abs().max()) <= 1e-4


# ---------------------------------------------------------------- hash grid values
PRIMES = (1, 2654435761, 805459861)


def _reference_encode(x, table, meta):
    """Per point, per level, per corner loops with Python-int index arithmetic."""
    rows = []
    for point in x:
        feats = []
        coords = [float(c) for c in point.detach()]
        outside = any(c < 0 or c > 1 for c in coords)
        for level in range(meta.n_levels):
            acc = torch.zeros(meta.n_features, dtype=table.dtype)
            if not outside:
                scale = meta.level_scales[level]
                verts = meta.level_resolutions[level] + 1
                size, offset = meta.level_sizes[level], meta.level_offsets[level]
                pos = [point[d] * scale + 0.5 for d in range(meta.in_dim)]
                base = [math.floor(float(p.detach())) for p in pos]
                for corner in range(2**meta.in_dim):
                    bits = [(corner >> d) & 1 for d in range(meta.in_dim)]
                    c = [base[d] + bits[d] for d in range(meta.in_dim)]
                    weight = 1.0
                    for d in range(meta.in_dim):
                        frac = pos[d] - base[d]
                        weight = weight * (frac if bits[d] else 1 - frac)
                    if verts**meta.in_dim <= size:
                        index = sum(c[d] * verts**d for d in range(meta.in_dim))
                    else:
                        index = 0
                        for d in range(meta.in_dim):
                            index ^= (c[d] * PRIMES[d]) % 2**32
                    acc = acc + weight * table[offset + index % size]
            feats.append(acc)
        rows.append(torch.cat(feats))
    return torch.stack(rows)


def _test_points(dim, n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inside = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    edges = torch.tensor([[0.0] * dim, [1.0] * dim], dtype=torch.float64)
    outside = torch.full((1, dim), 0.5, dtype=torch.float64)
    outside[0, 0] = 1.2
    return torch.cat([inside, edges, outside])


@pytest.mark.parametrize("dim", [2, 3])
def test_hash_grid_matches_reference_values_and_gradients(dim):
    meta = make_hash_grid_meta(dim, n_levels=4, n_features=2, log2_table_size=8 if dim == 3 else 6,
                               base_resolution=3, max_resolution=40)
    assert any(meta.hashed) and not all(meta.hashed)
    gen = torch.Generator().manual_seed(1)
    table_a = torch.randn(meta.table_rows, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    table_b = table_a.detach().clone().requires_grad_(True)
    x_a = _test_points(dim).requires_grad_(True)
    x_b = x_a.detach().clone().requires_grad_(True)
    ours = hash_grid_encode(x_a, table_a, meta)
    ref = _reference_encode(x_b, table_b, meta)
    assert ours.shape == (x_a.shape[0], meta.out_dim)
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.equal(ours[-1], torch.zeros(meta.out_dim, dtype=torch.float64))  # out of box
    upstream = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.allclose(table_a.grad, table_b.grad, atol=1e-12)
    assert torch.allclose(x_a.grad[:-3], x_b.grad[:-3], atol=1e-9)
    assert torch.equal(x_a.grad[-1], torch.zeros(dim, dtype=torch.float64))


def test_hash_grid_gradcheck_float64():
    meta = make_hash_grid_meta(3, n_levels=3, n_features=2, log2_table_size=6, base_resolution=2, max_resolution=6)
    gen = torch.Generator().manual_seed(2)
    table = torch.randn(meta.table_rows, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    x = (0.05 + 0.9 * torch.rand(4, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, t: hash_grid_encode(p, t, meta), (x, table), eps=1e-6, atol=1e-6)


def test_hash_grid_module_is_level_major_and_trainable():
    enc = HashGridEncoding(in_dim=3, n_levels=3, n_features=2, log2_table_size=10,
                           base_resolution=4, max_resolution=16)
    with torch.no_grad():
        enc.embeddings.zero_()
        enc.embeddings[: enc.meta.level_sizes[0]] = 1.0  # only level 0 is non-zero
    out = enc(torch.rand(5, 3))
    assert torch.allclose(out[:, :2], torch.ones(5, 2))  # trilinear weights sum to 1
    assert torch.equal(out[:, 2:], torch.zeros(5, 4))
    out.sum().backward()
    assert enc.embeddings.grad is not None and enc.embeddings.grad.abs().sum() > 0


def test_hash_grid_rejects_mismatched_table():
    meta = make_hash_grid_meta(3, 2, 2, 8, 2, 4)
    with pytest.raises(ValueError):
        hash_grid_encode(torch.rand(3, 3), torch.zeros(meta.table_rows + 1, 2), meta)


def test_frequency_encoding_accepts_an_empty_batch():
    from facenerf.core.encodings import FrequencyEncoding

    enc = FrequencyEncoding(3, 4)
    out = enc(torch.zeros(0, 3))
    assert out.shape == (0, enc.out_dim)
