"""Throughput of the shared NeRF core, our path against a straightforward reference.

Measured in one run on one device (CPU always, CUDA too when available):

Every case is timed forward and forward+backward (marching: forward only).

1. hash-grid encoding, points/s: ``hash_grid_encode`` (levels grouped, corners combined
   from per-dimension terms) vs a per-level, per-corner loop of the same arithmetic.
2. compositing alone, samples/s: ``composite_dense`` and the packed functions vs front-to-back
   compositing one sample at a time in a Python loop.
3. full render, samples/s: ``render_rays`` (field + vectorised compositing) vs the same field
   with compositing done sample by sample in a Python loop; for a small hash-grid + MLP
   field and a frequency-encoding MLP field; forward and forward+backward.
4. occupancy-grid marching vs dense sampling on a ball scene (hash field), rays/s and
   field evaluations per ray; forward only.

Usage:  .venv/bin/python benchmarks/core_throughput.py [--rays 1024] [--samples 64] [--repeats 3] [--threads 1] [--cpu-only]
Writes benchmarks/results/core_throughput_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.io import write_text  # noqa: E402
from facenerf.runtime import describe_device  # noqa: E402
from facenerf.core import volume_rendering as vr  # noqa: E402
from facenerf.core.cameras import Intrinsics, orbit_pose  # noqa: E402
from facenerf.core.encodings import (  # noqa: E402
    HASH_PRIMES, FrequencyEncoding, HashGridEncoding, SHEncoding, hash_grid_encode)
from facenerf.core.mlp import MLP  # noqa: E402
from facenerf.core.occupancy_grid import OccupancyGrid  # noqa: E402
from facenerf.core.rays import image_rays  # noqa: E402
from facenerf.core.renderer import (  # noqa: E402
    MarchSettings, RenderSettings, composite_dense, render_rays, render_rays_marched, unit_directions)
from facenerf.core.samplers import stratified_samples  # noqa: E402

HASH_CONFIG = dict(in_dim=3, n_levels=16, n_features=2, log2_table_size=15, base_resolution=16, max_resolution=512)
BOUND = 1.0  # scene box [-1, 1]^3 mapped to the hash grid's unit cube


# ------------------------------------------------------------------ fields under test
class HashField(torch.nn.Module):
    """Small instant-ngp style field: hash grid -> density MLP; SH(dir) + features -> colour MLP."""

    def __init__(self):
        super().__init__()
        self.grid = HashGridEncoding(**HASH_CONFIG)
        self.sh = SHEncoding(4)
        self.density_net = MLP(self.grid.out_dim, 64, 1, 16, init="default")
        self.colour_net = MLP(15 + self.sh.out_dim, 64, 2, 3, out_activation="sigmoid", init="default")

    def forward(self, points, dirs):
        h = self.density_net(self.grid((points + BOUND) / (2 * BOUND)))  # [M, 16]
        rgb = self.colour_net(torch.cat([h[:, 1:], self.sh(dirs)], dim=-1))
        return torch.nn.functional.softplus(h[:, 0]), rgb


class FrequencyField(torch.nn.Module):
    """Vanilla NeRF-style field: PE(10) -> 4x128 trunk -> density; + PE(4) dirs -> colour."""

    def __init__(self):
        super().__init__()
        self.pe, self.pe_dir = FrequencyEncoding(3, 10), FrequencyEncoding(3, 4)
        self.trunk = MLP(63, 128, 3, 129, skips=(2,), out_activation="relu")
        self.head = MLP(128 + 27, 64, 1, 3, out_activation="sigmoid")

    def forward(self, points, dirs):
        h = self.trunk(self.pe(points))
        rgb = self.head(torch.cat([h[:, 1:], self.pe_dir(dirs)], dim=-1))
        return h[:, 0], rgb


# ------------------------------------------------------------------ references
def reference_hash_encode(x, table, meta):
    """The same lookup, one level and one corner at a time (straightforward loops)."""
    feats = []
    inside = ((x >= 0) & (x <= 1)).all(-1, keepdim=True).to(x.dtype)
    for level in range(meta.n_levels):
        pos = x.clamp(0, 1) * meta.level_scales[level] + 0.5
        base = pos.floor()
        frac, base = pos - base, base.long()
        verts, size = meta.level_resolutions[level] + 1, meta.level_sizes[level]
        acc = 0.0
        for corner in range(8):
            bits = [(corner >> d) & 1 for d in range(3)]
            c = [base[:, d] + bits[d] for d in range(3)]
            w = torch.ones_like(frac[:, 0])
            for d in range(3):
                w = w * (frac[:, d] if bits[d] else 1 - frac[:, d])
            if meta.hashed[level]:
                idx = (c[0] * HASH_PRIMES[0]) ^ ((c[1] * HASH_PRIMES[1]) & 0xFFFFFFFF) ^ ((c[2] * HASH_PRIMES[2]) & 0xFFFFFFFF)
            else:
                idx = c[0] + c[1] * verts + c[2] * verts * verts
            acc = acc + w[:, None] * table[idx % size + meta.level_offsets[level]]
        feats.append(acc)
    return torch.cat(feats, dim=-1) * inside


def reference_composite(t, density, rgb, norm, last_delta):
    """Front-to-back compositing one sample at a time: t/density [R, S], rgb [R, S, 3] -> [R, 3]."""
    n_rays, n_samples = t.shape
    trans = torch.ones(n_rays, dtype=t.dtype, device=t.device)
    colour = torch.zeros(n_rays, 3, dtype=t.dtype, device=t.device)
    for k in range(n_samples):
        delta = (t[:, k + 1] - t[:, k] if k + 1 < n_samples else torch.full_like(trans, last_delta)) * norm
        alpha = 1 - torch.exp(-torch.relu(density[:, k]) * delta)
        colour = colour + (trans * alpha)[:, None] * rgb[:, k]
        trans = trans * (1 - alpha + 1e-10)
    return colour


def reference_render(rays, field, settings):
    """Same samples and field as render_rays; compositing sample by sample in a Python loop."""
    t = stratified_samples(rays.near, rays.far, settings.n_samples, False)
    n_rays, n_samples = t.shape
    points = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
    dirs = unit_directions(rays.directions)[:, None].expand(n_rays, n_samples, 3)
    density, rgb = field(points.reshape(-1, 3), dirs.reshape(-1, 3))
    density, rgb = density.view(n_rays, n_samples), rgb.view(n_rays, n_samples, 3)
    return {"rgb": reference_composite(t, density, rgb, rays.directions.norm(dim=-1), settings.last_delta)}


def packed_composite(t, density, rgb, norm):
    """Our packed path on a dense batch flattened to [M] (the layout marching produces)."""
    n_rays, n_samples = t.shape
    deltas = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], dim=-1) * norm[:, None]
    ray_indices = torch.arange(n_rays, device=t.device).repeat_interleave(n_samples)
    alpha = vr.alpha_from_density(torch.relu(density.reshape(-1)), deltas.reshape(-1))
    weights = vr.weights_from_alpha_packed(alpha, ray_indices, n_rays)
    return vr.accumulate_packed(weights, rgb.reshape(-1, 3), ray_indices, n_rays)


# ------------------------------------------------------------------ timing helpers
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_pair(ours, ref, device, repeats):
    """Best wall time of each closure over ``repeats`` interleaved runs, after one warm-up each.

    Interleaving and taking the minimum keeps the ratio fair on a machine shared with other
    jobs: both sides see the same background load.
    """
    best = [float("inf"), float("inf")]
    for fn in (ours, ref):
        fn()
    for _ in range(repeats):
        for i, fn in enumerate((ours, ref)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def fwd_bwd(make_output, params):
    """A closure running forward (+ backward when ``params`` is given)."""
    def run():
        if params is None:
            with torch.no_grad():
                make_output()
            return
        for p in params:
            p.grad = None
        make_output().sum().backward()
    return run


def compare(name, unit, work, ours, ref, device, repeats):
    """Time ours vs reference, return one result row."""
    t_ours, t_ref = timed_pair(ours, ref, device, repeats)
    row = {"case": name, "unit": unit, "work": work, "ours_s": t_ours, "reference_s": t_ref,
           "ours_per_s": work / t_ours, "reference_per_s": work / t_ref, "speedup": t_ref / t_ours}
    print(f"  {name:45s} ours {work / t_ours:12.4g} {unit}/s  ref {work / t_ref:12.4g} {unit}/s  x{t_ref / t_ours:.2f}")
    return row


# ------------------------------------------------------------------ benchmark cases
def bench_hash(device, n_points, repeats):
    enc = HashGridEncoding(**HASH_CONFIG).to(device)
    x = torch.rand(n_points, 3, device=device)
    rows = []
    for mode, params in (("forward", None), ("forward+backward", [enc.embeddings])):
        ours = fwd_bwd(lambda: hash_grid_encode(x, enc.embeddings, enc.meta), params)
        ref = fwd_bwd(lambda: reference_hash_encode(x, enc.embeddings, enc.meta), params)
        rows.append(compare(f"hash encode {mode}", "points", n_points, ours, ref, device, repeats))
    return rows


def bench_composite(device, rays, n_samples, repeats):
    settings = RenderSettings(n_samples=n_samples, n_importance=0)
    t = stratified_samples(rays.near, rays.far, n_samples, False)
    density = (torch.rand(t.shape, device=device) * 2).requires_grad_(True)
    rgb = torch.rand(*t.shape, 3, device=device).requires_grad_(True)
    norm = rays.directions.norm(dim=-1)
    work, rows = t.numel(), []
    for mode, params in (("forward", None), ("forward+backward", [density, rgb])):
        ref = fwd_bwd(lambda: reference_composite(t, density, rgb, norm, 1e10), params)
        dense = fwd_bwd(lambda: composite_dense(t, density, rgb, rays, settings)["rgb"], params)
        packed = fwd_bwd(lambda: packed_composite(t, density, rgb, norm), params)
        rows.append(compare(f"composite dense {mode}", "samples", work, dense, ref, device, repeats))
        rows.append(compare(f"composite packed {mode}", "samples", work, packed, ref, device, repeats))
    return rows


def bench_render(device, rays, n_samples, repeats):
    settings = RenderSettings(n_samples=n_samples, n_importance=0)
    rows = []
    for field_name, field in (("hash+MLP field", HashField()), ("frequency MLP field", FrequencyField())):
        field = field.to(device)
        params = list(field.parameters())
        work = len(rays) * n_samples
        for mode, grads in (("forward", None), ("forward+backward", params)):
            ours = fwd_bwd(lambda: render_rays(rays, field, None, settings)["rgb"], grads)
            ref = fwd_bwd(lambda: reference_render(rays, field, settings)["rgb"], grads)
            rows.append(compare(f"render {field_name} {mode}", "samples", work, ours, ref, device, repeats))
    return rows


def bench_march(device, rays, n_samples, repeats):
    field = HashField().to(device)
    grid = OccupancyGrid(resolution=64).to(device)
    grid.update(lambda p: 10.0 * (p.norm(dim=-1) < 0.5).float(), jitter=False)
    step = 2 * 3 ** 0.5 / 256
    march = MarchSettings(step_size=step)
    with torch.no_grad():
        per_ray = float(render_rays_marched(rays, field, grid, march)["n_samples"].mean())
    ours = fwd_bwd(lambda: render_rays_marched(rays, field, grid, march)["rgb"], None)
    ref = fwd_bwd(lambda: render_rays(rays, field, None, RenderSettings(n_samples=n_samples, n_importance=0))["rgb"], None)
    row = compare(f"ball scene: marching vs dense {n_samples} samples", "rays", len(rays), ours, ref, device, repeats)
    row.update({"field_evals_per_ray_ours": per_ray, "field_evals_per_ray_reference": n_samples,
                "step_size": step, "grid_resolution": 64})
    return [row]


# ------------------------------------------------------------------ reporting

def write_results(out_dir, device, meta, rows):
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"core_throughput_{device.type}"
    write_text(stem.with_suffix(".json"), json.dumps({**meta, "results": rows}, indent=2))
    lines = [f"# Core throughput on {meta['device_name']}", "",
             f"torch {meta['torch']}, device `{device}`, {meta['config']}.",
             f"Wall-clock best of interleaved runs; 1-minute load average when the run started: "
             f"{meta['load_average_before']:.2f}.",
             "Full-render rows are dominated by the field itself (the same in both columns); the "
             "compositing rows isolate the core's own work.", "",
             "| case | ours | reference | speed-up |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['ours_per_s']:.4g} {r['unit']}/s | "
                     f"{r['reference_per_s']:.4g} {r['unit']}/s | x{r['speedup']:.2f} |")
    marched = [r for r in rows if "field_evals_per_ray_ours" in r]
    for r in marched:
        lines += ["", f"Marching evaluated {r['field_evals_per_ray_ours']:.1f} field samples per ray "
                      f"vs {r['field_evals_per_ray_reference']} for dense sampling."]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    return stem


def run_device(device, args):
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    torch.manual_seed(0)
    side = int(round(args.rays ** 0.5))
    K = Intrinsics(side, side, 1.2 * side, 1.2 * side, side / 2, side / 2)
    rays = image_rays(K, orbit_pose(10.0, 30.0, 3.0), 1.5, 4.5).to(device)
    print(f"{describe_device(device)}: {len(rays)} rays x {args.samples} samples")
    rows = bench_hash(device, len(rays) * args.samples, args.repeats)
    rows += bench_composite(device, rays, args.samples, args.repeats)
    rows += bench_render(device, rays, args.samples, args.repeats)
    rows += bench_march(device, rays, args.samples, args.repeats)
    meta = {"device": str(device), "device_name": describe_device(device), "torch": torch.__version__,
            "load_average_before": load,
            "config": f"{len(rays)} rays x {args.samples} samples, hash grid {HASH_CONFIG}, "
                      f"best of {args.repeats} interleaved runs", "rays": len(rays), "samples": args.samples}
    stem = write_results(Path(args.out), device, meta, rows)
    print(f"wrote {stem}.json and {stem}.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rays", type=int, default=1024, help="rays per batch (rounded to a square image)")
    parser.add_argument("--samples", type=int, default=64, help="samples per ray")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = torch's default); 1 gives stable numbers on a busy machine")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        run_device(device, args)


if __name__ == "__main__":
    main()
