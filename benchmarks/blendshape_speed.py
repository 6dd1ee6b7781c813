"""NeRFBlendShape: our marched path versus a straightforward dense reference, same weights, same run.

Commands (exact):

    # CPU, committed results: generates a 200-frame 96^2 talking head, trains
    # configs/blendshape_tiny.txt on it for 120 s of CPU time, then times both paths
    python benchmarks/blendshape_speed.py --device cpu
    # an existing run and its dataset
    python benchmarks/blendshape_speed.py --ckpt logs/trial_talk/checkpoints/step_00001080.pt --data data/talk
    # CUDA, one unattended command: the release's sizes on a 400-frame 256^2 talking head,
    # trained for 5 minutes, then fps at 512^2 and the time to the held-out PSNR plateau
    python benchmarks/blendshape_speed.py --device cuda

Both paths render and train the same head (the same trained weights, frames and ray batches):

* ours: what ``main_nerf.py --cuda_ray`` runs - occupancy-grid marching through the
  expression-aware grid (samples only in occupied cells), early ray termination (transmittance
  below 1e-4 in training, 1e-2 in renders), packed front-to-back evaluation, grid updates every
  ``update_extra_interval`` steps;
* reference: the same field, box, step length and losses computed straightforwardly - every
  step of the lattice through the box sampled (stratified: one uniform depth inside each
  segment in training, the segment midpoint in renders), density and colour evaluated at every
  sample, dense ``[rays, samples]`` compositing, no occupancy grid, no early termination.

The trained weights come from ``--ckpt``/``--data``, or from training the config in this
script for ``--train_seconds`` (the step count is set from a short calibration - steps timed
after the first occupancy-grid update - so that the run's schedule - mask loss, patch loss,
learning-rate decay - completes in about that time). Held-out
PSNR is measured during that training; the plateau is the first point within ``--plateau_db``
of the best. Reported: training iterations/s of both paths on the same batches, render
ms/frame at 512^2 and at the training size, image PSNR between the two paths' renders,
samples evaluated per pixel, the held-out PSNR of the trained head, and on CUDA fps at 512^2.
Times are process CPU time on the CPU (the machine is shared) and synchronised wall time on
CUDA. Results go to ``benchmarks/results/blendshape_speed_<cpu|cuda>.{json,md,png}``.
"""

from __future__ import annotations

import copy
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import make_parser, parse_args  # noqa: E402
from facenerf.core import volume_rendering as vr  # noqa: E402
from facenerf.core.fields import as_field, evaluate  # noqa: E402
from facenerf.core.rays import RayBundle, image_rays  # noqa: E402
from facenerf.core.renderer import MarchSettings, render_chunked, render_image_marched, unit_directions  # noqa: E402
from facenerf.core.samplers import uniform  # noqa: E402
from facenerf.core.scene_box import ray_box_intersect  # noqa: E402
from facenerf.engine.trainer import Trainer, move_to  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402
from facenerf.metrics import psnr  # noqa: E402
from facenerf.runtime import autocast, describe_device, select_device, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CPU_DEFAULTS = {"run_config": "configs/blendshape_tiny.txt", "frames": 200, "size": 96, "train_seconds": 120.0,
                "eval_every_s": 15.0, "extra": "--use_patch_loss"}
CUDA_DEFAULTS = {"run_config": "", "frames": 400, "size": 256, "train_seconds": 300.0, "eval_every_s": 10.0,
                 "extra": "--cuda_ray --density_activation trunc_exp --use_patch_loss --preload 2 --fp16"}


# ---------------------------------------------------------------------- the straightforward reference
def dense_reference(rays: RayBundle, field, grid, settings: MarchSettings, generator=None) -> dict:
    """Every lattice step through the box, evaluated and composited densely (see the module docstring).

    Same signature and per-ray outputs as :func:`facenerf.core.renderer.render_rays_marched`
    (``grid`` only supplies the box). Segment ``k`` of a ray is ``[t_in + k * step, min(t_in +
    (k + 1) * step, t_out)]`` between its box entry and exit (clipped to near/far): the lattice
    the marcher uses without perturbation. Returns ``rgb`` [R, 3] (over the background),
    ``depth`` [R], ``opacity`` [R] and ``n_samples`` [R] (density evaluations).
    """
    field = as_field(field)
    n_rays, step = len(rays), settings.step_size
    t_min, t_max = ray_box_intersect(rays.origins, rays.directions, grid.aabb)
    t_in = torch.maximum(t_min, rays.near[:, 0])                                   # [R]
    t_out = torch.minimum(t_max, rays.far[:, 0])                                   # [R]
    span = (t_out - t_in).clamp_min(0.0)
    n_steps = int(math.ceil(float(span.max()) / step)) if n_rays else 0
    if n_steps == 0:
        zeros = rays.origins.new_zeros(n_rays)
        rgb = vr.composite_background(rays.origins.new_zeros(n_rays, 3), zeros, settings.background)
        return {"rgb": rgb, "depth": zeros, "opacity": zeros, "n_samples": zeros}
    k = torch.arange(n_steps, device=t_in.device, dtype=t_in.dtype)
    starts = t_in[:, None] + k[None, :] * step                                     # [R, S]
    ends = torch.minimum(starts + step, t_out[:, None])                            # [R, S]
    valid = ends > starts                                                          # [R, S]
    u = uniform(starts.shape, starts, generator) if settings.perturb else 0.5      # stratified in training
    t = starts + u * (ends - starts)                                               # [R, S]
    deltas = (ends - starts).clamp_min(0.0)
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1, keepdim=True)
    ridx, sidx = torch.nonzero(valid, as_tuple=True)
    points = rays.origins[ridx] + rays.directions[ridx] * t[ridx, sidx, None]      # [M, 3]
    sigma, rgb = evaluate(field, points, unit_directions(rays.directions)[ridx])  # [M], [M, 3]
    sigma_d = deltas.new_zeros(n_rays, n_steps).index_put((ridx, sidx), sigma.to(deltas.dtype))
    rgb_d = deltas.new_zeros(n_rays, n_steps, 3).index_put((ridx, sidx), rgb.to(deltas.dtype))
    weights = vr.weights_from_alpha(vr.alpha_from_density(torch.relu(sigma_d), deltas))  # [R, S]
    opacity = vr.accumulate(weights)
    return {"rgb": vr.composite_background(vr.accumulate(weights, rgb_d), opacity, settings.background),
            "depth": vr.accumulate(weights, t), "opacity": opacity, "n_samples": valid.sum(-1).float()}


@contextlib.contextmanager
def reference_training(model):
    """The model's own training step and losses, with the dense reference as its renderer and no
    occupancy-grid updates (``cuda_ray`` off) for as long as the context lasts."""
    import facenerf.models.blendshape.model as model_module

    marched, run = model_module.render_rays_marched, model.run
    model_module.render_rays_marched = dense_reference
    model.run = replace(run, scene=replace(run.scene, cuda_ray=False))
    try:
        yield model
    finally:
        model_module.render_rays_marched, model.run = marched, run


# ---------------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Process CPU time on the CPU (shared machine), synchronised wall time on CUDA."""

    def __init__(self, device):
        self.device = device
        self.read = time.perf_counter if device.type == "cuda" else time.process_time

    def __call__(self) -> float:
        _sync(self.device)
        return self.read()


def timed(fn, clock: Clock, repeat: int = 1):
    """``(output, best seconds)`` over ``repeat`` runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = clock()
        out = fn()
        best = min(best, clock() - start)
    return out, best


# ---------------------------------------------------------------------- data, run, training
def make_dataset(args, work: Path) -> Path:
    """``--data``, or a talking head generated into the work folder."""
    if args.data:
        return Path(args.data)
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, generate_talking_head
    from facenerf.preprocess.training.gl import select_gl_platform

    select_gl_platform("auto")
    cfg = TalkingHeadSettings(out=work / "talk", frames=args.frames, size=args.size, seed=args.seed, progress=False)
    cfg.check()
    generate_talking_head(cfg)
    return cfg.out


def run_config(args, data_path: Path, workspace: Path):
    """The run ``main_nerf.py`` would train with the config file, the extra flags and this device."""
    from facenerf.models.blendshape.options import build_parser, run_config_from_args

    argv = [str(data_path), "--workspace", str(workspace), "--device", args.device, "--threads", str(args.threads),
            "--progress", "false", "--seed", str(args.seed)] + (["-c", str(ROOT / args.run_config)] if args.run_config else [])
    return run_config_from_args(parse_args(build_parser(), argv + args.extra.split()))


def trainer_for(model, data, batches, device, workspace: Path) -> Trainer:
    """The engine's Trainer with the run's optimiser and schedule, nothing written during timing."""
    from facenerf.models.blendshape.training import trainer_config

    cfg = replace(trainer_config(data.run, len(data.train)), out_dir=workspace, eval_every=0, save_every=0,
                  log_every=0, tensorboard=False, progress=False)
    return Trainer(model, batches, cfg, device, data.run.to_dict(), model_name="nerfblendshape")


def head_and_batches(run, data):
    from facenerf.models.blendshape.data import HeadBatches
    from facenerf.models.blendshape.training import build_head

    model = build_head(run, data)
    batches = HeadBatches(data, run.train.num_rays, run.runtime.seed, model.schedule.patch_active,
                          run.train.patch_size)
    return model, batches


def heldout_psnr(model, data, frames: list[int]) -> float:
    from facenerf.models.blendshape.training import render_frame

    model.eval()
    scores = [float(psnr(render_frame(model, data, data.val.poses[i], data.val.coefficients[i]).cpu(),
                         data.val.image(i).float().cpu())) for i in frames]
    return sum(scores) / len(scores)


def train_for(args, run, device, clock: Clock, workspace: Path, say) -> tuple:
    """Train the head for about ``--train_seconds`` of (CPU or GPU) time; returns (model, data, record)."""
    from facenerf.models.blendshape.data import load_head_data
    from facenerf.models.blendshape.training import held_out_indices

    data = load_head_data(run, device)
    probe, probe_batches = head_and_batches(data.run, data)
    trainer = trainer_for(probe, data, probe_batches, device, workspace / "probe")
    settle = data.run.scene.update_extra_interval if data.run.scene.cuda_ray else 0  # the first grid update
    for step in range(settle + args.calibration_steps):
        if step == settle:
            start = clock()
        trainer.train_step(move_to(probe_batches(step), device), step)
    per_step = (clock() - start) / args.calibration_steps
    steps = max(args.calibration_steps, int(args.train_seconds / per_step))
    run = replace(data.run, train=replace(data.run.train, iters=steps))
    data = replace(data, run=run)
    model, batches = head_and_batches(run, data)
    trainer = trainer_for(model, data, batches, device, workspace)
    curve_frames = held_out_indices(len(data.val), args.curve_frames)
    curve, spent, next_eval = [], 0.0, args.eval_every_s
    say(f"training {steps} steps (calibrated at {per_step * 1e3:.0f} ms/step) for about {args.train_seconds:.0f} s")
    for step in range(steps):
        batch = move_to(batches(step), device)
        start = clock()
        trainer.train_step(batch, step)
        spent += clock() - start
        if spent >= next_eval or step == steps - 1:
            with torch.no_grad():
                curve.append({"step": step + 1, "seconds": round(spent, 2),
                              "psnr_db": round(heldout_psnr(model, data, curve_frames), 3)})
            next_eval = spent + args.eval_every_s
            say(f"  step {step + 1}: {spent:.0f} s, held-out PSNR {curve[-1]['psnr_db']:.2f} dB")
    best = max(point["psnr_db"] for point in curve)
    plateau = next(point for point in curve if point["psnr_db"] >= best - args.plateau_db)
    record = {"train_steps": steps, "train_seconds": round(spent, 2), "calibration_ms_per_step": round(per_step * 1e3, 2),
              "curve_frames": len(curve_frames), "curve": curve, "plateau_db": args.plateau_db,
              "plateau_step": plateau["step"], "plateau_seconds": plateau["seconds"], "plateau_psnr_db": plateau["psnr_db"]}
    return model, data, record


def load_trained(args, device) -> tuple:
    """``--ckpt`` with ``--data``: the stored run on this dataset and device."""
    from facenerf.models.blendshape.checkpoints import load_blendshape
    from facenerf.models.blendshape.data import load_head_data

    model, info = load_blendshape(args.ckpt)
    stored = info["run"]
    run = replace(stored, data=replace(stored.data, path=str(args.data)),
                  runtime=replace(stored.runtime, device=args.device, threads=args.threads, progress=False))
    data = load_head_data(run, device)
    return model.to(device), data, {"weights": str(args.ckpt), "train_steps": info["step"]}


# ---------------------------------------------------------------------- the comparisons
def training_rates(args, model, data, device, clock: Clock, workspace: Path) -> dict:
    """Iterations/s of both paths from copies of the trained head on the same batches (the steps
    after the trained ones, so that the late phase's losses are in; first ``warmup`` untimed)."""
    from facenerf.models.blendshape.data import HeadBatches

    first = int(data.run.train.total_steps(len(data.train)))
    out = {}
    for name in ("ours", "reference"):
        head = copy.deepcopy(model)
        batches = HeadBatches(data, head.run.train.num_rays, head.run.runtime.seed, head.schedule.patch_active,
                              head.run.train.patch_size)
        trainer = trainer_for(head, data, batches, device, workspace / name)
        samples, seconds = [], 0.0
        context = reference_training(head) if name == "reference" else contextlib.nullcontext()
        with context:
            for i in range(args.warmup + args.timing_steps):
                step = first + i
                batch = move_to(batches(step), device)
                start = clock()
                _, scalars = trainer.train_step(batch, step)
                if i >= args.warmup:
                    seconds += clock() - start
                    samples.append(scalars["samples_per_ray"])
        out[name] = {"iterations_per_s": round(args.timing_steps / seconds, 3),
                     "ms_per_iteration": round(1e3 * seconds / args.timing_steps, 2),
                     "samples_per_ray": round(sum(samples) / len(samples), 2)}
    out["speedup"] = round(out["ours"]["iterations_per_s"] / out["reference"]["iterations_per_s"], 2)
    out.update(steps_timed=args.timing_steps, from_step=first, rays_per_step=data.run.train.num_rays,
               patch_loss_in_timed_steps=bool(model.schedule.use_patch))
    return out


def render_case(model, data, size: int, index: int = 0):
    """Rays of held-out frame ``index`` at ``size``^2, its bound head field and background [size, size, 3]."""
    import torch.nn.functional as F

    device = model.field.tables.device
    K = data.intrinsics.scaled(size / data.intrinsics.width)
    center = data.pixel_center * size / data.intrinsics.width
    rays = image_rays(K, data.val.poses[index].to(device).float(), data.near, data.far, center)
    head = model.field.bind(data.val.coefficients[index].to(device).float())
    bg = F.interpolate(data.background.permute(2, 0, 1)[None].float(), size=(size, size), mode="bilinear",
                       align_corners=False)[0].permute(1, 2, 0).to(device)
    return rays, head, bg


def render_pair(args, model, data, size: int, clock: Clock, amp: str = "none") -> dict:
    """Both paths render held-out frame 0 at ``size``^2: times, agreement and samples per pixel."""
    model.eval()
    rays, head, bg = render_case(model, data, size)
    ours_settings = model.march_settings(training=False)
    ref_settings = replace(ours_settings, chunk_rays=max(256, (1 << 18) // (2 * model.run.scene.march_steps)))

    def ours():
        with torch.no_grad(), autocast(clock.device, amp):
            return render_image_marched(rays, head, model.grid, ours_settings, size, size)

    def reference():
        return render_chunked(lambda part: dense_reference(part, head, model.grid, ref_settings), rays,
                              ref_settings.chunk_rays, size, size)

    ours()  # warm-up (allocator, kernels) outside the timing
    out_ours, t_ours = timed(ours, clock, args.repeat)
    out_ref, t_ref = timed(reference, clock, 1)
    img_ours = (out_ours["rgb"].float() + (1 - out_ours["opacity"].float())[..., None] * bg).clamp(0, 1)
    img_ref = (out_ref["rgb"] + (1 - out_ref["opacity"])[..., None] * bg).clamp(0, 1)
    truth = {}
    if size == data.intrinsics.width:  # which path the truth agrees with (the grid-trained field is
        image = data.val.image(0).float().cpu()  # unconstrained in cells the grid marks empty)
        truth = {"psnr_ours_vs_truth_db": round(float(psnr(img_ours.cpu(), image)), 2),
                 "psnr_reference_vs_truth_db": round(float(psnr(img_ref.cpu(), image)), 2)}
    return {**truth, "size": size, "ms_ours": round(1e3 * t_ours, 2), "ms_reference": round(1e3 * t_ref, 2),
            "speedup": round(t_ref / t_ours, 2), "fps_ours": round(1.0 / t_ours, 2),
            "psnr_ours_vs_reference_db": round(float(psnr(img_ours.cpu(), img_ref.cpu())), 2),
            "max_abs_diff": round(float((img_ours - img_ref).abs().max()), 4),
            "samples_per_pixel_ours": round(float(out_ours["n_samples"].float().mean()), 2),
            "samples_per_pixel_reference": round(float(out_ref["n_samples"].mean()), 2),
            "_images": (img_ours.cpu(), img_ref.cpu())}



def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def measure(args, device, work: Path, say) -> tuple[dict, torch.Tensor]:
    clock = Clock(device)
    result = {"device_type": device.type, "device": describe_device(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_average_at_start": load_average(),
              "timed_by": "synchronised wall clock" if device.type == "cuda" else
              "process CPU time (shared machine; one process, --threads threads)"}
    if args.ckpt:
        model, data, record = load_trained(args, device)
    else:
        data_path = make_dataset(args, work)
        result["dataset"] = str(args.data) if args.data else \
            f"generated talking head: {args.frames} frames at {args.size}x{args.size}, seed {args.seed}"
        model, data, record = train_for(args, run_config(args, data_path, work / "workspace"), device, clock,
                                        work / "workspace", say)
    run = data.run
    result.update(config=args.run_config or "(the release's sizes)", extra_flags=args.extra,
                  training_frames=len(data.train), held_out_frames=len(data.val),
                  image_size=f"{data.intrinsics.width}x{data.intrinsics.height}", expr_dim=data.expr_dim,
                  march_steps=run.scene.march_steps, grid_size=run.scene.grid_size,
                  hash_grid=f"{run.model.num_levels} levels x {run.model.level_dim}, finest "
                            f"{run.model.desired_resolution}, 2^{run.model.log2_hashmap_size} rows",
                  occupied_cells=round(model.grid.occupied_fraction(), 4), **record)
    with torch.no_grad():
        result["heldout_psnr_db"] = round(heldout_psnr(model, data, list(range(len(data.val)))), 3)
    say(f"held-out PSNR {result['heldout_psnr_db']:.2f} dB over {len(data.val)} frames; timing training steps")
    result["training"] = training_rates(args, model, data, device, clock, work / "timing")
    renders = {}
    for size in sorted({data.intrinsics.width, args.render_size}):
        say(f"rendering {size}x{size} with both paths")
        renders[str(size)] = render_pair(args, model, data, size, clock)
    if device.type == "cuda" and args.amp != "none":
        try:  # a failing switch is recorded; the fp32 figures stand
            renders[f"{args.render_size}_{args.amp}"] = render_pair(args, model, data, args.render_size, clock, args.amp)
        except Exception as error:  # noqa: BLE001
            renders[f"{args.render_size}_{args.amp}"] = {"error": f"{type(error).__name__}: {error}"}
            say(f"{args.amp} render failed: {type(error).__name__}: {error}")
    images = renders[str(args.render_size)].pop("_images")
    for entry in renders.values():
        entry.pop("_images", None)
    result["render"] = renders
    result["load_average_at_end"] = load_average()
    diff = (10 * (images[0] - images[1]).abs()).clamp(0, 1)
    return result, torch.cat([images[0], images[1], diff], dim=1)


# ---------------------------------------------------------------------- results
def markdown(r: dict, argv: list[str]) -> str:
    t, big = r["training"], r["render"][str(r["render_size"])]
    lines = [f"# NeRFBlendShape: our marched path vs the dense reference on {r['device']}", "",
             f"`python benchmarks/blendshape_speed.py {' '.join(argv)}`", "",
             f"torch {r['torch']}, {r['threads']} thread(s), load average {r['load_average_at_start']} at the start "
             f"and {r['load_average_at_end']} at the end; times are {r['timed_by']}.", "",
             f"Head: {r['config']} ({r['hash_grid']}; {r['march_steps']} march steps per box side, grid "
             f"{r['grid_size']}^3, {r['occupied_cells']:.1%} of its cells occupied), {r['expr_dim']} coefficients, "
             f"{r['training_frames']} training + {r['held_out_frames']} held-out frames at {r['image_size']}"
             + (f" ({r['dataset']})" if r.get("dataset") else "") + ".", ""]
    if "curve" in r:
        curve = ", ".join(f"{p['psnr_db']:.2f} dB at {p['seconds']:.0f} s" for p in r["curve"])
        lines += [f"Trained in this run: {r['train_steps']} steps in {r['train_seconds']:.0f} s. Held-out PSNR "
                  f"({r['curve_frames']} frames) during training: {curve}. Plateau (within {r['plateau_db']} dB of "
                  f"the best): {r['plateau_seconds']:.0f} s, step {r['plateau_step']}.", ""]
    lines += [f"Held-out PSNR of the trained head over all {r['held_out_frames']} held-out frames (our renderer): "
              f"**{r['heldout_psnr_db']:.2f} dB**.", "",
              "| path | training it/s | ms per training step | samples per ray (training) |",
              "|---|---:|---:|---:|",
              f"| ours (grid marching, early termination, packed) | {t['ours']['iterations_per_s']} | "
              f"{t['ours']['ms_per_iteration']} | {t['ours']['samples_per_ray']} |",
              f"| reference (dense, no grid, no termination) | {t['reference']['iterations_per_s']} | "
              f"{t['reference']['ms_per_iteration']} | {t['reference']['samples_per_ray']} |", "",
              f"Training: x{t['speedup']} ({t['steps_timed']} steps each from step {t['from_step']}, the same "
              f"batches of {t['rays_per_step']} rays, patch loss {'on' if t['patch_loss_in_timed_steps'] else 'off'}).",
              "", "| render of a held-out frame | ours (ms) | reference (ms) | speed-up | PSNR ours vs reference (dB) "
              "| samples per pixel, ours / reference |", "|---|---:|---:|---:|---:|---:|"]
    for key, e in r["render"].items():
        if "error" in e:
            lines.append(f"| {key.replace('_', ' ')} px | failed: {e['error']} | | | | |")
            continue
        lines.append(f"| {key.replace('_', ' ')} px | {e['ms_ours']} | {e['ms_reference']} | x{e['speedup']} | "
                     f"{e['psnr_ours_vs_reference_db']} | {e['samples_per_pixel_ours']} / "
                     f"{e['samples_per_pixel_reference']} |")
    small = next((e for e in r["render"].values() if "psnr_ours_vs_truth_db" in e), None)
    if small is not None:
        lines += ["", f"Against the held-out frame's ground truth ({small['size']} px): ours "
                  f"{small['psnr_ours_vs_truth_db']} dB, reference {small['psnr_reference_vs_truth_db']} dB. The head "
                  "is trained through the grid, so its density in cells the grid marks empty is never supervised; the "
                  "dense reference samples those cells too, so the two paths' difference is mostly the reference's."]
    lines += ["", f"At {r['render_size']}^2 our path renders {big['fps_ours']} frames per second "
              f"({'GPU' if r['device_type'] == 'cuda' else 'CPU time, one process'})."]
    if r["device_type"] != "cuda":
        lines += ["", "Not measured here: the CUDA figures (fps at 512^2 on a GPU, the time to the held-out PSNR "
                  "plateau at the release's sizes). This machine has no GPU; `python benchmarks/blendshape_speed.py "
                  "--device cuda` measures them."]
    return "\n".join(lines) + "\n"


def write_results(result: dict, strip: torch.Tensor, argv: list[str], out_dir: Path, tag: str) -> list[Path]:
    """JSON + Markdown + PNG (ours | reference | 10x absolute difference), each written atomically."""
    from facenerf.io import write_image, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    js = write_text(out_dir / f"blendshape_speed_{tag}.json", json.dumps(result, indent=1) + "\n")
    md = write_text(out_dir / f"blendshape_speed_{tag}.md", markdown(result, argv))
    png = write_image(out_dir / f"blendshape_speed_{tag}.png", strip)
    return [js, md, png]


def build_parser():
    parser = make_parser("NeRFBlendShape speed: our marched path vs a dense reference, same weights, same run.",
                         prog="benchmarks/blendshape_speed.py")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--ckpt", default="", help="a trained head (main_nerf.py checkpoint); needs --data")
    parser.add_argument("--data", default="", help="dataset folder (default: generate a talking head)")
    parser.add_argument("--run_config", default=None, help="main_nerf.py config file for in-script training "
                        "(default: configs/blendshape_tiny.txt on CPU, the release's sizes on CUDA)")
    parser.add_argument("--extra", default=None, help="further main_nerf.py flags for in-script training, as one string")
    parser.add_argument("--frames", type=int, default=None, help="generated talking head: frames (CPU 200, CUDA 400)")
    parser.add_argument("--size", type=int, default=None, help="generated talking head: frame side (CPU 96, CUDA 256)")
    parser.add_argument("--train_seconds", type=float, default=None, help="training time (CPU 120, CUDA 300)")
    parser.add_argument("--eval_every_s", type=float, default=None, help="held-out PSNR every this many training seconds")
    parser.add_argument("--curve_frames", type=int, default=4, help="held-out frames scored during training")
    parser.add_argument("--plateau_db", type=float, default=0.25, help="plateau: first point within this of the best")
    parser.add_argument("--calibration_steps", type=int, default=30, help="steps timed to set the training length")
    parser.add_argument("--timing_steps", type=int, default=50, help="training steps timed per path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps before them")
    parser.add_argument("--render_size", type=int, default=512, help="render side (also the training size)")
    parser.add_argument("--repeat", type=int, default=3, help="timed renders of our path (best kept)")
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"], default="fp16", help="CUDA: also time autocast renders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--tag", default="", help="result file suffix (default: cpu or cuda)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv)
    device = select_device(args.device)
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.ckpt and not args.data:
        raise FaceNerfError("--ckpt needs --data (the dataset the head was trained on)")
    args.device = str(device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    seed_everything(args.seed)
    with tempfile.TemporaryDirectory(prefix="blendshape_speed_") as work:
        result, strip = measure(args, device, Path(work), lambda line: print(line, flush=True))
    result["render_size"] = args.render_size
    tag = args.tag or device.type
    paths = write_results(result, strip, argv, Path(args.out), tag)
    print(markdown(result, argv))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    run_cli(main)
