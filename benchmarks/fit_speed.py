"""Wall time of a full single-image fit: our fitting path versus a straightforward reference.

Both runs use the same model (the architecture of the given config with random weights - the
weights do not change the amount of computation), the same synthetic target (a coloured
ellipse on black at ``fit_size``), the same schedule (iterations, resolution levels, rays per
iteration) and the same ray samples, in the same process:

* ours: :class:`facenerf.fitting.fitter.Fitter` as ``run_fit.py`` runs it - network weights
  frozen (``requires_grad = False``, so backward computes no weight gradients), the coarse pass
  without gradients and without its colour branch (it only places the importance samples),
  and the config's ``amp`` autocast (bf16 on a GPU in configs/fit.txt);
* reference: the same loop the straightforward way - weights left trainable as in the original
  code (excluded from the optimiser, but autograd still computes their gradients), the full
  coarse + fine render with gradients through both passes, fp32.

The first iteration's rendered colours of the two paths are compared (max abs difference, fp32)
to show they compute the same thing. On CPU the default config is ``configs/fit_tiny.txt``;
on CUDA ``configs/fit.txt`` (the official 2000 iterations, 1024 rays, 64 + 64 samples,
10 x 1024 fine MLP). ``--reference_iterations N`` times only the first N reference iterations
and scales to the full schedule: a rough estimate only, since early coarse levels can use fewer
rays than later ones; committed results time the full schedule.
Results go to ``benchmarks/results/fit_speed_<device>.json`` and ``.md``.

    python benchmarks/fit_speed.py                                 # CPU: fit_tiny.txt on the mofanerf_tiny.txt model
    python benchmarks/fit_speed.py --device cuda -c configs/fit.txt
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import parse_args  # noqa: E402
from facenerf.core.cameras import Intrinsics  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402
from facenerf.fitting.fitter import Fitter  # noqa: E402
from facenerf.fitting.inputs import FitTarget  # noqa: E402
from facenerf.fitting.objective import render_fit_rays  # noqa: E402
from facenerf.fitting.options import build_fit_parser, fit_command_from_args  # noqa: E402
from facenerf.fitting.stats import CodeStatistics  # noqa: E402
from facenerf.io import write_text  # noqa: E402
from facenerf.models.mofanerf.config import MoFaNeRFRunConfig  # noqa: E402
from facenerf.models.mofanerf.model import MoFaNeRF  # noqa: E402
from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args  # noqa: E402
from facenerf.preprocess.training.rig import mofanerf_pose  # noqa: E402
from facenerf.runtime import select_device  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def synthetic_target(size: int, focal_512: float) -> FitTarget:
    """A coloured ellipse on black, frontal camera at radius 16."""
    f = focal_512 * size / 512.0
    K = Intrinsics(size, size, f, f, size / 2.0, size / 2.0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = ((xx - size / 2) / (0.3 * size)) ** 2 + ((yy - size / 2) / (0.4 * size)) ** 2 < 1
    image = torch.zeros(size, size, 3)
    image[inside] = torch.tensor([0.8, 0.6, 0.5])
    image[inside & (yy > size / 2)] = torch.tensor([0.6, 0.4, 0.35])
    return FitTarget("bench", Path("bench.png"), image, inside, None, mofanerf_pose(0.0, 0.0), K, 8.0, 26.0,
                     "synthetic")


def build_model(run: MoFaNeRFRunConfig, device: torch.device) -> MoFaNeRF:
    torch.manual_seed(0)
    return MoFaNeRF(run.model, train_settings=run.render.settings(training=True),
                    eval_settings=run.render.settings()).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fit(model, target, stats, settings, render, device, runtime, iterations: int, reference: bool) -> float:
    """Seconds for ``iterations`` fitting steps of one path (see the module docstring)."""
    fitter = Fitter(model, target, stats, settings, render, device, runtime)
    if reference:
        for p in model.parameters():  # as in the original: out of the optimiser but still requiring grad
            p.requires_grad_(True)
    fitter.step()  # warm-up (allocations, kernels) outside the timing
    fitter.iteration = 0
    _sync(device)
    start = time.perf_counter()
    fitter.run(stop_at=iterations)
    _sync(device)
    return time.perf_counter() - start


def first_step_difference(model, target, stats, settings, render, device, runtime) -> float:
    """Max abs difference of the first iteration's colours: fast coarse pass vs full render (fp32)."""
    fitter = Fitter(model, target, stats, settings, render, device, replace(runtime, amp="none"))
    rays, _ = fitter._rays_and_targets(0)
    with torch.no_grad():
        codes = fitter.codes()
        fast = render_fit_rays(model, rays, codes, fitter.render_settings)
        full = model.render_rays(rays, codes, fitter.render_settings)["rgb"]
    return float((fast - full).abs().max())


def build_parser():
    parser = build_fit_parser()
    parser.prog = "benchmarks/fit_speed.py"
    parser.add_argument("--reference_iterations", type=int, default=0,
                        help="time only this many reference iterations and scale (0 = the full schedule)")
    parser.add_argument("--train_config", type=str, default="",
                        help="training config that fixes the model's sizes and render settings, as a checkpoint "
                             "would (empty: configs/mofanerf_tiny.txt on CPU, the released model on CUDA)")
    return parser


def trained_run(path: str) -> MoFaNeRFRunConfig:
    """The run a training config describes (as a checkpoint would store it); the released model's if empty."""
    if not path:
        return MoFaNeRFRunConfig()
    return run_config_from_args(parse_args(build_train_parser(), ["-c", path]))


def _relative(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'x86'})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-c" not in argv and "--config" not in argv:
        default = "fit.txt" if torch.cuda.is_available() and "cpu" not in argv else "fit_tiny.txt"
        argv = ["-c", str(ROOT / "configs" / default)] + argv
    args = parse_args(build_parser(), argv)
    cmd = fit_command_from_args(args)
    train_config = args.train_config or ("" if torch.cuda.is_available() and "cpu" not in argv
                                         else str(ROOT / "configs" / "mofanerf_tiny.txt"))
    run = trained_run(train_config).with_overrides(cmd.source.overrides)  # keys the fit config sets win
    runtime = replace(cmd.runtime, progress=False)
    runtime.apply_threads()
    device = select_device(runtime.device)
    model = build_model(run, device)
    target = synthetic_target(cmd.input.fit_size, cmd.input.focal)
    cfg = model.cfg
    stats = CodeStatistics(torch.zeros(cfg.shape_dim), torch.full((cfg.shape_dim,), 0.05),
                           torch.zeros(cfg.texture_dim), torch.full((cfg.texture_dim,), 0.3), 2)
    settings = replace(cmd.fit, n_rays=cmd.fit.n_rays or run.sampling.n_rays)
    render = run.render.settings()
    total = settings.schedule.iterations
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ours = time_fit(model, target, stats, settings, render, device, runtime, total, reference=False)
    ref_its = min(args.reference_iterations or total, total)
    ref_settings, ref_runtime = replace(settings, fast_render=False), replace(runtime, amp="none")
    reference = time_fit(model, target, stats, ref_settings, render, device, ref_runtime, ref_its,
                         reference=True) * total / ref_its
    diff = first_step_difference(model, target, stats, settings, render, device, runtime)
    result = {
        "device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "config": _relative(args.config), "iterations": total, "fit_size": cmd.input.fit_size,
        "rays_per_iteration": settings.n_rays, "samples": [run.render.N_samples, run.render.N_importance],
        "amp_ours": runtime.amp, "ours_s": round(ours, 3), "reference_s": round(reference, 3),
        "reference_iterations_timed": ref_its, "speedup": round(reference / ours, 3),
        "ours_ms_per_iteration": round(1000 * ours / total, 3),
        "first_step_max_abs_diff_fp32": diff, "load_average_at_start": round(load, 2),
    }
    tag = "cuda" if device.type == "cuda" else "cpu"
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / f"fit_speed_{tag}.json", json.dumps(result, indent=1) + "\n")
    write_text(RESULTS / f"fit_speed_{tag}.md", markdown(result))
    print(markdown(result))
    print(f"wrote {RESULTS / f'fit_speed_{tag}.json'} and .md")
    return 0


def markdown(r: dict) -> str:
    scaled = "" if r["reference_iterations_timed"] == r["iterations"] else \
        f" (reference timed over {r['reference_iterations_timed']} iterations and scaled)"
    return (f"# Single-image fit speed on {r['device']}\n\n"
            f"torch {r['torch']}, {r['threads']} threads, config `{r['config']}`, load average at start "
            f"{r['load_average_at_start']}.\n\n"
            f"Full schedule: {r['iterations']} iterations, up to {r['rays_per_iteration']} rays each (fewer when the "
            "mask region of a coarse level is smaller), "
            f"{r['samples'][0]} + {r['samples'][1]} samples per ray, fit size {r['fit_size']} px{scaled}.\n\n"
            "| path | wall time (s) | ms / iteration |\n|---|---:|---:|\n"
            f"| ours (frozen weights, gradient-free density-only coarse pass, amp={r['amp_ours']}) | {r['ours_s']} | "
            f"{r['ours_ms_per_iteration']} |\n"
            f"| reference (trainable weights, full two-pass render with gradients, fp32) | {r['reference_s']} | "
            f"{round(1000 * r['reference_s'] / r['iterations'], 3)} |\n\n"
            f"Speed-up: x{r['speedup']}. First-iteration colours, fast vs full render (fp32): max abs difference "
            f"{r['first_step_max_abs_diff_fp32']:.2e}.\n")


if __name__ == "__main__":
    run_cli(main)
