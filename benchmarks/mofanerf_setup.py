"""A trained MoFaNeRF and its test inputs, shared by ``mofanerf_render.py`` and ``fit_speed.py``.

Two sources of trained weights:

* ``--ckpt PATH`` (a facenerf checkpoint) with ``--data DIR`` (the ``multiViewImages`` folder
  render.py wrote, as the checkpoint was trained on): the render and fit inputs are that data's
  held-out (test split) views; the ray bounds and sample counts are the checkpoint's.
* no ``--ckpt``: a model is trained inside the script, through the engine's training step
  (:meth:`facenerf.engine.trainer.Trainer.train_step`), for ``--train_seconds`` on procedural
  faces (:mod:`facenerf.demos.procedural_faces`: exact ray-cast renders, no files, no GL):
  on CUDA the full-size released architecture (coarse 8x256, fine 10x1024, 64 + 64 samples)
  at 256^2 with bf16 autocast, on CPU the tiny model of ``configs/mofanerf_tiny.txt``
  (24 + 24 samples) at 64^2. ``--save_model`` keeps the weights; ``--ckpt`` without ``--data``
  reloads them with the same procedural faces.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import pixel_rays
from facenerf.core.renderer import RenderSettings
from facenerf.data.ray_batches import gather_pixels, uniform_pixels, weighted_pixels
from facenerf.demos.procedural_faces import FaceDataset, make_dataset
from facenerf.engine.trainer import Trainer, TrainerConfig, move_to
from facenerf.errors import FaceNerfError
from facenerf.fitting.inputs import FitTarget
from facenerf.fitting.stats import CodeStatistics
from facenerf.metrics import psnr
from facenerf.models.mofanerf.checkpoints import load_mofanerf, save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig, MoFaNeRFRenderConfig, MoFaNeRFRunConfig
from facenerf.models.mofanerf.model import FaceCodes, MoFaNeRF

TINY = dict(netdepth=4, netwidth=64, netdepth_fine=4, netwidth_fine=64, skip=2, xyz_depth=2, multires=8,
            shape_dim=16, texture_dim=32, exp_dim=16, n_expressions=4, ism_width=64, ism_depth=2, tex_size=64,
            tex_channels=(16, 16, 32, 32), tex_hidden=64, tex_decoder_depth=2)
# per device: sizes, samples, ray bounds, image size, rays per step, learning rate, identities
RECIPES = {
    "cpu": dict(sizes=TINY, samples=(24, 24), near_far=(12.0, 20.0), size=64, rays=256, lr=2e-3, ids=4, seconds=300),
    "cuda": dict(sizes=dict(n_expressions=4), samples=(64, 64), near_far=(8.0, 26.0), size=256, rays=1024,
                 lr=5e-4, ids=6, seconds=120),
}


def add_setup_args(parser) -> None:
    """The options of :func:`prepare` (``--ckpt`` and ``--threads`` only where the parser lacks them)."""
    g = parser.add_argument_group("trained model (see benchmarks/mofanerf_setup.py)")
    present = parser._option_string_actions
    if "--ckpt" not in present:
        g.add_argument("--ckpt", default="", help="trained MoFaNeRF checkpoint (default: train one in the script)")
    if "--threads" not in present:
        g.add_argument("--threads", type=int, default=1, help="CPU threads for torch (1 on a shared machine)")
    g.add_argument("--data", default="", help="multiViewImages folder the checkpoint was trained on "
                                             "(default: the procedural faces)")
    g.add_argument("--train_seconds", type=float, default=0.0,
                   help="in-script training time (default: 120 s full-size on CUDA, 300 s tiny on CPU)")
    g.add_argument("--save_model", default="", help="write the in-script model to this checkpoint file")


@dataclass
class Prepared:
    """A trained model in eval mode with what the benchmarks need to exercise it."""

    model: MoFaNeRF
    device: torch.device
    render: RenderSettings  # test-mode settings (deterministic)
    source: dict  # how the weights came about (for the results file)
    faces: FaceDataset | None  # the procedural faces, or None with --data
    data: Path | None


def recipe(device: torch.device) -> dict:
    return RECIPES["cuda" if device.type == "cuda" else "cpu"]


def _face_batches(ds: FaceDataset, n_rays: int, seed: int):
    """``batch(step)``: one training image, half of its rays on the face, half anywhere."""
    train = torch.nonzero(~ds.heldout).squeeze(-1)

    def batch(step: int) -> dict:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        k = int(train[torch.randint(len(train), (1,), generator=gen)])
        face = weighted_pixels(ds.masks[k].float().cpu(), n_rays // 2, gen)
        xy = torch.cat([face, uniform_pixels(n_rays - face.shape[0], ds.K.height, ds.K.width, gen)])
        i, e = int(ds.identity[k]), int(ds.expression[k])
        return {"rays": pixel_rays(ds.K, ds.poses[k].cpu(), xy.float(), ds.near, ds.far),
                "rgb": gather_pixels(ds.images[k].cpu(), xy), "shape": ds.shape_codes[i][None],
                "texture": ds.texture_codes[i][None], "expression": torch.tensor([e]), "seed": step}

    return batch


def train_in_script(model: MoFaNeRF, ds: FaceDataset, device: torch.device, seconds: float, n_rays: int) -> dict:
    """Train ``model`` on ``ds`` for ``seconds`` with the engine's step (bf16 on CUDA); returns a summary."""
    amp = "bf16" if device.type == "cuda" else "none"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainerConfig(out_dir=Path(tmp), max_steps=1 << 30, amp=amp, progress=False, tensorboard=False,
                            log_every=0, eval_every=0, save_every=0, resume=False)
        trainer = Trainer(model, _face_batches(ds, n_rays, seed=1), cfg, device, model_name="mofanerf")
        batches = _face_batches(ds, n_rays, seed=1)
        start, step, psnrs = time.perf_counter(), 0, []
        while time.perf_counter() - start < seconds:
            _, scalars = trainer.train_step(move_to(batches(step), device), step)
            psnrs.append(scalars["psnr"])
            step += 1
            if step % 200 == 0:
                print(f"  training: step {step}, {time.perf_counter() - start:.0f} s, "
                      f"batch PSNR {np.mean(psnrs[-100:]):.2f} dB", flush=True)
        trainer.logger.close()
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1), "amp": amp,
            "final_batch_psnr_db": round(float(np.mean(psnrs[-100:])), 2) if psnrs else None}


def _procedural(device: torch.device, cfg: MoFaNeRFConfig, seed: int = 0) -> FaceDataset:
    """The procedural faces, ray cast on ``device`` and kept on the CPU (batches are drawn there)."""
    rec = recipe(device)
    ds = make_dataset(rec["ids"], min(4, cfg.n_expressions), rec["size"], cfg.shape_dim, cfg.texture_dim,
                      seed=seed, near=rec["near_far"][0], far=rec["near_far"][1], device=device)
    ds.images, ds.masks, ds.poses = ds.images.cpu(), ds.masks.cpu(), ds.poses.cpu()
    return ds


def prepare(args, device: torch.device) -> Prepared:
    """The trained model (see the module docstring) on ``device``."""
    rec = recipe(device)
    if args.data and not args.ckpt:
        raise FaceNerfError("--data needs the --ckpt trained on it")
    if args.ckpt:
        model, info = load_mofanerf(args.ckpt)
        render = (info["run"] or MoFaNeRFRunConfig(model=model.cfg)).render.for_model(model.cfg)
        settings = replace(render.settings(), chunk_rays=4096)
        source = {"weights": args.ckpt, "step": info["step"]}
        faces = None if args.data else _procedural(device, model.cfg)
        near_far = (render.near, render.far)
    else:
        model = MoFaNeRF(MoFaNeRFConfig(**rec["sizes"]), lrate=rec["lr"],
                         train_settings=RenderSettings(*rec["samples"], perturb=True)).to(device)
        faces = _procedural(device, model.cfg)
        summary = train_in_script(model, faces, device, args.train_seconds or rec["seconds"], rec["rays"])
        settings = RenderSettings(*rec["samples"], chunk_rays=4096)
        near_far = rec["near_far"]
        source = {"weights": "trained in the script on procedural faces", **summary}
        if args.save_model:
            run = MoFaNeRFRunConfig(model=model.cfg, render=MoFaNeRFRenderConfig(
                near=near_far[0], far=near_far[1], N_samples=rec["samples"][0], N_importance=rec["samples"][1]))
            save_mofanerf(args.save_model, model, summary["steps"], run)
            source["saved_to"] = args.save_model
    model = model.to(device).eval()
    model.eval_settings = settings
    source["near_far"] = list(near_far)
    return Prepared(model, device, settings, source, faces, Path(args.data) if args.data else None)


# ----------------------------------------------------------------------------- inputs
def procedural_codes(prep: Prepared, identity: int, expression: int) -> FaceCodes:
    ds = prep.faces
    with torch.no_grad():
        return prep.model.face_codes(ds.shape_codes[identity].to(prep.device), expression_index=expression,
                                     texture=ds.texture_codes[identity][None].to(prep.device))


def heldout_view(prep: Prepared, identity: int = 0, expression: int = 0, which: int = 0):
    """A held-out procedural view ``(c2w [4, 4], K at the data's size)``."""
    ds = prep.faces
    picks = torch.nonzero(ds.heldout & (ds.identity == identity) & (ds.expression == expression)).squeeze(-1)
    k = int(picks[which % len(picks)])
    return ds.poses[k].cpu(), ds.K


def data_render_case(prep: Prepared) -> tuple[FaceCodes, Tensor, Intrinsics, str]:
    """Codes, camera and name of the first test-split view of the first identity in ``--data``."""
    from facenerf.data.facescape import parse_multiview
    from facenerf.io import read_image

    data = parse_multiview(prep.data, split="test")
    ident = sorted(data.identities, key=lambda s: (len(s), s))[0]
    person = data.identities[ident]
    frame = person.frames[0]
    size = prep.model.cfg.tex_size
    uv = torch.from_numpy(read_image(person.uv_texture, (size, size))).permute(2, 0, 1)[None].to(prep.device)
    with torch.no_grad():
        codes = prep.model.face_codes(torch.from_numpy(person.shape_code).to(prep.device),
                                      expression_index=frame.expression, uv=uv)
    return codes, torch.as_tensor(frame.c2w), frame.intrinsics, f"{ident}/{frame.expression_name}/{frame.view}"


def procedural_fit_case(prep: Prepared, fit_size: int, eval_views: int, identity: int = 0, expression: int = 1):
    """``(target, held-out views, code statistics)`` for fitting one procedural face: a held-out
    view at ``fit_size`` of ``identity`` with ``expression``; the views are its other held-out views."""
    from facenerf.demos.procedural_faces import EXPRESSION_PARAMS, EXPRESSIONS, render_face

    ds = prep.faces
    person, expr = ds.persons[identity], EXPRESSION_PARAMS[EXPRESSIONS[expression]]
    K = Intrinsics(512, 512, 1200.0, 1200.0, 256.0, 256.0).scaled(fit_size / 512)
    poses = [heldout_view(prep, identity, expression, k)[0] for k in range(1 + eval_views)]
    images = [tuple(t.cpu() for t in render_face(person, expr, K, pose, ds.near, ds.far, prep.device))
              for pose in poses]
    target = FitTarget(f"procedural_{identity}_{EXPRESSIONS[expression]}", Path("procedural.png"), images[0][0],
                       images[0][1], None, poses[0], K, ds.near, ds.far, "synthetic")
    views = [(image, pose, K) for (image, _), pose in zip(images[1:], poses[1:])]
    stats = CodeStatistics(ds.shape_codes.mean(0), ds.shape_codes.std(0), ds.texture_codes.mean(0),
                           ds.texture_codes.std(0), len(ds.persons))
    return target, views, stats


def image_psnr(a: Tensor, b: Tensor) -> float:
    value = float(psnr(a.float().clamp(0, 1).cpu(), b.float().clamp(0, 1).cpu()))
    return value if math.isfinite(value) else 200.0


__all__ = ["Prepared", "add_setup_args", "prepare", "recipe", "procedural_codes", "heldout_view", "data_render_case",
           "procedural_fit_case", "image_psnr"]
