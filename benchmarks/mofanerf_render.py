"""MoFaNeRF image render: the fast path versus the straightforward reference, same weights, same run.

Commands (exact):

    # CPU, committed results: the tiny model of configs/mofanerf_tiny.txt trained by run_train.py
    python benchmarks/mofanerf_render.py --device cpu --res 128 --repeat 3 \\
        --ckpt demo_out/logs/mofanerf_tiny/checkpoints/step_00002000.pt --data demo_out/data/multiViewImages
    # CUDA, one unattended command (about 4 minutes on an H200): trains the full-size model for
    # 2 minutes on procedural faces inside the script, then renders 512^2
    python benchmarks/mofanerf_render.py --device cuda

Both paths render the same face (a held-out view) with the same trained weights:

* reference: ``MoFaNeRF.render_image(..., fast=False)`` - the straightforward path behind the
  switch: every coarse and fine sample of every ray through the whole network (density and
  colour), fp32;
* ours: ``fast=True`` - occupancy grids of the coarse and fine densities for these codes (built
  once per code set; their build time is reported separately and in the first-frame time), rays
  that meet no occupied cell skipped, samples only in occupied cells, density-only coarse pass,
  early ray termination, colour only where visible (on every other such sample, interpolated
  between), chunks sized to the device; also with bf16 autocast (``--amp``; on a CPU an extra
  row next to the fp32 one, which stays the headline) and with ``torch.compile`` (``--compile``;
  on by default on CUDA, asked for on a CPU), each measured against fp32.

Printed and written to ``benchmarks/results/mofanerf_render_<cpu|cuda>.{json,md,png}``: times,
ratios, image PSNR between the paths, samples evaluated per pixel, the device and the machine
load. On CPU times are process CPU time (the machine is shared), on CUDA synchronised wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mofanerf_setup import add_setup_args, data_render_case, heldout_view, image_psnr, prepare, procedural_codes  # noqa: E402

from facenerf.cli import bool_flag, make_parser, parse_args  # noqa: E402
from facenerf.core.rays import image_rays  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402
from facenerf.runtime import autocast, select_device, seed_everything  # noqa: E402
from facenerf.runtime import describe_device  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat: int = 1):
    """``(output, best seconds)``: process CPU time on CPU, synchronised wall time on CUDA."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync(device)
        start = clock()
        out = fn()
        _sync(device)
        best = min(best, clock() - start)
    return out, best


def run(args) -> tuple[dict, torch.Tensor]:
    device = select_device(args.device)
    seed_everything(args.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    prep = prepare(args, device)
    model = prep.model
    if prep.data is not None:
        codes, c2w, K, name = data_render_case(prep)
    else:
        codes = procedural_codes(prep, 0, 0)
        (c2w, K), name = heldout_view(prep, 0, 0), "procedural identity 0, neutral, held-out view"
    res = args.res or (512 if device.type == "cuda" else 128)
    K = K.scaled(res / K.width)
    near, far = prep.source["near_far"]
    rays = image_rays(K, c2w, near, far).to(device)

    def render(fast: bool, amp: str = "none"):
        with torch.no_grad(), autocast(device, amp):
            out = model.render_image(rays, codes, res, res, fast=fast)
        return out["rgb"].float(), out["n_evaluated"].float()

    with torch.no_grad():  # warm-up (allocator, kernels) outside the timing
        model.render_image(rays[:64], codes, 8, 8, fast=False)
    model.grid_cache.clear()
    (_, _), first = timed(lambda: render(True), device)  # grids built here (first frame of these codes)
    model.grid_cache.clear()
    _, build = timed(lambda: model.occupancy_grids(codes), device)
    (ref_rgb, ref_n), t_ref = timed(lambda: render(False), device, args.repeat if device.type == "cpu" else 1)
    (ours_rgb, ours_n), t_ours = timed(lambda: render(True), device, args.repeat)
    grids = model.occupancy_grids(codes)
    result = {
        "device_type": device.type, "device": describe_device(device), "torch": torch.__version__, "load_average_at_start": round(load, 2),
        "model": f"coarse {model.cfg.netdepth}x{model.cfg.netwidth}, fine {model.cfg.netdepth_fine}x{model.cfg.netwidth_fine}",
        **{f"weights_{k}": v for k, v in prep.source.items()}, "view": name, "resolution": res,
        "samples": f"{model.eval_settings.n_samples} + {model.eval_settings.n_importance}",
        "timed_by": "synchronised wall clock" if device.type == "cuda" else "process CPU time (shared machine)",
        "seconds_reference_fp32": t_ref, "seconds_ours_fp32": t_ours, "speedup_fp32": t_ref / t_ours,
        "seconds_grid_build": build, "seconds_ours_first_frame": first, "speedup_first_frame": t_ref / first,
        "psnr_ours_vs_reference_db": image_psnr(ours_rgb, ref_rgb),
        "max_abs_diff": float((ours_rgb - ref_rgb).abs().max()),
        "samples_per_pixel_reference": float(ref_n.mean()), "samples_per_pixel_ours": float(ours_n.mean()),
        "pixels_evaluated_ours": float((ours_n > 0).float().mean()),
        "occupied_cells_coarse_grid": grids[0].occupied_fraction(),
        "occupied_cells_fine_grid": grids[1].occupied_fraction() if grids[1] is not None else None,
        "skip_settings": str(model.skip_settings),
    }
    strip = torch.cat([ours_rgb.clamp(0, 1), ref_rgb.clamp(0, 1), (10 * (ours_rgb - ref_rgb).abs()).clamp(0, 1)], 1)
    if device.type == "cuda":
        write_results(result, strip.cpu(), Path(args.out), args.tag or device.type)  # kept if a switch fails
    result.update(switches(args, model, render, ref_rgb, ours_rgb, t_ref, device))
    return result, strip.cpu()


def switches(args, model, render, ref_rgb, ours_rgb, t_ref, device) -> dict:
    """bf16 autocast of the fast path and torch.compile (CUDA: with that autocast; CPU: fp32), each
    measured against fp32. A switch that fails is recorded as ``<name>_error``; the others stand."""
    out = {}
    compile_networks = device.type == "cuda" if args.compile is None else args.compile
    for name, wanted, measure in (("amp", args.amp != "none", autocast_render), ("compile", compile_networks, compiled)):
        if not wanted:
            continue
        try:
            out.update(measure(model, render, ref_rgb, ours_rgb, t_ref, device, args))
        except Exception as error:  # noqa: BLE001
            out[f"{name}_error"] = f"{type(error).__name__}: {error}"
            print(f"{name} switch failed: {out[f'{name}_error']}", flush=True)
    return out


def autocast_render(model, render, ref_rgb, ours_rgb, t_ref, device, args) -> dict:
    """The fast path under --amp autocast."""
    (rgb, _), seconds = timed(lambda: render(True, args.amp), device, args.repeat)
    return {f"seconds_ours_{args.amp}": seconds, f"speedup_{args.amp}": t_ref / seconds,
            f"psnr_{args.amp}_vs_reference_fp32_db": image_psnr(rgb, ref_rgb),
            f"psnr_{args.amp}_vs_ours_fp32_db": image_psnr(rgb, ours_rgb)}


def compiled(model, render, ref_rgb, ours_rgb, t_ref, device, args) -> dict:
    """The fast path with ``torch.compile``'d networks (CUDA: with the --amp autocast; CPU: fp32)."""
    amp = args.amp if device.type == "cuda" else "none"
    model.compile_networks()
    (_, _), warm = timed(lambda: render(True, amp), device)  # compilation happens here
    (rgb, _), seconds = timed(lambda: render(True, amp), device, args.repeat)
    out = {"compile_warmup_seconds": warm, f"seconds_ours_{amp}_compiled": seconds,
           f"speedup_{amp}_compiled": t_ref / seconds,
           f"psnr_{amp}_compiled_vs_reference_fp32_db": image_psnr(rgb, ref_rgb)}
    if amp == "none":
        out["psnr_compiled_vs_ours_fp32_db"] = image_psnr(rgb, ours_rgb)
    return out


def write_results(result: dict, strip, out_dir: Path, tag: str) -> list[Path]:
    """JSON + Markdown table + PNG (ours | reference | 10x absolute difference)."""
    from facenerf.io import write_image, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    png = write_image(out_dir / f"mofanerf_render_{tag}.png", strip)
    js = out_dir / f"mofanerf_render_{tag}.json"
    write_text(js, json.dumps(result, indent=2) + "\n")
    lines = ["# MoFaNeRF render: fast path vs the straightforward reference", "",
             "`python benchmarks/mofanerf_render.py " + " ".join(sys.argv[1:]) + "`", "",
             "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items()]
    md = out_dir / f"mofanerf_render_{tag}.md"
    write_text(md, "\n".join(lines) + "\n")
    return [js, md, png]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("Render-time benchmark of MoFaNeRF: fast path vs the straightforward reference.",
                         prog="benchmarks/mofanerf_render.py")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--res", type=int, default=0, help="image side (default 128 on CPU, 512 on CUDA)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="bf16", help="autocast of the fast path (on a CPU an extra row)")
    parser.add_argument("--compile", **bool_flag(None, "also time torch.compile'd networks (default: on CUDA only)"))
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--tag", default="", help="result file suffix (default: cpu or cuda)")
    add_setup_args(parser)
    args = parse_args(parser, argv)
    result, strip = run(args)
    tag = args.tag or result["device_type"]
    for key, value in result.items():
        print(f"{key:>40}: {value:.4g}" if isinstance(value, float) else f"{key:>40}: {value}")
    for path in write_results(result, strip, Path(args.out), tag):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
