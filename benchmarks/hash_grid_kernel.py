"""NeRFBlendShape's expression-blended hash-grid lookup: Triton kernel against the PyTorch path.

Official sizes (reference §1.1): 16 levels x 4 features, base resolution 16, finest 1024,
log2 table size 14 (P = 246,456 rows), K + 1 = 47 tables, B = 2 frames per batch, N = 2^18
samples (the first half from frame 0). Both paths run in one process on the same inputs:

1. agreement: max abs error of the Triton path against the PyTorch path in the encoded
   features and in the gradients with respect to the expression tables and coefficients;
2. timing (CUDA events after warm-up, median of interleaved repeats) of
   - the blended encode (blend matmul + lookup), forward and forward+backward,
   - the lookup alone from the two per-frame tables, forward and forward+backward,
   - the Triton lookup reading fp16 copies of the per-frame tables (no PyTorch counterpart
     with the same arithmetic: compared with the fp32 PyTorch lookup, error reported).

On the CPU (or without triton) only the PyTorch path runs and the script says why.

Usage:  python benchmarks/hash_grid_kernel.py --device cuda           (~1 min on one H200)
        python benchmarks/hash_grid_kernel.py --device cpu --small --threads 1
Options: --points N, --repeats R, --warmup W, --sweep (also time other block sizes / warps).
Writes benchmarks/results/hash_grid_kernel_<device>.json and .md (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.core import backends  # noqa: E402
from facenerf.core.encodings import (  # noqa: E402
    blend_tables, blended_hash_grid_encode, encode_hash_grid, make_hash_grid_meta)
from facenerf.errors import FaceNerfError  # noqa: E402
from facenerf.runtime import describe_device  # noqa: E402

GRID = dict(in_dim=3, n_levels=16, n_features=4, log2_table_size=14, base_resolution=16, max_resolution=1024)
N_TABLES, N_FRAMES = 47, 2  # K + 1 (mean + 46 expressions), frames per batch


def make_inputs(device: torch.device, n_points: int, seed: int = 0) -> dict:
    """Random tables ~ U(-1, 1), coefficients [1, U(0, 1)...], points with 1/64 outside the box."""
    meta = make_hash_grid_meta(**GRID)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_points, 3, generator=gen)  # [N, 3]
    x[::64, 0] += 1.0
    tables = torch.rand(N_TABLES, meta.table_rows, meta.n_features, generator=gen) * 2 - 1  # [K+1, P, F]
    coeffs = torch.rand(N_FRAMES, N_TABLES, generator=gen)  # [B, K+1]
    coeffs[:, 0] = 1.0
    frames = torch.arange(n_points) * N_FRAMES // n_points  # [N], contiguous halves
    upstream = torch.randn(n_points, meta.out_dim, generator=gen)  # [N, L*F] dLoss/dfeatures
    data = dict(x=x, tables=tables, coeffs=coeffs, frames=frames, upstream=upstream)
    data = {k: v.to(device) for k, v in data.items()}
    data["blended"] = blend_tables(data["tables"], data["coeffs"])  # [B, P, F]
    return {**data, "meta": meta}


def blended_case(d: dict, impl: str, backward: bool):
    """Closure: blend + lookup; with ``backward``, also the gradients to tables and coefficients."""
    def run():
        if not backward:
            with torch.no_grad():
                return blended_hash_grid_encode(d["x"], d["tables"], d["coeffs"], d["frames"], d["meta"], impl)
        leaves = (d["tables"].requires_grad_(True), d["coeffs"].requires_grad_(True))
        out = blended_hash_grid_encode(d["x"], *leaves, d["frames"], d["meta"], impl)
        grads = torch.autograd.grad((out * d["upstream"]).sum(), leaves)
        d["tables"].requires_grad_(False), d["coeffs"].requires_grad_(False)
        return (out, *grads)
    return run


def lookup_case(d: dict, impl: str, backward: bool, dtype: torch.dtype = torch.float32):
    """Closure: lookup from the per-frame tables (optionally a copy in ``dtype``)."""
    blended = d["blended"] if dtype == torch.float32 else d["blended"].to(dtype)

    def run():
        if not backward:
            with torch.no_grad():
                return encode_hash_grid(d["x"], blended, d["meta"], d["frames"], impl)
        leaf = blended.detach().requires_grad_(True)
        out = encode_hash_grid(d["x"], leaf, d["meta"], d["frames"], impl)
        return (out, *torch.autograd.grad((out * d["upstream"].to(dtype)).sum(), leaf))
    return run


def max_errors(d: dict) -> dict:
    """Max abs difference Triton - PyTorch of values and gradients (and the reference's size)."""
    ref = [t.detach() for t in blended_case(d, "torch", True)()]
    ours = [t.detach() for t in blended_case(d, "triton", True)()]
    names = ("features", "grad expression tables", "grad coefficients")
    errors = {name: {"max_abs_error": float((a - b).abs().max()), "reference_max_abs": float(b.abs().max())}
              for name, a, b in zip(names, ours, ref)}
    del ref, ours
    ref16 = [t.detach() for t in lookup_case(d, "torch", True)()]
    ours16 = [t.detach() for t in lookup_case(d, "triton", True, torch.float16)()]
    for name, a, b in zip(("features, fp16 tables", "grad per-frame tables, fp16 tables"), ours16, ref16):
        errors[name] = {"max_abs_error": float((a.float() - b).abs().max()), "reference_max_abs": float(b.abs().max())}
    return errors


def time_pair(fns: dict, device: torch.device, warmup: int, repeats: int) -> dict:
    """Median milliseconds of each closure: warm-up, then interleaved timed repeats."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples[name].append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - begin) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def run_timings(d: dict, device: torch.device, kernel: bool, warmup: int, repeats: int) -> list[dict]:
    rows = []
    cases = [("blended encode (blend + lookup)", blended_case), ("lookup from per-frame tables", lookup_case)]
    for label, make in cases:
        for backward in (False, True):
            fns = {"torch": make(d, "torch", backward)}
            if kernel:
                fns["triton"] = make(d, "triton", backward)
            ms = time_pair(fns, device, warmup, repeats)
            mode = "forward+backward" if backward else "forward"
            rows.append({"case": f"{label}, {mode}", "torch_ms": ms["torch"], "triton_ms": ms.get("triton")})
    if kernel:
        for backward in (False, True):
            ms = time_pair({"triton": lookup_case(d, "triton", backward, torch.float16)}, device, warmup, repeats)
            mode = "forward+backward" if backward else "forward"
            rows.append({"case": f"lookup, fp16 per-frame tables, {mode}", "torch_ms": None, "triton_ms": ms["triton"]})
    for row in rows:
        ratio = row["torch_ms"] / row["triton_ms"] if row["torch_ms"] and row["triton_ms"] else None
        row["speedup"] = ratio
        triton_text = f"triton {row['triton_ms']:9.3f} ms" if row["triton_ms"] is not None else "triton       -   "
        torch_text = f"torch {row['torch_ms']:9.3f} ms" if row["torch_ms"] is not None else "torch       -   "
        print(f"  {row['case']:52s} {torch_text}  {triton_text}" + (f"  x{ratio:.1f}" if ratio else ""))
    return rows


def run_sweep(d: dict, device: torch.device, kernel, warmup: int, repeats: int) -> list[dict]:
    """Lookup forward / forward+backward for other points-per-program and warp counts."""
    default = (kernel.BLOCK_N, kernel.NUM_WARPS)
    rows = []
    try:
        for block in (64, 128, 256, 512):
            for warps in (2, 4, 8):
                kernel.BLOCK_N, kernel.NUM_WARPS = block, warps
                ms = time_pair({"fwd": lookup_case(d, "triton", False), "fwdbwd": lookup_case(d, "triton", True)},
                               device, warmup, repeats)
                rows.append({"block_n": block, "num_warps": warps, "forward_ms": ms["fwd"],
                             "forward_backward_ms": ms["fwdbwd"]})
                print(f"  sweep BLOCK_N={block:4d} num_warps={warps}: forward {ms['fwd']:.3f} ms, "
                      f"forward+backward {ms['fwdbwd']:.3f} ms")
    finally:
        kernel.BLOCK_N, kernel.NUM_WARPS = default
    return rows



def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def markdown(report: dict) -> str:
    lines = [f"# Blended hash-grid lookup: Triton kernel vs PyTorch on {report['device_name']}", "",
             f"torch {report['torch']}, triton {report['triton'] or '-'}, device `{report['device']}`. "
             f"{report['config']}.", "", report["kernel_note"], ""]
    if report["errors"]:
        lines += ["Main table: PyTorch and Triton runs interleaved (each Triton run starts after a PyTorch run "
                  "has swept the cache). The fp16 rows read fp16 copies of the per-frame tables and, like the "
                  "sweep, time the Triton lookup alone, back to back; their errors are against the fp32 "
                  "PyTorch lookup.", ""]
    lines += ["| case | PyTorch ms | Triton ms | speed-up |", "|---|---:|---:|---:|"]
    for row in report["timings"]:
        cells = [f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("torch_ms", "triton_ms")]
        speed = f"x{row['speedup']:.1f}" if row["speedup"] else "-"
        lines.append(f"| {row['case']} | {cells[0]} | {cells[1]} | {speed} |")
    if report["errors"]:
        lines += ["", "Agreement, Triton - PyTorch (fp32 unless noted):", "",
                  "| quantity | max abs error | reference max abs |", "|---|---:|---:|"]
        lines += [f"| {name} | {e['max_abs_error']:.3g} | {e['reference_max_abs']:.3g} |"
                  for name, e in report["errors"].items()]
    if report["sweep"]:
        lines += ["", "Lookup kernel, points per program x warps (fp32 tables):", "",
                  "| BLOCK_N | num_warps | forward ms | forward+backward ms |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['block_n']} | {r['num_warps']} | {r['forward_ms']:.3f} | {r['forward_backward_ms']:.3f} |"
                  for r in report["sweep"]]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--small", action="store_true", help="2^14 points instead of 2^18 (CPU runs)")
    parser.add_argument("--points", type=int, default=0, help="number of samples (overrides --small)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per case (default 20 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also time other kernel block sizes and warp counts")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here: use --device cpu")
    args.points = args.points or (2**14 if args.small else 2**18)
    args.repeats = args.repeats or (20 if args.device == "cuda" else 3)
    return args


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        kernel = backends.hash_grid_kernel("triton", device)
        note = "Triton kernel measured against the PyTorch path on the same inputs."
    except FaceNerfError as err:
        kernel, note = None, f"Triton kernel not measured: {err}. PyTorch path only."
    print(note)
    d = make_inputs(device, args.points)
    config = (f"grid {GRID}, K+1 = {N_TABLES} tables, B = {N_FRAMES} frames, N = {args.points} samples "
              f"(1/64 outside the box), median of {args.repeats} interleaved runs after {args.warmup} warm-ups")
    print(config)
    errors = max_errors(d) if kernel else {}
    for name, e in errors.items():
        print(f"  max abs error {name:38s} {e['max_abs_error']:.3g}  (reference max {e['reference_max_abs']:.3g})")
    timings = run_timings(d, device, kernel is not None, args.warmup, args.repeats)
    sweep = run_sweep(d, device, kernel, args.warmup, args.repeats) if kernel and args.sweep else []
    report = {"device": args.device, "device_name": describe_device(device), "torch": torch.__version__,
              "triton": sys.modules["triton"].__version__ if "triton" in sys.modules else None,
              "config": config, "points": args.points, "grid": GRID, "tables": N_TABLES, "frames": N_FRAMES,
              "kernel_note": note, "errors": errors, "timings": timings, "sweep": sweep,
              "block_n": getattr(kernel, "BLOCK_N", None), "num_warps": getattr(kernel, "NUM_WARPS", None)}
    stem = Path(args.out) / f"hash_grid_kernel_{args.device}"
    write_atomic(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_atomic(stem.with_suffix(".md"), markdown(report))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
