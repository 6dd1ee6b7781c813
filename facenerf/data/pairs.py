"""RefineNet training pairs: (coarse render, ground truth) images in two parallel folder trees.

On-disk layout (the one ``trainingDataPreprocess/train.py`` reads and :func:`write_pairs` writes)::

    dataset/train_A/{id}/{expression}/{N}.png    # render (input of the RefineNet)
    dataset/train_B/{id}/{expression}/{N}.png    # ground truth (target)

A render and its ground truth are paired by their path relative to the tree's root with the
suffix dropped (``1/1_neutral/3.png`` pairs with ``1/1_neutral/3.jpg``), never by sorted order, so a
missing file cannot shift every later pair. :func:`scan_pairs` reports files present in only one
tree, ambiguous names and unreadable images, and keeps every good pair. The two images of a
pair may have different sizes: both are resized to the training size on load.

This module also makes synthetic degraded-vs-sharp pairs from any image folder, or from
procedural textures, for tests and demos::

    python -m facenerf.data.pairs --src photos/ --out dataset --size 128 --crops 8
    python -m facenerf.data.pairs --procedural 200 --out dataset --size 64
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import IMAGE_SUFFIXES, read_image, resize_image, write_image

RENDER_FOLDER = "train_A"
TARGET_FOLDER = "train_B"


@dataclass(frozen=True)
class ImagePair:
    """One training pair. ``key`` is the relative path without suffix, '/'-separated."""

    key: str
    render: Path
    target: Path

    @property
    def group(self) -> str:
        """The top-level folder (the identity in the FaceScape layout), used to split train/val."""
        return self.key.split("/", 1)[0]


@dataclass
class PairScan:
    """Result of :func:`scan_pairs`: the good pairs and every problem found."""

    pairs: list[ImagePair] = field(default_factory=list)
    only_render: list[str] = field(default_factory=list)   # keys missing from the target tree
    only_target: list[str] = field(default_factory=list)   # keys missing from the render tree
    ambiguous: list[str] = field(default_factory=list)     # keys with several files in one tree
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def problems(self) -> list[str]:
        """One line per problem, suitable for printing."""
        lines = [f"no ground truth for render {k}" for k in self.only_render]
        lines += [f"no render for ground truth {k}" for k in self.only_target]
        lines += [f"several files named {k}.* in one tree (rename all but one)" for k in self.ambiguous]
        lines += [f"unreadable image {p}: {why}" for p, why in self.unreadable]
        return lines

    def summary(self) -> str:
        return (f"{len(self.pairs)} pairs; skipped {len(self.only_render)} renders without ground truth, "
                f"{len(self.only_target)} ground truths without render, {len(self.ambiguous)} ambiguous, "
                f"{len(self.unreadable)} unreadable")


def _index_tree(root: Path) -> tuple[dict[str, Path], set[str]]:
    """Map relative-path-without-suffix -> file for every image under ``root``; return ambiguous keys."""
    index: dict[str, Path] = {}
    ambiguous: set[str] = set()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue   # hidden files include temporaries of an interrupted write
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in index:
            ambiguous.add(key)
        index[key] = path
    return index, ambiguous


def check_image_header(path: Path) -> str | None:
    """Cheap readability check (header + PNG CRCs, no full decode): ``None`` if fine, else the reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            width, height = handle.size
            handle.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        return f"not a valid image ({err.__class__.__name__})"
    if width < 1 or height < 1:
        return "empty image"
    return None


def scan_pairs(render_dir: str | Path, target_dir: str | Path, check_images: bool = True,
               progress: bool = False) -> PairScan:
    """Pair the images of two trees by relative path and report everything that does not pair.

    ``check_images`` opens every file's header (and PNG checksums) to find unreadable images
    now rather than mid-training; ``progress`` shows a bar while doing so.

    Raises :class:`FaceNerfError` only if a folder does not exist; an empty result is returned
    as such (see :meth:`PairScan.summary`).
    """
    roots = (Path(render_dir), Path(target_dir))
    for root, role in zip(roots, ("render (--nerf_folder)", "ground-truth (--gt_folder)")):
        if not root.is_dir():
            raise FaceNerfError(f"{role} folder not found: {root} (check --dataroot and the folder name)")
    renders, amb_r = _index_tree(roots[0])
    targets, amb_t = _index_tree(roots[1])
    scan = PairScan(only_render=sorted(set(renders) - set(targets)),
                    only_target=sorted(set(targets) - set(renders)),
                    ambiguous=sorted(amb_r | amb_t))
    from tqdm import tqdm

    keys = sorted(set(renders) & set(targets) - set(scan.ambiguous))
    for key in tqdm(keys, desc="checking pairs", disable=not (progress and check_images), dynamic_ncols=True):
        pair = ImagePair(key, renders[key], targets[key])
        reasons = [(p, check_image_header(p)) for p in (pair.render, pair.target)] if check_images else []
        bad = [(p, why) for p, why in reasons if why is not None]
        if bad:
            scan.unreadable.extend(bad)
        else:
            scan.pairs.append(pair)
    return scan


def split_pairs(pairs: list[ImagePair], val_fraction: float, seed: int = 0) -> tuple[list[ImagePair], list[ImagePair]]:
    """Hold out whole groups (identities) for validation when there are several, else single pairs.

    Returns ``(train, val)``; ``val`` is empty when ``val_fraction <= 0``. At least one pair
    always stays in ``train``.
    """
    if val_fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    rng = random.Random(seed)
    groups = sorted({p.group for p in pairs})
    if len(groups) >= 2:
        rng.shuffle(groups)
        n_val = min(max(1, round(val_fraction * len(groups))), len(groups) - 1)
        held = set(groups[:n_val])
        return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_val = min(max(1, round(val_fraction * len(pairs))), len(pairs) - 1)
    held_idx = set(order[:n_val])
    return ([p for i, p in enumerate(pairs) if i not in held_idx],
            [p for i, p in enumerate(pairs) if i in held_idx])


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` float numpy -> ``[3, H, W]`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class PairDataset(torch.utils.data.Dataset):
    """Loads pairs as ``{"A": [3, H, W], "B": [3, H, W], "key": str}`` float in [0, 1].

    Both images are resized to ``size = (width, height)`` (``None`` keeps the render's size and
    resizes the ground truth to it). With ``cache=True`` decoded images stay in memory.
    An unreadable file raises :class:`FaceNerfError` naming it.
    """

    def __init__(self, pairs: list[ImagePair], size: tuple[int, int] | None = None, cache: bool = False):
        if not pairs:
            raise FaceNerfError("no image pairs to load: check that the render and ground-truth "
                                "folders hold images with matching relative paths")
        self.pairs = list(pairs)
        self.size = size
        self._cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pair = self.pairs[index]
        render = read_image(pair.render, self.size)
        target = read_image(pair.target, self.size or (render.shape[1], render.shape[0]))
        item = {"A": image_to_tensor(render), "B": image_to_tensor(target), "key": pair.key}
        if self._cache is not None:
            self._cache[index] = item
        return item


class PairBatches:
    """Deterministic shuffled batches by step: ``batches(step) -> {"A", "B": [B, 3, H, W], "keys"}``.

    Position ``p = step * batch_size + j`` takes item ``perm_e[p % n]`` of epoch ``e = p // n``,
    where ``perm_e`` is a permutation seeded by ``(seed, e)``; so a resumed run sees exactly the
    batches the interrupted one would have. With ``flip`` a pair is mirrored left-right (both
    images alike) when the epoch's coin for it says so. A pair that fails to load is reported
    once through ``report`` and replaced by the next loadable one of the same permutation; if
    none loads, :class:`FaceNerfError`.

    With ``workers > 0`` the next ``workers`` batches are decoded in background threads while
    the current step trains (image decoding releases the GIL); the batches are the same.
    """

    def __init__(self, dataset: PairDataset, batch_size: int, seed: int = 0, flip: bool = False,
                 report: Callable[[str], None] = print, workers: int = 0):
        if batch_size < 1:
            raise FaceNerfError(f"batch size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.seed, self.flip = dataset, batch_size, seed, flip
        self.report, self.workers = report, workers
        self.bad: set[int] = set()
        self._lock = threading.Lock()
        self._epoch: tuple[int, list[int], list[bool]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}

    def _epoch_order(self, epoch: int) -> tuple[list[int], list[bool]]:
        cached = self._epoch
        if cached is None or cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
            coins = (torch.rand(len(self.dataset), generator=generator) < 0.5).tolist()
            cached = self._epoch = (epoch, order, coins)
        return cached[1], cached[2]

    def _load(self, position: int) -> dict:
        n = len(self.dataset)
        order, coins = self._epoch_order(position // n)
        for offset in range(n):
            slot = (position + offset) % n
            index = order[slot]
            if index in self.bad:
                continue
            try:
                item = self.dataset[index]
            except FaceNerfError as err:
                with self._lock:
                    if index not in self.bad:
                        self.bad.add(index)
                        self.report(f"skipping pair {self.dataset.pairs[index].key}: {err}")
                continue
            if self.flip and coins[slot]:
                item = {**item, "A": item["A"].flip(-1), "B": item["B"].flip(-1)}
            return item
        raise FaceNerfError("none of the image pairs could be read: check the dataset folders")

    def batch(self, step: int) -> dict:
        """The batch of ``step``, loaded in the calling thread."""
        first = step * self.batch_size
        return _collate([self._load(first + j) for j in range(self.batch_size)])

    def __call__(self, step: int) -> dict:
        if self.workers <= 0:
            return self.batch(step)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pairs")
        for stale in [k for k in self._pending if k < step or k > step + self.workers]:
            self._pending.pop(stale).cancel()
        future = self._pending.pop(step, None) or self._pool.submit(self.batch, step)
        for ahead in range(step + 1, step + 1 + self.workers):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self.batch, ahead)
        return future.result()


def _collate(items: list[dict]) -> dict:
    return {"A": torch.stack([i["A"] for i in items]), "B": torch.stack([i["B"] for i in items]),
            "keys": [i["key"] for i in items]}


# ----------------------------------------------------------------------------- writing pairs

@dataclass
class WriteSummary:
    """What :func:`write_pairs` wrote and skipped."""

    root: Path
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def summary(self) -> str:
        return (f"wrote {self.written} pairs to {self.root / RENDER_FOLDER} and {self.root / TARGET_FOLDER}; "
                f"skipped {len(self.skipped)}")


def _checked_relative(rel_path: str | Path) -> PurePosixPath:
    rel = PurePosixPath(Path(rel_path).as_posix())
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise FaceNerfError(f"pair path {rel_path!s} must be relative and inside the dataset "
                            "(e.g. 1/1_neutral/3.png)")
    return rel.with_suffix(".png")


def _check_image(image, what: str, rel) -> None:
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[-1] != 3 or shape[0] < 1 or shape[1] < 1:
        raise FaceNerfError(f"{what} image for {rel} has shape {shape}; expected [H, W, 3]")


def write_pairs(out_root: str | Path, items: Iterable[tuple[str | Path, object, object]],
                render_folder: str = RENDER_FOLDER, target_folder: str = TARGET_FOLDER,
                report: Callable[[str], None] = print) -> WriteSummary:
    """Write ``(relative path, render, ground truth)`` items as PNGs into the pair layout.

    ``render`` and ``ground truth`` are ``[H, W, 3]`` float in [0, 1] or uint8 (numpy or torch);
    their sizes may differ. The relative path (e.g. ``"1/1_neutral/3"``) gets a ``.png`` suffix
    under ``out_root/render_folder`` and ``out_root/target_folder``. A bad item is reported and
    skipped; the rest are written.
    """
    root = Path(out_root)
    result = WriteSummary(root)
    for rel_path, render, target in items:
        try:
            rel = _checked_relative(rel_path)
            _check_image(render, "render", rel)
            _check_image(target, "ground-truth", rel)
            write_image(root / render_folder / rel, render)
            write_image(root / target_folder / rel, target)
        except OutputError:
            raise   # full disk, read-only folder: every further pair would fail the same way
        except FaceNerfError as err:
            result.skipped.append((str(rel_path), str(err)))
            report(f"skipping pair {rel_path}: {err}")
            continue
        result.written += 1
    return result


# ----------------------------------------------------------------------------- synthetic pairs

@dataclass(frozen=True)
class Degradation:
    """How a sharp image is turned into a NeRF-render-like input: blur, lose resolution, add noise."""

    blur_sigma: float = 1.0   # Gaussian blur, pixels of the output size
    scale: float = 0.5        # downsample by this factor, then upsample back (bilinear)
    noise_std: float = 0.02   # additive Gaussian noise, in [0, 1] intensity units


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


def make_degraded_pairs(out_root: str | Path, src_folder: str | Path | None = None, n_procedural: int = 0,
                        size: int = 64, crops: int = 4, seed: int = 0, spec: Degradation = Degradation(),
                        report: Callable[[str], None] = print) -> WriteSummary:
    """Write degraded-vs-sharp pairs from the images in ``src_folder`` and/or procedural textures.

    Every source gives ``crops`` random crops; procedural sources are named ``proc{i:05d}``.
    """
    if src_folder is None and n_procedural <= 0:
        raise FaceNerfError("nothing to make pairs from: pass --src FOLDER and/or --procedural N")
    rng = np.random.default_rng(seed)
    sources: list[Iterable[tuple[str, np.ndarray]]] = []
    if src_folder is not None:
        sources.append(_folder_images(Path(src_folder), report))
    if n_procedural > 0:
        sources.append((f"proc{i:05d}", procedural_image(2 * size, rng)) for i in range(n_procedural))
    items = (item for source in sources for item in degraded_pair_items(source, size, crops, rng, spec))
    return write_pairs(out_root, items, report=report)


def main(argv: list[str] | None = None) -> int:
    """``python -m facenerf.data.pairs``: make degraded-vs-sharp pairs for tests and demos."""
    from facenerf.config import make_parser, parse_args

    parser = make_parser("Make degraded-vs-sharp RefineNet pairs (dataset/train_A|train_B) from an "
                         "image folder and/or procedural textures.", prog="python -m facenerf.data.pairs")
    parser.add_argument("--src", default=None, help="folder of sharp source images")
    parser.add_argument("--procedural", type=int, default=0, help="number of procedural texture sources")
    parser.add_argument("--out", default="dataset", help="dataset root to write train_A/ and train_B/ into")
    parser.add_argument("--size", type=int, default=64, help="side of the square pair images")
    parser.add_argument("--crops", type=int, default=4, help="random crops per source image")
    parser.add_argument("--blur_sigma", type=float, default=1.0, help="Gaussian blur sigma (pixels)")
    parser.add_argument("--scale", type=float, default=0.5, help="down/up-sampling factor (1 = none)")
    parser.add_argument("--noise_std", type=float, default=0.02, help="additive noise std in [0, 1] units")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(parser, argv)
    if args.size < 1 or args.crops < 1:
        raise FaceNerfError("--size and --crops must be positive")
    spec = Degradation(args.blur_sigma, args.scale, args.noise_std)
    result = make_degraded_pairs(args.out, args.src, args.procedural, args.size, args.crops, args.seed, spec)
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    from facenerf.errors import run_cli

    run_cli(main)
