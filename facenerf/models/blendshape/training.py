"""NeRFBlendShape head training: data, model and the engine's Trainer (what ``main_nerf.py`` calls).

:func:`train_head` parses the dataset (bad data fails before anything is written), checks that
the workspace's checkpoints hold the same head, writes ``config.txt``, and runs the one
training loop: ``train_epoch`` epochs of one frame per step (``--iters`` overrides), Adam with
betas (0.9, 0.99) and eps 1e-15, the learning rate decaying exponentially to ``lr_final`` x
``lr`` at the last step (the release's two x0.33 steps end at 0.11 x), validation renders of
``val_num`` held-out frames every ``eval_interval`` epochs (``validation/step_*.png``, ground
truth above, render below) and checkpoints every ``save_interval`` epochs. Rerunning the same
command resumes from the newest checkpoint.

:func:`train_torso` (``--torso --head_ckpt PATH``) loads a trained head, freezes it and trains
only the torso net (:mod:`facenerf.models.blendshape.torso`) with the head's sizes and box;
validation renders then show head over torso over background against the video frames.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from facenerf.config import save_config
from facenerf.engine.checkpoint import CheckpointManager
from facenerf.engine.trainer import Trainer, TrainerConfig
from facenerf.io import ensure_writable_dir, write_image
from facenerf.metrics import psnr
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.checkpoints import check_expr_dim, check_workspace, load_blendshape
from facenerf.models.blendshape.config import BlendShapeRunConfig
from facenerf.models.blendshape.data import HeadBatches, HeadData, TorsoBatches, load_head_data
from facenerf.models.blendshape.losses import PatchLoss, check_patch_size
from facenerf.models.blendshape.model import MODEL_NAME, NeRFBlendShape
from facenerf.runtime import seed_everything, select_device

VALIDATION_DIR = "validation"


def fp16_note(fp16: bool, device: torch.device) -> str | None:
    """The one line saying that ``--fp16`` does nothing on this device (None where it applies)."""
    if fp16 and device.type != "cuda":
        return f"note: --fp16 is ignored on the {device.type.upper()} (autocast needs CUDA); running in fp32"
    return None


def held_out_indices(n_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices of ``n_frames`` (all of them when fewer)."""
    if count >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, count)})


def render_frame(model: NeRFBlendShape, data: HeadData, pose: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
    """``[H, W, 3]`` render of one view at the training resolution over the data's background."""
    return model.render_view(pose, expression, data.intrinsics, data.near, data.far, data.pixel_center,
                             data.background)["rgb"].float()


def make_evaluator(data: HeadData, out_dir: Path, count: int):
    """``evaluate(model, step)`` for the Trainer: held-out PSNR and a GT-over-render strip."""
    chosen = held_out_indices(len(data.val), count)

    def evaluate(model: NeRFBlendShape, step: int) -> dict:
        truths, renders, scores = [], [], []
        for i in chosen:
            truth = data.val.image(i).float().cpu()
            render = render_frame(model, data, data.val.poses[i], data.val.coefficients[i]).cpu()
            scores.append(float(psnr(render, truth)))
            truths.append(truth)
            renders.append(render)
        strip = torch.cat([torch.cat(truths, dim=1), torch.cat(renders, dim=1)], dim=0)
        write_image(out_dir / VALIDATION_DIR / f"step_{step:08d}.png", strip)
        return {"scalars": {"psnr": sum(scores) / len(scores)}, "images": {"heldout": strip}}

    return evaluate


def trainer_config(run: BlendShapeRunConfig, n_train: int) -> TrainerConfig:
    t = run.train
    total = t.total_steps(n_train)
    return TrainerConfig(out_dir=Path(t.workspace), max_steps=total, lr_decay_steps=total, lr_decay_rate=t.lr_final,
                         amp="fp16" if t.fp16 else "none", log_every=50, eval_every=t.eval_interval * n_train,
                         save_every=t.save_interval * n_train, keep_last=t.keep_last, progress=run.runtime.progress,
                         adam_betas=(0.9, 0.99), adam_eps=1e-15)


def build_head(run: BlendShapeRunConfig, data: HeadData) -> NeRFBlendShape:
    """A fresh head for ``data`` with the patch loss the run asks for."""
    model = NeRFBlendShape(data.run, data.expr_max, data.expr_min, run.train.total_steps(len(data.train)))
    if run.train.use_patch_loss:
        check_patch_size(run.train.patch_size, data.intrinsics.height, data.intrinsics.width,
                         lpips=bool(run.train.lpips_weights))
        model.patch_loss = PatchLoss(run.train.lpips_weights)
    return model


def _prepare(run: BlendShapeRunConfig, say) -> tuple[torch.device, HeadData]:
    """Device, seed and data; the workspace checked; notes said. Nothing is written yet."""
    run.runtime.apply_threads()
    device = select_device(run.runtime.device)
    seed_everything(run.runtime.seed)
    data = load_head_data(run, device)
    check_workspace(data.run)
    for line in data.notes + [fp16_note(run.train.fp16, device)]:
        if line:
            say(line if line.startswith("note:") else f"note: {line}")
    return device, data


def _fit(model: NeRFBlendShape, batches, data: HeadData, device: torch.device) -> dict:
    """Write ``config.txt`` and run the Trainer; the summary plus what was trained."""
    run = data.run
    out_dir = ensure_writable_dir(run.train.workspace)
    save_config(run, out_dir)
    evaluate = make_evaluator(data, out_dir, run.train.val_num)
    trainer = Trainer(model, batches, trainer_config(run, len(data.train)), device, run.to_dict(), evaluate,
                      MODEL_NAME)
    summary = trainer.fit()
    summary.update(workspace=str(out_dir), n_train=len(data.train), n_val=len(data.val),
                   expr_dim=data.expr_dim, bound=run.scene.bound)
    return summary


def train_head(run: BlendShapeRunConfig, say=print) -> dict:
    """Train (or resume) the head of ``run``; returns the Trainer's summary plus paths."""
    device, data = _prepare(run, say)
    model = build_head(data.run, data)
    if model.patch_loss is not None:
        say(f"patch loss: {model.patch_loss.name}")
    batches = HeadBatches(data, run.train.num_rays, run.runtime.seed, model.schedule.patch_active,
                          run.train.patch_size)
    return _fit(model, batches, data, device)


def torso_run(run: BlendShapeRunConfig, head: BlendShapeRunConfig) -> BlendShapeRunConfig:
    """The torso run: the head checkpoint's sizes and box, the command line's data, schedule and torso."""
    scene = replace(head.scene, white_bg=run.scene.white_bg, update_extra_interval=run.scene.update_extra_interval)
    return replace(run, model=head.model, scene=scene)


def resolve_head_checkpoint(given: str | Path) -> Path:
    """``--head_ckpt``: a checkpoint file, or a head workspace / its ``checkpoints/`` folder (its newest
    checkpoint); FaceNerfError naming what was looked for otherwise."""
    path = Path(given)
    if path.is_file():
        return path
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = CheckpointManager(folder).latest()
        if latest is not None:
            return latest
        raise FaceNerfError(f"--head_ckpt {path}: no step_*.pt checkpoint in {folder} (train the head there first)")
    raise FaceNerfError(f"--head_ckpt not found: {path} (pass a head checkpoint or the head's workspace)")


def train_torso(run: BlendShapeRunConfig, say=print) -> dict:
    """Train (or resume) the torso net behind the frozen head of ``run.train.head_ckpt``."""
    head_path = resolve_head_checkpoint(run.train.head_ckpt)
    head, info = load_blendshape(head_path)
    if run.model.expr_dim is not None:
        check_expr_dim(run.model.expr_dim, info["run"].model, str(head_path))
    device, data = _prepare(torso_run(run, info["run"]), say)
    model = NeRFBlendShape(data.run, head.field.expr_max[1:], head.field.expr_min[1:],
                           data.run.train.total_steps(len(data.train)), torso_frames=len(data.train))
    model.field.load_state_dict(head.field.state_dict())
    model.grid.load_state_dict(head.grid.state_dict())
    say(f"torso: training behind the frozen head of {head_path} (step {info['step']})")
    return _fit(model, TorsoBatches(data, run.train.num_rays, run.runtime.seed), data, device)
