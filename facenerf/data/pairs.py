"""RefineNet training pairs on disk: (coarse render, ground truth) images in two parallel folder trees.

On-disk layout (the one ``trainingDataPreprocess/train.py`` reads and :func:`write_pairs` writes)::

    dataset/train_A/{id}/{expression}/{N}.png    # render (input of the RefineNet)
    dataset/train_B/{id}/{expression}/{N}.png    # ground truth (target)

A render and its ground truth are paired by their path relative to the tree's root with the
suffix dropped (``1/1_neutral/3.png`` pairs with ``1/1_neutral/3.jpg``), never by sorted order, so a
missing file cannot shift every later pair. :func:`scan_pairs` reports files present in only one
tree, ambiguous names and unreadable images, and keeps every good pair; :func:`split_pairs` holds
out whole identities for validation. Loading pairs into batches is :mod:`facenerf.data.pair_batches`;
synthetic degraded-vs-sharp pairs come from :mod:`facenerf.data.synthetic.degraded_pairs`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import IMAGE_SUFFIXES, write_image

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
    for key in tqdm(keys, desc="checking pairs", disable=None if progress and check_images else True, dynamic_ncols=True):
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
