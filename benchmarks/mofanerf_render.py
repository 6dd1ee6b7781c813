"""Time to render one MoFaNeRF image: our path versus a straightforward dense fp32 reference.

Both paths use the same weights (the full-size released architecture: coarse 8x256, fine
10x1024, 64 + 64 samples per ray; random weights, or ``--ckpt`` for a trained model) in the
same run:

* ours: :meth:`MoFaNeRF.render_image` - chunked rays, ``no_grad``, per-face codes folded into
  the first-layer biases, the coarse network's colour branch skipped (never shown) and the fine
  colour branch evaluated only where the compositing weight exceeds ``--min_weight``
  (:mod:`facenerf.models.mofanerf.fast_render`), optional bf16 autocast and ``torch.compile``
  on CUDA;
* reference: every sample of every ray evaluated densely in fp32, the codes concatenated to
  each sample and every layer applied to the concatenated input, as in the original code.

It reports both times, their ratio and the PSNR between the two images, and writes
``benchmarks/results/mofanerf_render_<device>.json`` and ``.md``. On CPU the default
resolution is 32^2 (a 512^2 frame would take many minutes); on CUDA it is 512^2, and the
training iterations per second of the full-size model are measured too.

    python benchmarks/mofanerf_render.py                 # CPU: 32x32
    python benchmarks/mofanerf_render.py --res 64
    python benchmarks/mofanerf_render.py --device cuda --amp bf16 --compile true
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import bool_flag, make_parser, parse_args  # noqa: E402
from facenerf.core.cameras import Intrinsics  # noqa: E402
from facenerf.core.rays import image_rays  # noqa: E402
from facenerf.core.renderer import RenderSettings  # noqa: E402
from facenerf.core.samplers import importance_samples  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402
from facenerf.io import write_text  # noqa: E402
from facenerf.metrics import psnr  # noqa: E402
from facenerf.models.mofanerf.checkpoints import load_mofanerf  # noqa: E402
from facenerf.models.mofanerf.config import MoFaNeRFConfig  # noqa: E402
from facenerf.models.mofanerf.model import FaceCodes, MoFaNeRF  # noqa: E402
from facenerf.preprocess.training.rig import mofanerf_pose  # noqa: E402
from facenerf.runtime import autocast, select_device, seed_everything  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ the straightforward reference
def _dense_trunk(trunk, x: torch.Tensor) -> torch.Tensor:
    """A SkipTrunk evaluated on the explicitly concatenated input ``x [M, code + feature]``."""
    h = x
    for layer in trunk.block1:
        h = F.relu(F.linear(h, layer.weight, layer.bias))
    if len(trunk.block2):
        h = torch.cat([x, h], -1)
        for layer in trunk.block2:
            h = F.relu(F.linear(h, layer.weight, layer.bias))
    return h


def reference_network(model: MoFaNeRF, net, points, dirs, codes: FaceCodes):
    """density [M], rgb [M, 3]: every code broadcast to every sample, no folding."""
    m = points.shape[0]
    h = _dense_trunk(net.xyz_encoder, torch.cat([model.pe_xyz(points), codes.expression.expand(m, -1)], -1))
    f_sigma = _dense_trunk(net.density_trunk, torch.cat([codes.shape.expand(m, -1), h], -1))
    sigma = F.linear(f_sigma, net.density_head.weight, net.density_head.bias)[:, 0]
    f_c = _dense_trunk(net.colour_trunk, torch.cat([codes.texture.expand(m, -1), f_sigma], -1))
    view = F.relu(F.linear(torch.cat([model.pe_dir(dirs), f_c], -1), net.view_layer.weight, net.view_layer.bias))
    return F.relu(sigma), torch.sigmoid(F.linear(view, net.rgb_head.weight, net.rgb_head.bias))


def _reference_pass(model, net, rays, t, codes, netchunk):
    """Composite one pass (coarse or fine) with dense evaluation in point chunks of ``netchunk``."""
    r, s = t.shape
    points = (rays.origins[:, None] + rays.directions[:, None] * t[..., None]).reshape(-1, 3)
    dirs = F.normalize(rays.directions, dim=-1)[:, None].expand(r, s, 3).reshape(-1, 3)
    outs = [reference_network(model, net, points[i:i + netchunk], dirs[i:i + netchunk], codes)
            for i in range(0, points.shape[0], netchunk)]
    sigma = torch.cat([o[0] for o in outs]).view(r, s)
    rgb = torch.cat([o[1] for o in outs]).view(r, s, 3)
    delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], -1)
    alpha = 1.0 - torch.exp(-sigma * delta * rays.directions.norm(dim=-1, keepdim=True))
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * trans
    return (weights[..., None] * rgb).sum(1), weights


@torch.no_grad()
def reference_render(model, rays, codes, n_samples=64, n_importance=64, netchunk=65536):
    """The straightforward fp32 renderer: all rays at once, every sample evaluated densely."""
    steps = torch.linspace(0.0, 1.0, n_samples, device=rays.origins.device)
    t = rays.near * (1.0 - steps) + rays.far * steps
    rgb, weights = _reference_pass(model, model.coarse, rays, t, codes, netchunk)
    if n_importance <= 0 or model.fine is None:
        return rgb
    t_fine = importance_samples(t, weights, n_importance, deterministic=True)
    t_all, _ = torch.sort(torch.cat([t, t_fine], -1), -1)
    rgb, _ = _reference_pass(model, model.fine, rays, t_all, codes, netchunk)
    return rgb


# ------------------------------------------------------------------ measurements
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    """``(output, wall seconds, process CPU seconds)`` of one call."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def compare(ours, reference, device, repeat: int) -> dict:
    """Run the two paths alternately ``repeat`` times; keep each one's best wall and CPU time.

    On a shared CPU the process CPU time is the fair measure (wall time includes waiting for
    other processes); on CUDA the wall time is (the CPU mostly waits for the GPU).
    """
    best = {"ours": [float("inf")] * 2, "reference": [float("inf")] * 2}
    outputs = {}
    for _ in range(repeat):
        for name, fn in (("ours", ours), ("reference", reference)):
            outputs[name], wall, cpu = _timed(fn, device)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return {"outputs": outputs, "wall": {k: v[0] for k, v in best.items()}, "cpu": {k: v[1] for k, v in best.items()}}


def build_model(args, device) -> MoFaNeRF:
    settings = RenderSettings(n_samples=64, n_importance=64, perturb=False, chunk_rays=args.chunk)
    if args.ckpt:
        model, _ = load_mofanerf(args.ckpt, eval_settings=settings)
    else:
        cfg = MoFaNeRFConfig() if args.model == "full" else MoFaNeRFConfig(
            netwidth=32, netdepth=6, netwidth_fine=48, netdepth_fine=6, skip=3, tex_size=64,
            tex_channels=(8, 8, 16, 16), tex_hidden=32)
        model = MoFaNeRF(cfg, eval_settings=settings)
    return model.to(device).eval()


def face_codes(model: MoFaNeRF, device, generator) -> FaceCodes:
    cfg = model.cfg
    beta = (torch.randn(1, cfg.shape_dim, generator=generator) / 847 ** 0.5).to(device)
    uv = torch.rand(1, 3, 8, 8, generator=generator)
    uv = F.interpolate(uv, size=(cfg.tex_size, cfg.tex_size), mode="bilinear", align_corners=False).to(device)
    with torch.no_grad():
        return model.face_codes(beta, expression_index=1, uv=uv)


def train_iterations_per_second(model, device, amp, steps=10, n_rays=1024):
    """Forward + backward + Adam steps/s of the full model on one 1024-ray batch (CUDA only)."""
    from facenerf.core.rays import pixel_rays

    cfg, gen = model.cfg, torch.Generator().manual_seed(1)
    K = Intrinsics(512, 512, 1200.0, 1200.0, 256.0, 256.0)
    xy = torch.randint(0, 512, (n_rays, 2), generator=gen).float()
    batch = {"rays": pixel_rays(K, mofanerf_pose(0, 0), xy, 8.0, 26.0).to(device),
             "rgb": torch.rand(n_rays, 3, generator=gen).to(device),
             "shape": torch.randn(1, cfg.shape_dim, generator=gen).to(device) * 0.03,
             "uv": torch.rand(1, 3, cfg.tex_size, cfg.tex_size, generator=gen).to(device),
             "expression": torch.tensor([3], device=device)}
    model.train()
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-5)

    def step():
        with autocast(device, amp):
            losses, _ = model.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        losses["main"].backward()
        opt.step()

    step()
    _, seconds, _ = _timed(lambda: [step() for _ in range(steps)], device)
    model.eval()
    return steps / seconds


def run(args) -> dict:
    device = select_device(args.device)
    generator = seed_everything(args.seed)
    res = args.res or (512 if device.type == "cuda" else 32)
    amp = args.amp if device.type == "cuda" else "none"  # CPU autocast to bf16 is slower, not faster
    model = build_model(args, device)
    if args.compile and device.type == "cuda":
        model.compile_networks()
    codes = face_codes(model, device, generator)
    K = Intrinsics(512, 512, 1200.0, 1200.0, 256.0, 256.0).scaled(res / 512)
    rays = image_rays(K, mofanerf_pose(0.0, 0.0), args.near, args.far).to(device)

    def ours():
        with torch.no_grad(), autocast(device, amp):
            out = model.render_image(rays, codes, res, res, min_weight=args.min_weight)
            return out["rgb"].float(), out.get("skipped_weight")

    ours()  # warm-up (and compilation)
    timing = compare(ours, lambda: reference_render(model, rays, codes).view(res, res, 3), device, args.repeat)
    (image_ours, skipped), image_ref = timing["outputs"]["ours"], timing["outputs"]["reference"]
    clock = "wall" if device.type == "cuda" else "cpu"
    t_ours, t_ref = timing[clock]["ours"], timing[clock]["reference"]
    result = {
        "device_type": device.type,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "resolution": res, "samples": "64 + 64", "near_far": [args.near, args.far],
        "model": (f"coarse {model.cfg.netdepth}x{model.cfg.netwidth}, "
                  f"fine {model.cfg.netdepth_fine}x{model.cfg.netwidth_fine}"),
        "weights": args.ckpt or "random (seeded)", "amp": amp,
        "compile": bool(args.compile and device.type == "cuda"), "chunk_rays": args.chunk,
        "timed_by": "wall clock (CUDA synchronised)" if clock == "wall" else "process CPU time (shared machine)",
        "seconds_ours": t_ours, "seconds_reference": t_ref, "speedup": t_ref / t_ours,
        "wall_seconds_ours": timing["wall"]["ours"], "wall_seconds_reference": timing["wall"]["reference"],
        "psnr_ours_vs_reference_db": float(psnr(image_ours.clamp(0, 1), image_ref.clamp(0, 1))),
        "max_abs_diff": float((image_ours - image_ref).abs().max()),
        "min_weight": args.min_weight,
        "max_skipped_weight_per_ray": float(skipped.max()) if skipped is not None else 0.0,
    }
    if device.type == "cuda" and args.train_steps > 0:
        result["train_iters_per_s"] = train_iterations_per_second(model, device, amp, args.train_steps)
    strip = torch.cat([image_ours.clamp(0, 1), image_ref.clamp(0, 1), (10 * (image_ours - image_ref).abs()).clamp(0, 1)], 1)
    return result, strip.cpu()


def write_results(result: dict, strip, out_dir: Path, tag: str) -> list[Path]:
    """JSON + Markdown table + PNG (ours | reference | 10x absolute difference)."""
    from facenerf.io import write_image

    out_dir.mkdir(parents=True, exist_ok=True)
    png = write_image(out_dir / f"mofanerf_render_{tag}.png", strip)
    js = out_dir / f"mofanerf_render_{tag}.json"
    write_text(js, json.dumps(result, indent=2) + "\n")
    lines = ["# MoFaNeRF render benchmark", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items()]
    md = out_dir / f"mofanerf_render_{tag}.md"
    write_text(md, "\n".join(lines) + "\n")
    return [js, md, png]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("Render-time benchmark of MoFaNeRF: ours vs a dense fp32 reference.",
                         prog="benchmarks/mofanerf_render.py")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--res", type=int, default=0, help="image side (default 32 on CPU, 512 on CUDA)")
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--ckpt", default="", help="trained weights (facenerf .pt or original .tar)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="bf16")
    parser.add_argument("--compile", **bool_flag(False, "torch.compile the MLPs (CUDA)"))
    parser.add_argument("--chunk", type=int, default=1024, help="rays per chunk in our path")
    parser.add_argument("--min_weight", type=float, default=1e-4,
                        help="our path evaluates colour only where the compositing weight exceeds this")
    parser.add_argument("--repeat", type=int, default=2, help="alternating timed repetitions (best is kept)")
    parser.add_argument("--train_steps", type=int, default=10, help="CUDA only: training steps timed")
    parser.add_argument("--near", type=float, default=8.0, help="ray start (world units; the rig's 8)")
    parser.add_argument("--far", type=float, default=26.0, help="ray end (world units; the rig's 26)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--tag", default="", help="result file suffix (default: cpu or cuda)")
    args = parse_args(parser, argv)
    result, strip = run(args)
    tag = args.tag or result["device_type"]
    for key, value in result.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    for path in write_results(result, strip, Path(args.out), tag):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
