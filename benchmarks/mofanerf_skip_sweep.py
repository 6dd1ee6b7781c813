"""MoFaNeRF fast path: speed against agreement over its skipping thresholds, same weights, same run.

Commands (exact):

    # CPU, committed results: the tiny model trained by `make demo` (or README stage 2)
    python benchmarks/mofanerf_skip_sweep.py --device cpu --res 128 \\
        --ckpt demo_out/logs/mofanerf_tiny/checkpoints/step_00002000.pt --data demo_out/data/multiViewImages

The reference render (``fast=False``) is made once; then the fast path renders the same view
with the default :class:`~facenerf.models.mofanerf.acceleration.SkipSettings` and with each
variant of :data:`VARIANTS` (occupancy threshold, grid margin, grid resolution, termination and
visible-colour thresholds), its grids rebuilt for each. Every row reports the time, the ratio to
the reference, image PSNR against the reference, samples evaluated per pixel and the share of
pixels that reach a network. The rows show what each option buys and costs in agreement on this
model; ``BOUNDED`` is the path before colour interpolation and fill (every drop bounded by a
threshold).

Written to ``benchmarks/results/mofanerf_skip_sweep_<cpu|cuda>.{json,md}``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mofanerf_render import timed  # noqa: E402
from mofanerf_setup import add_setup_args, data_render_case, heldout_view, image_psnr, prepare, procedural_codes  # noqa: E402

from facenerf.cli import make_parser, parse_args  # noqa: E402
from facenerf.core.rays import image_rays  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402
from facenerf.runtime import describe_device, select_device, seed_everything  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# the settings before the colour interpolation and fill (exact drops bounded by their thresholds)
BOUNDED = {"threshold": 1e-3, "dilation": 1, "early_stop_eps": 0.01, "min_weight": 0.001, "colour_stride": 1,
           "fill_colour": False, "samples_per_round": 4}

# changes to the default SkipSettings: one option at a time, then looser and stricter combinations
VARIANTS: list[dict] = [
    {}, {"colour_stride": 1}, {"colour_stride": 3}, {"fill_colour": False}, {"coarse_needs_fine_grid": True},
    {"dilation": 1}, {"resolution": 128}, {"threshold": 1e-3}, {"threshold": 1.0}, {"early_stop_eps": 0.01}, {"early_stop_eps": 0.1},
    {"min_weight": 0.001}, {"samples_per_round": 4},
    {"colour_stride": 3, "early_stop_eps": 0.1},
    BOUNDED,
]


def sweep(args) -> dict:
    device = select_device(args.device)
    seed_everything(args.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    prep = prepare(args, device)
    model = prep.model
    if prep.data is not None:
        codes, c2w, K, name = data_render_case(prep)
    else:
        codes, (c2w, K), name = procedural_codes(prep, 0, 0), heldout_view(prep, 0, 0), "procedural identity 0"
    res = args.res or (512 if device.type == "cuda" else 128)
    K = K.scaled(res / K.width)
    rays = image_rays(K, c2w, *prep.source["near_far"]).to(device)

    def render(fast: bool):
        with torch.no_grad():
            out = model.render_image(rays, codes, res, res, fast=fast)
        return out["rgb"].float(), out["n_evaluated"].float()

    with torch.no_grad():  # warm-up outside the timing
        model.render_image(rays[:64], codes, 8, 8, fast=False)
    (ref, ref_n), t_ref = timed(lambda: render(False), device, args.repeat)
    default, rows = model.skip_settings, []
    for change in VARIANTS:
        model.skip_settings = replace(default, **change)
        model.grid_cache.clear()
        coarse, fine = model.occupancy_grids(codes)  # built outside the timing
        (rgb, n), seconds = timed(lambda: render(True), device, args.repeat)
        rows.append({"change": change or "defaults", "seconds": seconds, "speedup": t_ref / seconds,
                     "psnr_vs_reference_db": image_psnr(rgb, ref), "samples_per_pixel": float(n.mean()),
                     "pixels_evaluated": float((n > 0).float().mean()),
                     "occupied_cells": [coarse.occupied_fraction(), fine.occupied_fraction() if fine is not None else None]})
        print(f"{str(change or 'defaults'):>90}  x{t_ref / seconds:5.2f}  {rows[-1]['psnr_vs_reference_db']:6.2f} dB"
              f"  {rows[-1]['samples_per_pixel']:5.1f} spp", flush=True)
    model.skip_settings = default
    return {"device": describe_device(device), "device_type": device.type, "torch": torch.__version__,
            "load_average_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            **{f"weights_{k}": v for k, v in prep.source.items()}, "view": name, "resolution": res,
            "seconds_reference_fp32": t_ref, "samples_per_pixel_reference": float(ref_n.mean()),
            "defaults": str(default), "rows": rows}


def write_results(result: dict, out_dir: Path, tag: str) -> list[Path]:
    from facenerf.io import write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"mofanerf_skip_sweep_{tag}.json", out_dir / f"mofanerf_skip_sweep_{tag}.md"
    write_text(js, json.dumps(result, indent=2) + "\n")
    lines = ["# MoFaNeRF fast path: speed against agreement over its thresholds", "",
             "`python benchmarks/mofanerf_skip_sweep.py " + " ".join(sys.argv[1:]) + "`", "",
             f"{result['device']}, torch {result['torch']}, load average at start {result['load_average_at_start']}; "
             f"weights {result.get('weights_weights', 'in-script')}; view {result['view']} at {result['resolution']}². "
             f"Reference (fast=False): {result['seconds_reference_fp32']:.3f} s, "
             f"{result['samples_per_pixel_reference']:.0f} samples per pixel. Defaults: `{result['defaults']}`.", "",
             "| change to the defaults | seconds | speed-up | PSNR vs reference (dB) | samples per pixel "
             "| pixels evaluated | occupied cells (coarse / fine) |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        occ = " / ".join("-" if v is None else f"{v:.3f}" for v in r["occupied_cells"])
        lines.append(f"| {r['change']} | {r['seconds']:.3f} | {r['speedup']:.2f} | {r['psnr_vs_reference_db']:.2f} "
                     f"| {r['samples_per_pixel']:.1f} | {r['pixels_evaluated']:.3f} | {occ} |")
    write_text(md, "\n".join(lines) + "\n")
    return [js, md]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("Speed against agreement of MoFaNeRF's fast path over its skipping thresholds.",
                         prog="benchmarks/mofanerf_skip_sweep.py")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--res", type=int, default=0, help="image side (default 128 on CPU, 512 on CUDA)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    add_setup_args(parser)
    args = parse_args(parser, argv)
    result = sweep(args)
    for path in write_results(result, Path(args.out), result["device_type"]):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
