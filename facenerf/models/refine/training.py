"""Training the RefineNet on (render, ground truth) pairs with the shared Trainer.

:func:`train_refine` is what ``trainingDataPreprocess/train.py`` calls: it scans the pair
folders (reporting every pair it must skip), holds out whole identities for validation, and
runs :class:`~facenerf.engine.trainer.Trainer` (progress bar, TensorBoard, resumable
checkpoints under ``<checkpoints_dir>/<name>/checkpoints``). The validation callback reports
PSNR/SSIM of the unrefined renders and of the refined ones against the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facenerf.config import from_dict, from_flat, option, to_dict
from facenerf.data.pair_batches import PairBatches, PairDataset
from facenerf.data.pairs import PairScan, scan_pairs, split_pairs
from facenerf.engine.trainer import TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import write_json
from facenerf.models.refine.model import MODEL_NAME, RefineConfig, RefineModel
from facenerf.runtime import RunSettings

MAX_PROBLEM_LINES = 20


@dataclass(frozen=True)
class RefineLocation:
    """Where a RefineNet run lives: ``<checkpoints_dir>/<name>/`` (checkpoints, logs, config)."""

    name: str = option("facescape", "experiment name: outputs go to <checkpoints_dir>/<name>")
    checkpoints_dir: str = option("logs/refine", "root of all RefineNet runs")

    @property
    def out_dir(self) -> Path:
        return Path(self.checkpoints_dir) / self.name


@dataclass(frozen=True)
class RefineTrainSettings:
    """Everything :func:`train_refine` needs besides the network (:class:`RefineConfig`)."""

    location: RefineLocation = field(default_factory=RefineLocation)
    dataroot: str = option("dataset", "folder holding the render and ground-truth trees")
    nerf_folder: str = option("train_A", "render tree, relative to --dataroot")
    gt_folder: str = option("train_B", "ground-truth tree, relative to --dataroot")
    load_size: int = option(512, "pairs are resized to load_size x load_size", aliases=("loadSize",))
    batch_size: int = option(1, "pairs per step", aliases=("batchSize",))
    max_steps: int = option(480_000, "optimisation steps (reference: 20 epochs of 24k pairs)")
    niter: int = option(0, "epochs at the starting learning rate (pix2pixHD); with niter or niter_decay set, the "
                           "run lasts niter + niter_decay epochs instead of max_steps (reference: 19 + 1)")
    niter_decay: int = option(0, "epochs over which the learning rate then falls linearly to zero (pix2pixHD)")
    beta1: float = option(0.5, "Adam beta1")
    lr_decay_steps: int = option(0, "exponential decay: lr * rate^(step/N); 0 = constant")
    lr_decay_rate: float = option(TrainerConfig.lr_decay_rate, "learning-rate factor per lr_decay_steps")
    flip: bool = option(False, "randomly mirror pairs left-right")
    cache: bool = option(False, "keep decoded training images in memory")
    workers: int = option(2, "threads decoding the next batches (0 = none)", key="num_workers",
                          aliases=("nThreads",))
    val_fraction: float = option(0.05, "fraction of identities held out for validation")
    max_val: int = option(64, "at most this many validation pairs")
    log_every: int = option(100, "steps between log lines", aliases=("print_freq",))
    eval_every: int = option(1000, "steps between validations")
    save_every: int = option(1000, "steps between checkpoints", aliases=("save_latest_freq",))
    keep_last: int = option(TrainerConfig.keep_last, "checkpoints kept (0 = all)")

    def __post_init__(self) -> None:
        for key in ("load_size", "batch_size", "max_steps"):
            if getattr(self, key) < 1:
                raise FaceNerfError(f"--{key} must be at least 1 (got {getattr(self, key)})")
        if self.niter < 0 or self.niter_decay < 0:
            raise FaceNerfError(f"--niter and --niter_decay must be 0 or more (got {self.niter}, {self.niter_decay})")
        if not 0 <= self.val_fraction < 1:
            raise FaceNerfError(f"--val_fraction must be in [0, 1) (got {self.val_fraction})")

    @property
    def out_dir(self) -> Path:
        return self.location.out_dir

    @property
    def render_dir(self) -> Path:
        return Path(self.dataroot) / self.nerf_folder

    @property
    def target_dir(self) -> Path:
        return Path(self.dataroot) / self.gt_folder


@dataclass(frozen=True)
class RefineRunConfig:
    """A RefineNet training run; stored in every checkpoint."""

    net: RefineConfig = field(default_factory=RefineConfig)
    train: RefineTrainSettings = field(default_factory=RefineTrainSettings)
    runtime: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_checkpoint(cls, config: dict, where: str = "checkpoint") -> "RefineRunConfig":
        """The run stored in a checkpoint: this layout, or the flat option dict of older ones."""
        if isinstance(config.get("net"), dict):
            return from_dict(cls, config)
        return from_flat(cls, config)


def report_scan(scan: PairScan, report: Callable[[str], None] = print) -> None:
    """Print up to :data:`MAX_PROBLEM_LINES` problems, a count of the rest, and the summary."""
    problems = scan.problems()
    for line in problems[:MAX_PROBLEM_LINES]:
        report(f"warning: {line}")
    if len(problems) > MAX_PROBLEM_LINES:
        report(f"warning: ... and {len(problems) - MAX_PROBLEM_LINES} more problems")
    report(scan.summary())


def _stack(dataset: PairDataset, report: Callable[[str], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Load every pair of ``dataset`` -> renders, targets ``[N, 3, H, W]``, skipping unreadable ones."""
    renders, targets = [], []
    for index in range(len(dataset)):
        try:
            item = dataset[index]
        except FaceNerfError as err:
            report(f"skipping validation pair {dataset.pairs[index].key}: {err}")
            continue
        renders.append(item["A"])
        targets.append(item["B"])
    if not renders:
        raise FaceNerfError("no validation pair could be read: check the dataset or set val_fraction = 0")
    return torch.stack(renders), torch.stack(targets)


def image_grid(rows: list[list[torch.Tensor]]) -> np.ndarray:
    """Rows of ``[3, H, W]`` images in [0, 1] -> one ``[rows*H, cols*W, 3]`` numpy image."""
    return torch.cat([torch.cat(row, dim=2) for row in rows], dim=1).permute(1, 2, 0).clamp(0, 1).cpu().numpy()


class PairEvaluator:
    """``evaluator(model, step)``: PSNR/SSIM of renders and of refined renders on held-out pairs.

    Scalars: ``psnr_input``, ``psnr_refined``, ``ssim_input``, ``ssim_refined`` (means over the
    held-out pairs); image ``input_refined_target``: up to ``n_show`` rows of render | refined | target.
    """

    def __init__(self, dataset: PairDataset, chunk: int = 8, n_show: int = 4, report: Callable[[str], None] = print):
        self.renders, self.targets = _stack(dataset, report)  # [N, 3, H, W] each, in [0, 1]
        self.chunk, self.n_show = chunk, n_show

    @torch.no_grad()
    def refine_all(self, model: RefineModel) -> torch.Tensor:
        """The model's refinement of every held-out render, ``[N, 3, H, W]`` on the CPU."""
        device = next(model.parameters()).device
        outputs = [model.refine(self.renders[i:i + self.chunk].to(device)).clamp(0, 1).cpu()
                   for i in range(0, len(self.renders), self.chunk)]
        return torch.cat(outputs)

    def __call__(self, model: RefineModel, step: int) -> dict:
        from facenerf.metrics import psnr, ssim

        refined = self.refine_all(model)
        scalars = {"psnr_input": float(psnr(self.renders, self.targets)),
                   "psnr_refined": float(psnr(refined, self.targets))}
        if min(self.targets.shape[-2:]) >= 11:
            scalars["ssim_input"] = float(ssim(self.renders, self.targets))
            scalars["ssim_refined"] = float(ssim(refined, self.targets))
        rows = [[self.renders[i], refined[i], self.targets[i]] for i in range(min(self.n_show, len(refined)))]
        return {"scalars": scalars, "images": {"input_refined_target": image_grid(rows)}}


def epochs_to_steps(niter: int, niter_decay: int, n_pairs: int, batch_size: int) -> tuple[int, int, int]:
    """pix2pixHD's epochs as steps: ``(max_steps, constant steps, linear-decay steps)``."""
    per_epoch = max(1, math.ceil(n_pairs / batch_size))
    return (niter + niter_decay) * per_epoch, niter * per_epoch, niter_decay * per_epoch


def _trainer_config(run: RefineRunConfig, has_val: bool, n_pairs: int) -> TrainerConfig:
    """The loop's settings; pix2pixHD epochs (``niter``, ``niter_decay``) become steps over ``n_pairs``."""
    settings = run.train
    max_steps, linear_start, linear_steps = settings.max_steps, 0, 0
    if settings.niter or settings.niter_decay:
        max_steps, linear_start, linear_steps = epochs_to_steps(settings.niter, settings.niter_decay, n_pairs,
                                                                settings.batch_size)
    return TrainerConfig(
        out_dir=settings.out_dir, max_steps=max_steps, lr_decay_steps=settings.lr_decay_steps or None,
        lr_decay_rate=settings.lr_decay_rate, lr_linear_start=linear_start, lr_linear_steps=linear_steps,
        amp=run.runtime.amp, log_every=settings.log_every,
        eval_every=settings.eval_every if has_val else 0, save_every=settings.save_every,
        keep_last=settings.keep_last, progress=run.runtime.progress, adam_betas=(settings.beta1, 0.999))


def train_refine(run: RefineRunConfig, device: torch.device, report: Callable[[str], None] = print) -> dict:
    """Scan pairs, split, train (resuming if checkpoints exist) and evaluate; return the Trainer's result.

    The checkpoints store ``run``. The result gains ``"pairs"`` (train/val counts and skipped
    problems) and is also written to ``<out_dir>/train_summary.json``.
    """
    from facenerf.engine.trainer import Trainer

    settings, seed = run.train, run.runtime.seed
    model = RefineModel(run.net)  # first: a bad --vgg_weights fails before the dataset is scanned
    scan = scan_pairs(settings.render_dir, settings.target_dir, progress=run.runtime.progress)
    report_scan(scan, report)
    if not scan.pairs:
        raise FaceNerfError(f"no usable pairs in {settings.render_dir} and {settings.target_dir}: "
                            "both need images at the same relative paths (e.g. 1/1_neutral/3.png)")
    train_pairs, val_pairs = split_pairs(scan.pairs, settings.val_fraction, seed)
    val_pairs = val_pairs[:settings.max_val]
    size = (settings.load_size, settings.load_size)
    batches = PairBatches(PairDataset(train_pairs, size, cache=settings.cache), settings.batch_size,
                          seed, settings.flip, report, workers=settings.workers)
    evaluator = PairEvaluator(PairDataset(val_pairs, size), report=report) if val_pairs else None
    report(f"training on {len(train_pairs)} pairs, validating on {len(val_pairs)}")
    trainer = Trainer(model, batches, _trainer_config(run, evaluator is not None, len(train_pairs)), device,
                      config=run.to_dict(), evaluate=evaluator, model_name=MODEL_NAME)
    result = trainer.fit()
    result["pairs"] = {"train": len(train_pairs), "val": len(val_pairs), "problems": scan.problems()}
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.items()}
    write_json(Path(settings.out_dir) / "train_summary.json", summary, indent=2, default=str)
    return result
