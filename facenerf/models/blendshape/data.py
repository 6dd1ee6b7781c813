"""Talking-head data for NeRFBlendShape training: splits, frames, and one ray batch per step.

:func:`load_head_data` parses a dataset folder once (either layout, :mod:`facenerf.data.video`),
resolves what the run leaves to the data (``expr_dim``, ``scale``, ``bound``) and holds the
training and held-out frames. :class:`FrameStore` serves a split's images and masks from disk
(``--preload 0``), CPU memory (1) or the device (2). :class:`HeadBatches` is the Trainer's
``batches(step)``: one training frame per step (a fresh random order every epoch), ``num_rays``
uniform random pixels, and in the patch phase one ``patch_size``^2 patch around the mouth (even
steps) or the face (odd steps). Everything drawn depends only on the seed and the step, so a
resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import pixel_rays, scaled_pixel_center
from facenerf.data.ray_batches import gather_pixels, patch_pixels, uniform_pixels
from facenerf.data.video import (VideoDataset, as_float, detect_layout, load_split, parse_video_dataset,
                                 read_head_mask)
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.config import (AUTO_BOUND_MARGIN, OFFICIAL_SCALE, REFERENCE_BOUND,
                                               BlendShapeRunConfig)


def resolve_scale(layout: str, scale: float | None) -> float:
    """The pose-translation scale: as given, else 0.33 for the release's layout and 1 otherwise."""
    if scale is not None:
        return float(scale)
    return OFFICIAL_SCALE if layout == "official" else 1.0


def resolve_bound(dataset: VideoDataset, bound: float) -> float:
    """The cube half-side: as given, else from the transforms' ``aabb``, else the release's 0.06."""
    if bound > 0:
        return float(bound)
    if dataset.aabb is not None:
        return float(AUTO_BOUND_MARGIN * np.abs(dataset.aabb).max())
    return REFERENCE_BOUND


class FrameStore:
    """Images ``[H, W, 3]``, head masks ``[H, W]`` and torso layers ``[H, W, 4]`` of a split at the
    training resolution.

    ``image`` is ``"head"`` (``head_imgs``, the head's target) or ``"frame"`` (``ori_imgs``, the
    whole person: the target of a head composited over its torso). ``preload`` 0 reads each
    frame when asked; 1 loads the split into CPU memory; 2 also moves it to ``device``. Poses
    ``[N, 4, 4]`` and raw coefficients ``[N, K]`` are always in memory.
    """

    def __init__(self, dataset: VideoDataset, downscale: float, preload: int, device: torch.device,
                 masks: bool = True, progress: bool = False, image: str = "head", torso: bool = False):
        self.dataset = dataset
        self.intrinsics = dataset.intrinsics.scaled(1.0 / downscale)
        self.size = (self.intrinsics.width, self.intrinsics.height)
        self.masks, self.kind = masks, image
        self.poses = torch.from_numpy(np.stack([f.c2w for f in dataset.frames])).float()           # [N, 4, 4]
        self.coefficients = torch.from_numpy(np.stack([f.expression for f in dataset.frames])).float()  # [N, K]
        self.tensors = None
        if preload > 0:  # 8-bit frames at their own size are kept in 8 bits: exact, 4x less memory than fp32
            self.tensors = load_split(dataset, downscale, image=image, masks=masks, torso=torso, progress=progress,
                                      dtype=torch.uint8 if downscale == 1 else None)
            if preload == 2:
                from facenerf.data.video import check_preload_memory

                held = [getattr(self.tensors, name) for name in ("images", "masks", "torso")]
                check_preload_memory(sum(t.numel() * t.element_size() for t in held if t is not None), device,
                                     f"{len(dataset.frames)} {dataset.split} frames")
                for name in ("images", "masks", "torso"):
                    if getattr(self.tensors, name) is not None:
                        setattr(self.tensors, name, getattr(self.tensors, name).to(device))

    def __len__(self) -> int:
        return len(self.dataset.frames)

    def image(self, i: int) -> Tensor:
        """Frame ``i``'s target image [H, W, 3] float in [0, 1]."""
        if self.tensors is not None:
            return as_float(self.tensors.images[i])
        from facenerf.io import read_image

        frame = self.dataset.frames[i]
        path = frame.image_path if self.kind == "head" else frame.frame_path
        if path is None:
            raise FaceNerfError(f"frame {frame.img_id} has no ori_imgs image; restore it or rerun the preprocessing")
        return torch.from_numpy(read_image(path, self.size))

    def torso(self, i: int) -> Tensor:
        """Frame ``i``'s torso layer [H, W, 4] (straight-alpha RGBA in [0, 1])."""
        if self.tensors is not None and self.tensors.torso is not None:
            return as_float(self.tensors.torso[i])
        from facenerf.data.video import _read_rgba

        frame = self.dataset.frames[i]
        if frame.torso_path is None:
            raise FaceNerfError(f"frame {frame.img_id} has no torso_imgs image; rerun the preprocessing")
        return torch.from_numpy(_read_rgba(frame.torso_path, self.size))

    def mask(self, i: int) -> Tensor:
        """Frame ``i``'s head mask [H, W] float in [0, 1]."""
        if self.tensors is not None:
            return as_float(self.tensors.masks[i])
        from facenerf.io import resize_image

        frame = self.dataset.frames[i]
        if frame.mask_path is None:
            raise FaceNerfError(f"frame {frame.img_id} has no head mask (head_masks/ or parsing/); rerun the "
                                "preprocessing")
        mask = read_head_mask(frame.mask_path)
        if (mask.shape[1], mask.shape[0]) != self.size:
            mask = resize_image(mask[..., None], self.size)[..., 0]
        return torch.from_numpy(mask)


@dataclass
class HeadData:
    """A parsed dataset with the run's values filled in."""

    run: BlendShapeRunConfig          # expr_dim, scale and bound resolved
    train: FrameStore
    val: FrameStore
    intrinsics: Intrinsics            # at the training resolution
    pixel_center: float               # of the training-resolution images
    near: float
    far: float
    background: Tensor                # [H, W, 3] bc.jpg (white without one, or with --white_bg)
    expr_max: Tensor                  # [K] training-set range (the clamp)
    expr_min: Tensor                  # [K]
    notes: list[str]

    @property
    def expr_dim(self) -> int:
        return int(self.expr_max.shape[0])


def _background(dataset: VideoDataset, size: tuple[int, int], white: bool) -> Tensor:
    from facenerf.io import read_image

    if white or dataset.background_path is None:
        return torch.ones(size[1], size[0], 3)
    return torch.from_numpy(read_image(dataset.background_path, size))


def load_head_data(run: BlendShapeRunConfig, device: torch.device, training: bool = True) -> HeadData:
    """Parse ``run.data.path`` (train + held-out splits) and resolve ``expr_dim``, ``scale``, ``bound``.

    With ``run.train.torso`` the training frames also serve their torso layers and the held-out
    frames are whole video frames (``ori_imgs``), the target of head over torso over background.
    Every problem with the data (missing frames, masks or torso images, ``--expr_dim`` above what
    the data holds, a ``--test_num`` that leaves no training frame) raises one FaceNerfError line.
    ``training = False`` (rendering a trained run) needs no torso layers.
    """
    torso = run.train.torso
    root = Path(run.data.path)
    if not str(run.data.path):
        raise FaceNerfError("no dataset given: pass the dataset folder first, e.g. main_nerf.py data/talk ...")
    scale = resolve_scale(detect_layout(root), run.scene.scale)
    kwargs = dict(expr_dim=run.model.expr_dim, test_num=run.data.test_num, scale=scale, require_masks=True,
                  require_torso=torso and training)
    train = parse_video_dataset(root, "train", **kwargs)
    val = parse_video_dataset(root, "val", **kwargs)
    notes = list(train.notes)
    resolved = run.resolved(train.expr_dim, resolve_bound(train, run.scene.bound), scale)
    progress = run.runtime.progress
    if torso:
        missing = [f.img_id for f in val.frames if f.frame_path is None]
        if missing:
            raise FaceNerfError(f"{len(missing)} held-out frames lack their ori_imgs image (first: img_id "
                                f"{missing[0]}); restore them or rerun the preprocessing")
    train_store = FrameStore(train, run.data.downscale, run.data.preload, device, progress=progress,
                             torso=torso and training, image="frame" if torso else "head")
    val_store = FrameStore(val, run.data.downscale, min(run.data.preload, 1), device, progress=progress,
                           image="frame" if torso else "head")
    K = train_store.intrinsics
    return HeadData(
        run=resolved, train=train_store, val=val_store, intrinsics=K,
        pixel_center=scaled_pixel_center(run.scene.pixel_center, 1.0 / run.data.downscale),
        near=train.near if train.near is not None else 0.0, far=train.far if train.far is not None else 1e10,
        background=_background(train, train_store.size, run.scene.white_bg),
        expr_max=torch.from_numpy(train.expr_max).float(), expr_min=torch.from_numpy(train.expr_min).float(),
        notes=notes)


def patch_region(rect: tuple | None, factor: float, patch: int) -> tuple[int, int, int, int] | None:
    """The region ``(x0, y0, x1, y1)`` a ``patch``-pixel patch must lie in for its centre to fall inside
    ``rect`` = (x, y, w, h) of the full-resolution image, at an image scaled by ``factor`` (None
    without a rect; :func:`~facenerf.data.ray_batches.patch_pixels` clips it to the image)."""
    if rect is None:
        return None
    x, y, w, h = (float(v) * factor for v in rect)
    half = patch / 2.0
    return int(np.floor(x - half)), int(np.floor(y - half)), int(np.ceil(x + w + half)), int(np.ceil(y + h + half))


class HeadBatches:
    """``batches(step) -> batch`` for the Trainer (see the module docstring).

    A batch holds ``rays`` (random rays first, then patch rays), ``rgb`` [N, 3] targets,
    ``background`` [N, 3], ``mask`` [N], ``coefficients`` [K] (raw), ``n_random`` and ``patch``
    (patch side, 0 without a patch).
    """

    def __init__(self, data: HeadData, num_rays: int, seed: int, patch_active=None, patch_size: int = 0):
        self.data, self.num_rays, self.seed = data, num_rays, int(seed)
        self.patch_active = patch_active or (lambda step: False)
        self.patch_size = patch_size
        factor = data.intrinsics.width / data.train.dataset.intrinsics.width
        frames = data.train.dataset.frames
        self.regions = [(patch_region(f.lip_rect, factor, patch_size), patch_region(f.face_rect, factor, patch_size))
                        for f in frames]

    def frame_of(self, step: int) -> int:
        """The training frame of ``step``: epoch ``e`` visits every frame once in a random order."""
        n = len(self.data.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + step // n))
        return int(order[step % n])

    def __call__(self, step: int) -> dict:
        data, i = self.data, self.frame_of(step)
        K = data.intrinsics
        gen = torch.Generator().manual_seed(self.seed * 1000003 + step)
        xy = uniform_pixels(self.num_rays, K.height, K.width, gen)  # [n, 2]
        patch = 0
        if self.patch_active(step):
            mouth, face = self.regions[i]
            region = mouth if step % 2 == 0 else face
            xy = torch.cat([xy, patch_pixels(1, self.patch_size, K.height, K.width, gen, region)])
            patch = self.patch_size
        image = data.train.image(i)
        xy_dev = xy.to(image.device)
        rays = pixel_rays(K, data.train.poses[i], xy.float(), data.near, data.far, data.pixel_center)
        return {"rays": rays, "rgb": gather_pixels(image, xy_dev).float(),
                "background": gather_pixels(data.background, xy).float(),
                "mask": gather_pixels(data.train.mask(i)[..., None], xy_dev)[:, 0].float(),
                "coefficients": data.train.coefficients[i], "n_random": self.num_rays, "patch": patch,
                "frame": i}


class TorsoBatches(HeadBatches):
    """``batches(step) -> batch`` for torso training (one frame per step, as :class:`HeadBatches`).

    A batch holds ``coords`` [n, 2] (:func:`~facenerf.models.blendshape.torso.normalized_pixels`
    of ``num_rays`` random pixels), ``rgba`` [n, 4] (the torso layer), ``background`` [n, 3],
    ``pose`` [6] (:func:`~facenerf.models.blendshape.torso.pose_vector` of the frame's camera)
    and ``frame`` (the training frame's index, which selects its torso code).
    """

    def __call__(self, step: int) -> dict:
        from facenerf.models.blendshape.torso import normalized_pixels, pose_vector

        data, i = self.data, self.frame_of(step)
        K = data.intrinsics
        gen = torch.Generator().manual_seed(self.seed * 1000003 + step)
        xy = uniform_pixels(self.num_rays, K.height, K.width, gen)  # [n, 2]
        rgba = data.train.torso(i)
        return {"coords": normalized_pixels(xy.float(), K.height, K.width),
                "rgba": gather_pixels(rgba, xy.to(rgba.device)).float(),
                "background": gather_pixels(data.background, xy).float(),
                "pose": pose_vector(data.train.poses[i]), "frame": i}

