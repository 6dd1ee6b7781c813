"""Synthetic RefineNet pairs: degraded-vs-sharp crops of any image folder or of procedural textures.

A sharp crop is blurred, down- and up-sampled and given noise (:class:`Degradation`) to look like
a coarse NeRF render; both are written in the pair layout of :mod:`facenerf.data.pairs`
(``{name}/degraded/{k}``). For tests, demos and trying the RefineNet without a trained MoFaNeRF::

    python -m facenerf.tools.degraded_pairs --procedural 200 --out dataset --size 64
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from facenerf.config import option
from facenerf.data.pairs import WriteSummary, write_pairs
from facenerf.errors import FaceNerfError
from facenerf.io import read_image, resize_image


@dataclass(frozen=True)
class Degradation:
    """How a sharp image is turned into a NeRF-render-like input: blur, lose resolution, add noise."""

    blur_sigma: float = option(1.0, "Gaussian blur sigma (pixels of the output size)")
    scale: float = option(0.5, "down/up-sampling factor (1 = none)")
    noise_std: float = option(0.02, "additive noise std in [0, 1] units")


@dataclass(frozen=True)
class DegradedPairs:
    """What :func:`make_degraded_pairs` writes, and from what."""

    out: str = option("dataset", "dataset root to write train_A/ and train_B/ into")
    src: str = option("", "folder of sharp source images (empty = none)")
    procedural: int = option(0, "number of procedural texture sources")
    size: int = option(64, "side of the square pair images")
    crops: int = option(4, "random crops per source image")
    seed: int = option(0, "random seed")
    degradation: Degradation = field(default_factory=Degradation)

    def __post_init__(self) -> None:
        if self.size < 1 or self.crops < 1:
            raise FaceNerfError("--size and --crops must be positive")
        if not self.src and self.procedural <= 0:
            raise FaceNerfError("nothing to make pairs from: pass --src FOLDER and/or --procedural N")


def degrade(image: np.ndarray, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """``[H, W, 3]`` float [0, 1] -> degraded copy of the same shape (blur, down/up-sample, noise)."""
    import cv2

    height, width = image.shape[:2]
    out = image.astype(np.float32)
    if spec.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=spec.blur_sigma, borderType=cv2.BORDER_REFLECT)
    if 0 < spec.scale < 1:
        small = (max(1, round(width * spec.scale)), max(1, round(height * spec.scale)))
        out = cv2.resize(out, small, interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    if spec.noise_std > 0:
        out = out + rng.normal(0.0, spec.noise_std, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def procedural_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[size, size, 3]`` float image with sharp detail: a gradient, stripes, discs, boxes and lines."""
    import cv2

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys)[..., None]
    image = (c0 * (1 - ramp) + c1 * ramp).astype(np.float32)
    freq, phase, theta = rng.uniform(4, 12), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * freq * (np.cos(theta) * xs + np.sin(theta) * ys) + phase) > 0
    image = np.where(stripes[..., None], image * 0.7, image)
    canvas = np.ascontiguousarray(image)
    for _ in range(rng.integers(3, 7)):
        colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(canvas, (x, y), int(rng.integers(size // 16 + 1, size // 4 + 2)), colour, -1)
        elif kind == 1:
            x2, y2 = (int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(canvas, (x, y), (x2, y2), colour, -1)
        else:
            x2, y2 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(canvas, (x, y), (x2, y2), colour, int(rng.integers(1, 3)))
    return np.clip(canvas, 0.0, 1.0).astype(np.float32)


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (side 50-100% of the shorter side) resized to ``size x size``."""
    height, width = image.shape[:2]
    side = max(1, int(min(height, width) * rng.uniform(0.5, 1.0)))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    return resize_image(image[top:top + side, left:left + side], (size, size))


def _folder_images(folder: Path, report: Callable[[str], None]) -> Iterator[tuple[str, np.ndarray]]:
    from facenerf.io import list_images

    for path in list_images(folder):
        try:
            yield path.stem, read_image(path)
        except FaceNerfError as err:
            report(f"skipping source {path}: {err}")


def degraded_pair_items(sources: Iterable[tuple[str, np.ndarray]], size: int, crops: int,
                        rng: np.random.Generator, spec: Degradation = Degradation()
                        ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image)`` sources -> ``("{name}/degraded/{k}", degraded crop, sharp crop)`` items."""
    for name, image in sources:
        for k in range(crops):
            sharp = random_crop(image, size, rng)
            yield f"{name}/degraded/{k}", degrade(sharp, rng, spec), sharp


def make_degraded_pairs(job: DegradedPairs, report: Callable[[str], None] = print) -> WriteSummary:
    """Write degraded-vs-sharp pairs from the images in ``job.src`` and/or procedural textures.

    Every source gives ``crops`` random crops; procedural sources are named ``proc{i:05d}``.
    """
    rng = np.random.default_rng(job.seed)
    sources: list[Iterable[tuple[str, np.ndarray]]] = []
    if job.src:
        sources.append(_folder_images(Path(job.src), report))
    if job.procedural > 0:
        sources.append((f"proc{i:05d}", procedural_image(2 * job.size, rng)) for i in range(job.procedural))
    items = (item for source in sources
             for item in degraded_pair_items(source, job.size, job.crops, rng, job.degradation))
    return write_pairs(job.out, items, report=report)
