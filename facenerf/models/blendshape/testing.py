"""``main_nerf.py --test``: reenactment of the held-out frames, a novel-view orbit, expression
transfer, and PSNR/SSIM on the held-out frames.

The head comes from a checkpoint (``--ckpt``, else the newest in the workspace) with its stored
run config (sizes, ``expr_dim``, box, scale); the dataset, ``--test_num``, ``--downscale`` and
the runtime come from the command line. Everything that can be wrong with the inputs (no
checkpoint, a checkpoint of another ``--expr_dim``, data with too few coefficients, a bad
``--test_expr`` file) is found before anything is written. Outputs, in ``WORKSPACE/results/``:

* ``reenact.mp4`` - the held-out frames rendered with their tracked poses and coefficients;
  ``reenact_vs_gt.mp4`` - ground truth | render side by side;
* ``orbit.mp4`` - the first held-out view with the camera swinging about the head's vertical
  axis between ``+orbit_yaw`` and ``-orbit_yaw`` degrees (one cycle of ``orbit_frames``
  frames), the expressions following the held-out frames;
* ``transfer.mp4`` - with ``--test_expr``: the head driven by another coefficient sequence
  from the first held-out view (coefficients clamped into the head's training range);
* ``metrics.json`` - PSNR and SSIM per held-out frame and their means, next to the
  mean-training-image baseline, both also over the head mask alone (``head_psnr``), and - for data with a ``jaw_open`` coefficient - the share of
  the closed-to-open mouth change the renders reproduce
  (:mod:`facenerf.models.blendshape.expression_check`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from facenerf.data.video import parse_video_dataset
from facenerf.errors import FaceNerfError
from facenerf.io import ensure_writable_dir, write_json, write_video
from facenerf.metrics import psnr, ssim
from facenerf.models.blendshape.checkpoints import check_expr_dim, load_blendshape, newest_checkpoint
from facenerf.models.blendshape.config import BlendShapeRunConfig, BlendShapeTestSettings
from facenerf.models.blendshape.data import HeadData, load_head_data
from facenerf.models.blendshape.expression_check import JawMeasure, measure
from facenerf.models.blendshape.model import NeRFBlendShape
from facenerf.models.blendshape.training import fp16_note, render_frame
from facenerf.runtime import autocast, select_device

RESULTS_DIR = "results"


def locate_checkpoint(workspace: str, ckpt: str) -> Path:
    """``--ckpt`` when given (it must exist), else the newest checkpoint of the workspace."""
    if ckpt:
        if not Path(ckpt).is_file():
            raise FaceNerfError(f"--ckpt not found: {ckpt} (check the path)")
        return Path(ckpt)
    found = newest_checkpoint(workspace)
    if found is None:
        raise FaceNerfError(f"no checkpoint in {Path(workspace) / 'checkpoints'}: train first (the same command "
                            "without --test) or pass --ckpt PATH")
    return found


def tested_run(stored: BlendShapeRunConfig, cli: BlendShapeRunConfig) -> BlendShapeRunConfig:
    """The stored run with the command line's dataset, split, resolution and runtime."""
    data = replace(stored.data, path=cli.data.path, downscale=cli.data.downscale, preload=min(cli.data.preload, 1),
                   test_num=cli.data.test_num if cli.data.test_num is not None else stored.data.test_num)
    return replace(stored, data=data, scene=replace(stored.scene, white_bg=cli.scene.white_bg), runtime=cli.runtime)


def read_coefficients(path: str, k: int, names: list[str] | None = None) -> tuple[np.ndarray, str | None]:
    """``(coefficients [N, k], note or None)`` from a .npy/.csv/.txt table or a dataset folder.
    When both the table and the head (``names``, its ``k`` coefficients) name their columns, the
    columns are taken by name (case, spaces and underscores aside), else by position."""
    from facenerf.preprocess.video.exprfile import read_csv

    source, given = Path(path), None
    if source.is_dir():
        dataset = parse_video_dataset(source, "all", require_masks=False)
        table, given = np.stack([f.expression for f in dataset.frames]), dataset.expression_names
    elif not source.is_file():
        raise FaceNerfError(f"--test_expr not found: {path} (give a .npy/.csv/.txt file or a dataset folder)")
    elif source.suffix.lower() == ".npy":
        try:
            table = np.load(source, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError) as err:
            raise FaceNerfError(f"--test_expr {path} is not a readable numeric .npy array") from err
    else:
        table, given, _ = read_csv(source)
    table = table.reshape(len(table), -1) if table.ndim == 1 else table
    if table.ndim != 2 or table.shape[0] == 0 or not np.isfinite(table).all():
        raise FaceNerfError(f"--test_expr {path} must be a finite [frames, K] table, got shape {table.shape}")
    if given and names and len(given) == table.shape[1]:
        return by_name(table, given, names[:k], path)
    if table.shape[1] < k:
        raise FaceNerfError(f"--test_expr {path} holds {table.shape[1]} coefficients per frame but the head was "
                            f"trained with --expr_dim {k}; give a table with at least {k} columns")
    note = f"note: --test_expr has {table.shape[1]} coefficients per frame; using the first {k}" \
        if table.shape[1] > k else None
    return table[:, :k].astype(np.float32), note


def at_video_rate(table: np.ndarray, rate: float, fps: float) -> np.ndarray:
    """``table`` [N, K] recorded at ``rate`` rows per second, resampled in time to ``fps`` frames per
    second (as many frames as its duration holds); unchanged for ``rate`` 0 or equal to ``fps``."""
    from facenerf.preprocess.video.exprfile import resample_rows

    if rate <= 0 or abs(rate - fps) < 1e-6:
        return table
    n_frames = int(math.floor((len(table) - 1) / rate * fps + 1e-6)) + 1
    return resample_rows(table, rate, n_frames, fps).astype(np.float32)


def by_name(table: np.ndarray, given: list[str], names: list[str], path: str) -> tuple[np.ndarray, str | None]:
    """The columns of ``table`` [N, len(given)] named ``names``, in that order; for a head of the
    procedural blendshapes driven by an ARKit table, its blendshapes made from the ARKit ones
    (:func:`~facenerf.preprocess.video.exprfile.from_arkit`)."""
    from facenerf.preprocess.video.exprfile import from_arkit, name_key

    column = {name_key(name): i for i, name in enumerate(given)}
    missing = [name for name in names if name_key(name) not in column]
    if missing:
        mapped = from_arkit(table, given, names)
        if mapped is not None:
            return mapped.astype(np.float32), (f"note: --test_expr holds ARKit coefficients; the head's {len(names)} "
                                               "taken from them (left and right averaged)")
        raise FaceNerfError(f"--test_expr {path} names its columns but lacks the head's {', '.join(missing)}; "
                            "give those columns, or a table without a header to take them by position")
    order = [column[name_key(name)] for name in names]
    note = None if order == list(range(len(names))) and len(given) == len(names) else \
        f"note: --test_expr columns taken by name ({len(names)} of its {len(given)})"
    return table[:, order].astype(np.float32), note


def yaw_about_head(pose: Tensor, degrees: float) -> Tensor:
    """``pose`` [4, 4] camera-to-head moved around the head's vertical (y) axis by ``degrees``."""
    a = math.radians(degrees)
    rot = torch.eye(4, dtype=pose.dtype)
    rot[0, 0], rot[0, 2], rot[2, 0], rot[2, 2] = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)
    return rot @ pose


def orbit_yaws(frames: int, amplitude: float) -> list[float]:
    """One cycle from 0 out to ``+amplitude``, over to ``-amplitude`` and back (degrees)."""
    return [amplitude * math.sin(2.0 * math.pi * j / frames) for j in range(frames)]


def mean_image_baseline(data: HeadData) -> Tensor:
    """The mean training image [H, W, 3] (the baseline every held-out frame is compared with)."""
    total = torch.zeros(data.intrinsics.height, data.intrinsics.width, 3)
    for i in range(len(data.train)):
        total += data.train.image(i).float().cpu()
    return total / len(data.train)


def held_out_metrics(model: NeRFBlendShape, data: HeadData) -> tuple[list[Tensor], list[Tensor], dict]:
    """Render every held-out frame: ``(truths, renders, metrics)``."""
    truths, renders, rows = [], [], []
    baseline = mean_image_baseline(data)
    for i in range(len(data.val)):
        truth = data.val.image(i).float().cpu()
        render = render_frame(model, data, data.val.poses[i], data.val.coefficients[i]).cpu().clamp(0, 1)
        head = data.val.mask(i).cpu() > 0.5  # [H, W]
        row = {"img_id": data.val.dataset.frames[i].img_id, "psnr": float(psnr(render, truth)),
               "ssim": float(ssim(render, truth)), "baseline_psnr": float(psnr(baseline, truth))}
        if bool(head.any()):
            row.update(head_psnr=float(psnr(render[head], truth[head])),
                       baseline_head_psnr=float(psnr(baseline[head], truth[head])))
        rows.append(row)
        truths.append(truth)
        renders.append(render)
    keys = ("psnr", "ssim", "baseline_psnr", "head_psnr", "baseline_head_psnr")
    means = {key: float(np.mean([r[key] for r in rows if key in r] or [float("nan")])) for key in keys}
    return truths, renders, {**means, "frames": rows}


def jaw_measure(data: HeadData, truths: list[Tensor], renders: list[Tensor]) -> JawMeasure | str | None:
    """The closed/open jaw comparison when the data names a ``jaw_open`` coefficient; a line saying
    why not when its held-out frames barely vary; ``None`` without such a coefficient."""
    names = data.val.dataset.expression_names or []
    if "jaw_open" not in names or len(renders) < 2:
        return None
    try:
        return measure(data, truths, renders, "jaw_open")
    except FaceNerfError as error:
        return f"jaw_open: no closed/open check: {error}"


class TestedHead(NamedTuple):
    model: NeRFBlendShape     # eval mode, on the run's device
    data: HeadData
    checkpoint: Path
    step: int


def load_tested_head(cli: BlendShapeRunConfig, ckpt: str) -> TestedHead:
    """The head of ``--ckpt`` (else the workspace's newest) and its dataset as the command line gives it."""
    cli.runtime.apply_threads()
    device = select_device(cli.runtime.device)
    path = locate_checkpoint(cli.train.workspace, ckpt)
    model, info = load_blendshape(path)
    if cli.model.expr_dim is not None:
        check_expr_dim(cli.model.expr_dim, info["run"].model, str(path))
    data = load_head_data(tested_run(info["run"], cli), device, training=False)
    return TestedHead(model.to(device).eval(), data, path, int(info["step"]))


def held_out_pair(model: NeRFBlendShape, data: HeadData, frames: tuple[int, ...]) -> tuple[dict, dict]:
    """``({i: truth [H, W, 3]}, {i: render [H, W, 3]})`` of the held-out frames ``frames``."""
    truths = {i: data.val.image(i).float().cpu() for i in frames}
    renders = {i: render_frame(model, data, data.val.poses[i], data.val.coefficients[i]).cpu().clamp(0, 1)
               for i in frames}
    return truths, renders


def write_videos(model: NeRFBlendShape, data: HeadData, test: BlendShapeTestSettings, out: Path,
                 truths: list[Tensor], renders: list[Tensor], transfer: np.ndarray | None) -> dict[str, Path]:
    """The reenactment, orbit and (with ``transfer`` [N, K]) transfer videos in ``out``."""
    fps = test.test_fps
    videos = {"reenact": write_video(out / "reenact.mp4", renders, fps=fps),
              "reenact_vs_gt": write_video(out / "reenact_vs_gt.mp4",
                                           [torch.cat(pair, dim=1) for pair in zip(truths, renders)], fps=fps)}
    base = data.val.poses[0]
    orbit = (render_frame(model, data, yaw_about_head(base, yaw), data.val.coefficients[j % len(data.val)]).cpu()
             for j, yaw in enumerate(orbit_yaws(test.orbit_frames, test.orbit_yaw)))
    videos["orbit"] = write_video(out / "orbit.mp4", orbit, fps=fps)
    if transfer is not None:
        driven = (render_frame(model, data, base, torch.from_numpy(row)).cpu() for row in transfer)
        videos["transfer"] = write_video(out / "transfer.mp4", driven, fps=fps)
    return videos


def run_test(cli: BlendShapeRunConfig, test: BlendShapeTestSettings, say=print) -> dict:
    """Run ``--test`` (see the module docstring); returns the metrics and the paths written."""
    model, data, path, step = load_tested_head(cli, test.ckpt)
    names = data.val.dataset.expression_names
    transfer, note = read_coefficients(test.test_expr, model.expr_dim, names) if test.test_expr else (None, None)
    if transfer is not None:
        transfer = at_video_rate(transfer, test.test_expr_fps, test.test_fps)
    device = model.field.tables.device
    for line in data.notes + [note, fp16_note(cli.train.fp16, device)]:
        if line:
            say(line if line.startswith("note:") else f"note: {line}")
    out = ensure_writable_dir(Path(cli.train.workspace) / RESULTS_DIR)
    with autocast(device, "fp16" if cli.train.fp16 else "none"):
        truths, renders, metrics = held_out_metrics(model, data)
        videos = write_videos(model, data, test, out, truths, renders, transfer)
    report = {"checkpoint": str(path), "step": step, "dataset": str(cli.data.path), "n_frames": len(renders),
              **metrics, "videos": {k: str(v) for k, v in videos.items()}}
    jaw = jaw_measure(data, truths, renders)
    if isinstance(jaw, str):
        report["jaw"] = {"summary": jaw}
    elif jaw is not None:
        report["jaw"] = {"summary": jaw.summary(data), "ratio": jaw.ratio, "magnitude_ratio": jaw.magnitude_ratio,
                         "box": list(jaw.box)}
    report["metrics_path"] = str(write_json(out / "metrics.json", report))
    return report
