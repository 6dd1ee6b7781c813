"""Single-image fit: the fast path versus the straightforward reference, same weights, same target.

Commands (exact):

    # CPU, committed results: the tiny model trained by run_train.py -c configs/mofanerf_tiny.txt,
    # fitting a test-split view of data/tiny with configs/fit_tiny.txt (300 iterations)
    python benchmarks/fit_speed.py --device cpu -c configs/fit_tiny.txt \\
        --ckpt logs/mofanerf_tiny/checkpoints/step_00003000.pt --data data/tiny/multiViewImages
    # CUDA, one unattended command (about 4 minutes on an H200): trains the full-size model for
    # 2 minutes on procedural faces inside the script, then runs the default fit (configs/fit.txt)
    python benchmarks/fit_speed.py --device cuda

Both fits start from the same state and run the same schedule (iterations, resolution levels,
rays, learning rates) on the same target with the same trained weights:

* ours: :class:`facenerf.fitting.fitter.Fitter` as ``run_fit.py`` runs it (``fast_render``):
  frozen weights, occupancy grids of the coarse and fine densities for the current codes
  (rebuilt as the codes move), background rays skipped, samples only in occupied cells, a
  density-only gradient-free coarse pass, early ray termination, the config's ``amp``;
* reference: ``fast_render = false``: the full coarse + fine render with gradients through both
  passes, weights left requiring gradients as in the original code, fp32.

Reported: times (synchronised wall time on CUDA, process CPU time on a shared CPU) and their ratio, the final held-out PSNR of each fit (its codes rendered
with the reference renderer at the target's other views, pose correction applied) and the
difference, and samples evaluated per ray. ``--reference_iterations N`` (default: the whole
schedule on CPU, 50 on CUDA) times only the first N reference iterations and scales the time;
the reference's held-out PSNR is then not measured. Results go to
``benchmarks/results/fit_speed_<cpu|cuda>.{json,md}`` (``--out`` for another folder).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mofanerf_setup import add_setup_args, prepare, procedural_fit_case  # noqa: E402

from facenerf.cli import parse_args  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402
from facenerf.fitting.fitter import Fitter  # noqa: E402
from facenerf.fitting.options import build_fit_parser, fit_command_from_args  # noqa: E402
from facenerf.fitting.views import FaceState, corrected_pose, heldout_psnr  # noqa: E402
from facenerf.io import write_text  # noqa: E402
from facenerf.runtime import describe_device, select_device  # noqa: E402

DEFAULT_FIT_RAYS = 1024  # rays per iteration of the procedural case (a training run's N_rand otherwise)

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def build_parser():
    parser = build_fit_parser()
    parser.prog = "benchmarks/fit_speed.py"
    parser.add_argument("--reference_iterations", type=int, default=-1,
                        help="time only this many reference iterations and scale (0 = the whole schedule; "
                             "default: whole on CPU, 50 on CUDA)")
    parser.add_argument("--fit_identity", type=str, default="", help="--data: identity folder to fit (default: first)")
    parser.add_argument("--eval_size", type=int, default=128, help="side of the held-out renders that score a fit")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the results files")
    add_setup_args(parser)
    return parser


def data_case(args, cmd, device):
    """Model, render settings, target, held-out views, code statistics and fit settings from
    --ckpt/--data (as run_fit.py loads them)."""
    from facenerf.data.facescape import parse_multiview
    from facenerf.fitting.inputs import load_target, sibling_views
    from facenerf.fitting.workflow import fit_settings, load_code_statistics
    from facenerf.models.mofanerf.checkpoints import load_run

    loaded = load_run(args.ckpt, cmd.source.overrides)
    data = parse_multiview(args.data, split="test")
    ident = args.fit_identity or sorted(data.identities, key=lambda s: (len(s), s))[0]
    if ident not in data.identities:
        raise FaceNerfError(f"identity {ident} has no test views in {args.data}")
    frames = data.identities[ident].frames
    frame = next((f for f in frames if f.expression == 1), frames[0])  # a non-neutral face when there is one
    render = loaded.run.render
    target = load_target(frame.image_path, None, cmd.input.fit_size, cmd.input.focal, render.near, render.far)
    views = sibling_views(target, cmd.output.eval_views)
    stats = load_code_statistics(cmd.code_stats, loaded)
    source = {"weights": str(loaded.checkpoint), "step": loaded.step}
    return loaded.model, loaded.render_settings, target, views, stats, source, fit_settings(cmd.fit, loaded)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_fit(model, target, stats, settings, render, device, runtime, reference: bool, iterations: int):
    """One fit from the deterministic start; returns (fitter, seconds, mean samples per ray).
    Seconds are synchronised wall time on CUDA, process CPU time on a (shared) CPU."""
    fitter = Fitter(model, target, stats, replace(settings, fast_render=not reference), render, device,
                    replace(runtime, amp="none" if reference else runtime.amp))
    if reference:  # as in the original: out of the optimiser but still requiring gradients
        for p in model.parameters():
            p.requires_grad_(True)
    samples = []
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    _sync(device)
    start = clock()
    fitter.run(on_iteration=lambda f: samples.append(f.last_scalars["samples_per_ray"]), stop_at=iterations)
    _sync(device)
    seconds = clock() - start
    for p in model.parameters():
        p.requires_grad_(False)
    return fitter, seconds, sum(samples) / max(len(samples), 1)


def eval_views(views, size: int):
    """The held-out views at ``size`` pixels (area-downscaled images, rescaled intrinsics)."""
    import torch.nn.functional as F

    from facenerf.fitting.views import intrinsics_at

    out = []
    for image, c2w, K in views:
        if K.width > size:
            image = F.interpolate(image.permute(2, 0, 1)[None], size=(size, size), mode="area")[0].permute(1, 2, 0)
            K = intrinsics_at(K, size)
        out.append((image, c2w, K))
    return out


def heldout(model, fitter, views, render) -> float:
    """Held-out PSNR of a fit, rendered with the reference path (the same evaluation for both fits)."""
    result = fitter.result()
    moved = [(image, corrected_pose(result, c2w), K) for image, c2w, K in views]
    return heldout_psnr(model, FaceState.from_fit(result), moved, render, fast=False)[0]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cuda = "--device" in argv and argv[argv.index("--device") + 1].startswith("cuda")
    if "-c" not in argv and "--config" not in argv:
        argv = ["-c", str(ROOT / "configs" / ("fit.txt" if cuda else "fit_tiny.txt"))] + argv
    parser = build_parser()
    args = parse_args(parser, argv)
    cmd = fit_command_from_args(args)
    runtime = replace(cmd.runtime, progress=False)
    device = select_device(runtime.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, runtime.threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.data:
        model, render, target, views, stats, source, settings = data_case(args, cmd, device)
    else:
        prep = prepare(args, device)
        model, render, source = prep.model, prep.render, prep.source
        target, views, stats = procedural_fit_case(prep, cmd.input.fit_size, cmd.output.eval_views)
        settings = cmd.fit if cmd.fit.n_rays else replace(cmd.fit, n_rays=DEFAULT_FIT_RAYS)
    if not views:
        raise FaceNerfError("the target has no held-out views to score the fit on")
    views = eval_views(views, args.eval_size)
    total = settings.schedule.iterations
    ref_its = args.reference_iterations if args.reference_iterations >= 0 else (50 if device.type == "cuda" else 0)
    ref_its = min(ref_its or total, total)
    with torch.no_grad():  # warm-up outside the timing (allocator, kernels)
        model.render_image(target_rays(target, device), model.face_codes(stats.shape_mean.to(device)[None],
                           expression_index=0, texture=stats.texture_mean.to(device)[None]), 8, 8, fast=False)
    for reference in (False, True):  # and one-time costs (the optimiser's first import of torch._dynamo: 1.3 s
        run_fit(model, target, stats, settings, render, device, runtime, reference, 2)  # on CPU) charged to neither
    ours, t_ours, spp_ours = run_fit(model, target, stats, settings, render, device, runtime, False, total)
    ref, t_ref, spp_ref = run_fit(model, target, stats, settings, render, device, runtime, True, ref_its)
    psnr_ours = heldout(model, ours, views, render)
    psnr_ref = heldout(model, ref, views, render) if ref_its == total else None
    result = {
        "device_type": device.type,
        "device": describe_device(device),
        "torch": torch.__version__, "load_average_at_start": round(load, 2),
        **{f"weights_{k}": v for k, v in source.items()}, "target": target.name,
        "config": str(Path(args.config).resolve().relative_to(ROOT)) if args.config else "",
        "iterations": total, "fit_size": cmd.input.fit_size, "rays_per_iteration": settings.n_rays,
        "samples": [render.n_samples, render.n_importance], "amp_ours": runtime.amp,
        "ours_s": round(t_ours, 3), "reference_s": round(t_ref * total / ref_its, 3),
        "reference_iterations_timed": ref_its, "speedup": round(t_ref * total / ref_its / t_ours, 3),
        "samples_per_ray_ours": round(spp_ours, 2), "samples_per_ray_reference": round(spp_ref, 2),
        "heldout_views": len(views), "heldout_size": views[0][2].width, "heldout_psnr_ours_db": round(psnr_ours, 3),
        "heldout_psnr_reference_db": None if psnr_ref is None else round(psnr_ref, 3),
        "heldout_psnr_difference_db": None if psnr_ref is None else round(psnr_ours - psnr_ref, 3),
        "grid_builds_ours": ours.fit_grid.builds,
    }
    tag, out = device.type, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"fit_speed_{tag}.json", json.dumps(result, indent=1) + "\n")
    write_text(out / f"fit_speed_{tag}.md", markdown(result, argv))
    print(markdown(result, argv))
    print(f"wrote {out / f'fit_speed_{tag}.json'} and .md")
    return 0


def target_rays(target, device):
    from facenerf.core.rays import image_rays
    from facenerf.fitting.views import intrinsics_at

    return image_rays(intrinsics_at(target.K, 8), target.c2w, target.near, target.far).to(device)


def markdown(r: dict, argv: list[str]) -> str:
    scaled = "" if r["reference_iterations_timed"] == r["iterations"] else \
        f" (reference timed over {r['reference_iterations_timed']} iterations and scaled; its held-out PSNR not measured)"
    ref_psnr = "not measured" if r["heldout_psnr_reference_db"] is None else f"{r['heldout_psnr_reference_db']}"
    return (f"# Single-image fit: fast path vs the straightforward reference on {r['device']}\n\n"
            f"`python benchmarks/fit_speed.py {' '.join(argv)}`\n\n"
            f"torch {r['torch']}, load average at start {r['load_average_at_start']}; weights {r['weights_weights']}; "
            f"target {r['target']}.\n\n"
            f"Schedule: {r['iterations']} iterations, up to {r['rays_per_iteration']} rays each, "
            f"{r['samples'][0]} + {r['samples'][1]} samples per ray, fit size {r['fit_size']} px{scaled}.\n\n"
            f"| path | {'wall' if r['device_type'] == 'cuda' else 'process CPU'} time (s) | samples evaluated per ray | held-out PSNR (dB) |\n"
            "|---|---:|---:|---:|\n"
            f"| ours (grids, skipping, termination, amp={r['amp_ours']}) | {r['ours_s']} | "
            f"{r['samples_per_ray_ours']} | {r['heldout_psnr_ours_db']} |\n"
            f"| reference (dense two-pass render with gradients, fp32) | {r['reference_s']} | "
            f"{r['samples_per_ray_reference']} | {ref_psnr} |\n\n"
            f"Speed-up: x{r['speedup']}. Held-out PSNR difference (ours - reference): "
            f"{r['heldout_psnr_difference_db']} dB over {r['heldout_views']} views. "
            f"Grid rebuilds during our fit: {r['grid_builds_ours']}.\n")


if __name__ == "__main__":
    run_cli(main)
