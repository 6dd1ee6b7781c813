"""Talking-head video datasets (NeRFBlendShape): parse the on-disk layouts, load splits as tensors.

Two layouts are read (``docs/architecture.md`` and ``data/README.md`` describe both):

* ``"radnerf"`` - written by ``python -m facenerf.tools.talking_head`` and
  ``data_utils/process.py`` (RAD-NeRF / unofficial NeRFBlendShape): ``transforms_train.json``,
  ``transforms_val.json`` (and ``transforms_all.json``) with ``focal_len``/``fx``/``fy``,
  ``cx``, ``cy`` (image size ``h``/``w`` or ``2 cy`` x ``2 cx``) and per frame ``img_id`` and
  ``transform_matrix``; ``expr.npy [N, K]`` indexed by ``img_id``; ``expr_max.npy`` /
  ``expr_min.npy`` of ``K + 1`` values with a leading 1.0 (or ``K`` values);
  ``head_imgs/``, ``ori_imgs/``, ``head_masks/`` or ``parsing/``, ``torso_imgs/``, ``bc.jpg``.
* ``"official"`` - the NeRFBlendShape release: one ``transforms.json`` with ``h``, ``w``,
  ``fx``, ``fy``, ``cx``, ``cy`` and per frame ``img_id``, ``transform_matrix``, ``exp_ori``;
  ``max_46.txt`` / ``min_46.txt``; ``head_imgs/``, ``ori_imgs/``, ``parsing/`` (head = pure
  blue), ``bc.jpg``. The last ``test_num`` frames (default 500) are the validation split.

Poses are camera-to-head matrices in the OpenGL convention, exactly as stored (translation
times ``scale``). Expression vectors hold the ``K`` tracked coefficients, unclamped; the model
adds the mean table's constant 1.0 and clamps into ``[expr_min, expr_max]`` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facenerf.core.cameras import Intrinsics
from facenerf.errors import FaceNerfError

SPLITS = ("train", "val", "all")
OFFICIAL_TEST_NUM = 500
MASK_FOLDERS = ("head_masks", "parsing")


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a split."""

    img_id: int
    split: str                       # "train" or "val"
    c2w: np.ndarray                  # [4, 4] float64 camera-to-head, OpenGL, dataset units
    expression: np.ndarray           # [K] float32 coefficients (no leading 1.0, not clamped)
    image_path: Path                 # head_imgs/<id>.jpg: the head model's target
    frame_path: Path | None          # ori_imgs/<id>.jpg: the full video frame
    mask_path: Path | None           # head_masks/<id>.png (255 = head) or parsing/<id>.png (blue = head)
    torso_path: Path | None          # torso_imgs/<id>.png (RGBA)
    landmarks_path: Path | None      # ori_imgs/<id>.lms
    face_rect: tuple | None = None   # (x, y, w, h) pixels
    lip_rect: tuple | None = None    # (x, y, w, h) pixels


@dataclass
class VideoDataset:
    """A parsed split: intrinsics, frames and the expression range."""

    root: Path
    layout: str                      # "radnerf" or "official"
    split: str
    intrinsics: Intrinsics           # full-resolution
    frames: list[VideoFrame]
    expr_max: np.ndarray             # [K] training-set maxima (clamp range)
    expr_min: np.ndarray             # [K] training-set minima
    background_path: Path | None     # bc.jpg
    expression_names: list[str] | None = None
    near: float | None = None        # optional hints from the transforms file
    far: float | None = None
    aabb: np.ndarray | None = None   # [6] head box (min xyz, max xyz), dataset units
    fps: float = 25.0
    notes: list[str] = field(default_factory=list)

    @property
    def expr_dim(self) -> int:
        return int(self.expr_max.shape[0])

    def __len__(self) -> int:
        return len(self.frames)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise FaceNerfError(f"cannot read {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise FaceNerfError(f"{path} is not valid JSON (line {err.lineno}); restore or regenerate it") from err


def detect_layout(root: Path) -> str:
    """``"radnerf"`` when ``transforms_train.json`` exists, ``"official"`` for ``transforms.json``."""
    if (root / "transforms_train.json").is_file() or (root / "transforms_all.json").is_file():
        return "radnerf"
    if (root / "transforms.json").is_file():
        return "official"
    if not root.is_dir():
        raise FaceNerfError(f"dataset folder not found: {root} (check the path)")
    raise FaceNerfError(f"no transforms file in {root}: expected transforms_train.json (facenerf/RAD-NeRF layout) "
                        "or transforms.json (NeRFBlendShape release); run data_utils/process.py on your video first")


def intrinsics_from(header: dict, where: Path) -> Intrinsics:
    """Intrinsics from a transforms header (``fx/fy`` or ``focal_len``; ``h/w`` or ``2 cy/2 cx``)."""
    try:
        fx = float(header.get("fx", header.get("focal_len")))
        fy = float(header.get("fy", header.get("focal_len", fx)))
        cx, cy = float(header["cx"]), float(header["cy"])
    except (KeyError, TypeError, ValueError) as err:
        raise FaceNerfError(f"{where} lacks camera intrinsics (fx/fy or focal_len, cx, cy); "
                            "regenerate the transforms file") from err
    width = int(header.get("w", round(2 * cx)))
    height = int(header.get("h", round(2 * cy)))
    if min(fx, fy, width, height) <= 0:
        raise FaceNerfError(f"{where} has non-positive intrinsics (fx {fx}, fy {fy}, {width}x{height})")
    return Intrinsics(width, height, fx, fy, cx, cy)


def _pose(frame: dict, where: str, scale: float) -> np.ndarray:
    try:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise FaceNerfError(f"{where} has no numeric transform_matrix; regenerate the transforms file") from err
    if c2w.shape == (3, 4):
        c2w = np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]])
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
        raise FaceNerfError(f"{where}: transform_matrix must be a finite 4x4 matrix, got shape {c2w.shape}")
    c2w = c2w.copy()
    c2w[:3, 3] *= scale
    return c2w


def _img_id(frame: dict, where: str) -> int:
    try:
        return int(frame["img_id"])
    except (KeyError, TypeError, ValueError) as err:
        raise FaceNerfError(f"{where} has no integer img_id; regenerate the transforms file") from err


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read {path}: not a valid .npy array ({err.__class__.__name__}); "
                            "regenerate it") from err


def _load_txt(path: Path) -> np.ndarray:
    try:
        return np.loadtxt(path, dtype=np.float64).reshape(-1)
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read {path}: expected whitespace-separated numbers") from err


def _strip_mean(values: np.ndarray, k: int, path: Path) -> np.ndarray:
    """A range file of ``k`` values, or ``k + 1`` with the mean table's leading 1.0."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape[0] == k + 1 and abs(values[0] - 1.0) < 1e-6:
        return values[1:]
    if values.shape[0] == k:
        return values
    raise FaceNerfError(f"{path} holds {values.shape[0]} values but the frames have {k} expression coefficients; "
                        "regenerate the expression range files")


def choose_expr_dim(available: int, expr_dim: int | None, where: str) -> int:
    """The number of coefficients to use: ``expr_dim`` (checked) or everything available."""
    if expr_dim is None:
        return available
    if not 1 <= int(expr_dim) <= available:
        raise FaceNerfError(f"--expr_dim {expr_dim} does not match the data: {where} holds {available} expression "
                            f"coefficients per frame; pass --expr_dim {available}")
    return int(expr_dim)


def expression_range(max_path: Path, min_path: Path, reader, available: int, k: int,
                     train: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(expr_max [k], expr_min [k])`` from the range files, or from the training frames if absent."""
    if max_path.is_file() and min_path.is_file():
        hi = _strip_mean(reader(max_path), available, max_path)[:k]
        lo = _strip_mean(reader(min_path), available, min_path)[:k]
        if (lo > hi + 1e-9).any():
            raise FaceNerfError(f"{min_path.name} exceeds {max_path.name} for some coefficient; regenerate both")
        return hi.astype(np.float32), lo.astype(np.float32)
    notes.append(f"{max_path.name}/{min_path.name} not found: expression range taken from the training frames")
    if len(train) == 0:
        raise FaceNerfError(f"no training frames to compute the expression range from; provide {max_path.name}")
    return train.max(0).astype(np.float32), train.min(0).astype(np.float32)


def _split_frames(entries: list[tuple[int, dict]], test_num: int, where: Path) -> list[tuple[str, int, dict]]:
    """Sort by ``img_id`` and label the last ``test_num`` frames ``val``, the rest ``train``."""
    entries = sorted(entries, key=lambda item: item[0])
    if not 1 <= test_num < len(entries):
        raise FaceNerfError(f"test_num {test_num} leaves no training frames: {where} has {len(entries)} frames; "
                            f"use a test_num below {len(entries)}")
    cut = len(entries) - test_num
    return [("train" if i < cut else "val", img_id, frame) for i, (img_id, frame) in enumerate(entries)]


def _entries(frames: list, where: Path, scale: float) -> list[tuple[int, dict]]:
    """``[(img_id, frame dict with a parsed 'c2w')]``; duplicate ids are an error."""
    if not isinstance(frames, list) or not frames:
        raise FaceNerfError(f"{where} lists no frames; regenerate the transforms file")
    out, seen = [], set()
    for n, frame in enumerate(frames):
        label = f"{where.name} frame {n}"
        img_id = _img_id(frame, label)
        if img_id in seen:
            raise FaceNerfError(f"{where.name} lists img_id {img_id} twice; regenerate the transforms file")
        seen.add(img_id)
        out.append((img_id, dict(frame, c2w=_pose(frame, label, scale))))
    return out


def _radnerf(root: Path, test_num: int | None, scale: float):
    """``(header, header path, [(split, img_id, frame)], expressions [N_total, K], expr source)``."""
    train_file, val_file, all_file = (root / f"transforms_{s}.json" for s in ("train", "val", "all"))
    if test_num is None:
        if not (train_file.is_file() and val_file.is_file()):
            raise FaceNerfError(f"{root} needs transforms_train.json and transforms_val.json "
                                "(or pass test_num to split transforms_all.json)")
        header = _read_json(train_file)
        labelled = [("train", i, f) for i, f in _entries(header.get("frames"), train_file, scale)]
        labelled += [("val", i, f) for i, f in _entries(_read_json(val_file).get("frames"), val_file, scale)]
        where = train_file
    else:
        where = all_file if all_file.is_file() else train_file
        header = _read_json(where)
        entries = _entries(header.get("frames"), where, scale)
        if where is train_file and val_file.is_file():
            entries += _entries(_read_json(val_file).get("frames"), val_file, scale)
        labelled = _split_frames(entries, test_num, where)
    expr_file = root / "expr.npy"
    if not expr_file.is_file():
        raise FaceNerfError(f"expression file missing: {expr_file}; write one row of coefficients per frame "
                            "(data_utils/process.py does, or pass --expr_file to it)")
    table = _load_npy(expr_file)
    if table.ndim != 2 or table.shape[1] < 1:
        raise FaceNerfError(f"{expr_file} must be a [frames, K] array, got shape {table.shape}")
    need = max(i for _, i, _ in labelled) + 1
    if table.shape[0] < need:
        raise FaceNerfError(f"{expr_file} has {table.shape[0]} rows but img_id {need - 1} needs {need}: "
                            "the expression file and the transforms disagree; regenerate them together")
    return header, where, labelled, table.astype(np.float64), expr_file


def _official(root: Path, test_num: int | None, scale: float):
    """Same as :func:`_radnerf` for the release layout (``exp_ori`` per frame)."""
    where = root / "transforms.json"
    header = _read_json(where)
    entries = _entries(header.get("frames"), where, scale)
    lengths = {}
    for img_id, frame in entries:
        exp = frame.get("exp_ori")
        if not isinstance(exp, list) or not exp:
            raise FaceNerfError(f"{where.name} frame img_id {img_id} has no exp_ori coefficients")
        lengths.setdefault(len(exp), img_id)
    if len(lengths) > 1:
        (n_a, id_a), (n_b, id_b) = list(lengths.items())[:2]
        raise FaceNerfError(f"inconsistent expression dimensions in {where.name}: img_id {id_a} has {n_a} exp_ori "
                            f"values, img_id {id_b} has {n_b}; every frame needs the same number")
    default = min(OFFICIAL_TEST_NUM, len(entries) // 2) if test_num is None else test_num
    labelled = _split_frames(entries, default, where)
    table = np.zeros((max(i for i, _ in entries) + 1, next(iter(lengths))))
    for img_id, frame in entries:
        try:
            table[img_id] = np.asarray(frame["exp_ori"], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise FaceNerfError(f"{where.name} img_id {img_id}: exp_ori must be numbers") from err
    return header, where, labelled, table, where


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _frame_record(root: Path, split: str, img_id: int, frame: dict, expression: np.ndarray) -> VideoFrame:
    def rect(key):
        value = frame.get(key)
        return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) and len(value) == 4 else None

    return VideoFrame(
        img_id=img_id, split=split, c2w=frame["c2w"], expression=expression.astype(np.float32),
        image_path=root / "head_imgs" / f"{img_id}.jpg",
        frame_path=_first_existing(root / "ori_imgs" / f"{img_id}.jpg", root / "ori_imgs" / f"{img_id}.png"),
        mask_path=_first_existing(*(root / folder / f"{img_id}.png" for folder in MASK_FOLDERS)),
        torso_path=_first_existing(root / "torso_imgs" / f"{img_id}.png"),
        landmarks_path=_first_existing(root / "ori_imgs" / f"{img_id}.lms"),
        face_rect=rect("face_rect"), lip_rect=rect("lip_rect"))


def check_files(frames: list[VideoFrame], root: Path, require_masks: bool, require_torso: bool) -> None:
    """One-line errors for missing frame images, masks or torso images (counted, first one named)."""
    checks = [("frame images", lambda f: f.image_path if not f.image_path.is_file() else None,
               "restore them or rerun the preprocessing")]
    if require_masks:
        checks.append(("head masks", lambda f: (root / "head_masks" / f"{f.img_id}.png") if f.mask_path is None else None,
                       "write head_masks/<id>.png or parsing/<id>.png, or load without masks"))
    if require_torso:
        checks.append(("torso images", lambda f: (root / "torso_imgs" / f"{f.img_id}.png") if f.torso_path is None
                       else None, "rerun the preprocessing, which writes torso_imgs/"))
    for what, missing_path, fix in checks:
        missing = [p for p in (missing_path(f) for f in frames) if p is not None]
        if missing:
            raise FaceNerfError(f"{len(missing)} of {len(frames)} {what} missing (first: {missing[0]}); {fix}")


def _check_image_size(frame: VideoFrame, K: Intrinsics) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(frame.image_path) as handle:
            size = handle.size
    except (UnidentifiedImageError, OSError) as err:
        raise FaceNerfError(f"cannot read image {frame.image_path}: not a valid image file") from err
    if size != (K.width, K.height):
        raise FaceNerfError(f"image {frame.image_path} is {size[0]}x{size[1]} but the transforms file says "
                            f"{K.width}x{K.height}; regenerate the transforms or the images")


def _official_range(root: Path, available: int, expr_dim: int | None, train_of, notes: list[str]):
    """``(k, expr_max, expr_min)`` from ``max_N.txt`` / ``min_N.txt`` (the release writes N = 46)."""
    found = sorted(root.glob("max_*.txt"))
    max_path = root / "max_46.txt" if (root / "max_46.txt").is_file() else (found[0] if found else root / "max_46.txt")
    min_path = max_path.with_name(max_path.name.replace("max_", "min_", 1))
    limit = available
    if max_path.is_file() and min_path.is_file():
        limit = min(available, _load_txt(max_path).shape[0])
    k = choose_expr_dim(limit, expr_dim, f"{max_path.name if limit < available else 'exp_ori'}")
    reader = (lambda p: _load_txt(p)[:limit])
    hi, lo = expression_range(max_path, min_path, reader, limit, k, train_of(k), notes)
    return k, hi, lo


def parse_video_dataset(root: str | Path, split: str = "train", expr_dim: int | None = None,
                        test_num: int | None = None, scale: float = 1.0, require_masks: bool = True,
                        require_torso: bool = False) -> VideoDataset:
    """Parse a talking-head dataset folder (either layout) into a :class:`VideoDataset`.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"`` (held-out last frames) or ``"all"``.
        expr_dim: coefficients to use (the first ``expr_dim``); default all (official: the
            length of ``max_46.txt``). A value above what the data holds is an error.
        test_num: hold out the last ``test_num`` frames (sorted by ``img_id``) instead of the
            split files (radnerf layout); the official layout defaults to 500 (at most half).
        scale: multiplies every pose translation.
        require_masks / require_torso: raise when a frame lacks a head mask / torso image.
    """
    root = Path(root)
    if split not in SPLITS:
        raise FaceNerfError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
    layout = detect_layout(root)
    reader = _radnerf if layout == "radnerf" else _official
    header, where, labelled, table, expr_source = reader(root, test_num, scale)
    notes: list[str] = []
    train_ids = [i for s, i, _ in labelled if s == "train"]
    if layout == "radnerf":
        k = choose_expr_dim(table.shape[1], expr_dim, expr_source.name)
        hi, lo = expression_range(root / "expr_max.npy", root / "expr_min.npy", _load_npy, table.shape[1], k,
                                  table[train_ids, :k], notes)
    else:
        k, hi, lo = _official_range(root, table.shape[1], expr_dim, lambda n: table[train_ids, :n], notes)
    if not np.isfinite(table[[i for _, i, _ in labelled], :k]).all():
        raise FaceNerfError(f"{expr_source} holds NaN or infinite coefficients; regenerate it")
    chosen = [(s, i, f) for s, i, f in labelled if split == "all" or s == split]
    frames = [_frame_record(root, s, i, f, table[i, :k]) for s, i, f in chosen]
    if not frames:
        raise FaceNerfError(f"the {split} split of {root} is empty; hold out fewer frames or use another split")
    K = intrinsics_from(header, where)
    check_files(frames, root, require_masks, require_torso)
    _check_image_size(frames[0], K)
    names_file = root / "expr_names.txt"
    names = names_file.read_text().split() if names_file.is_file() else None
    aabb = np.asarray(header["aabb"], dtype=np.float64) * scale if len(header.get("aabb", [])) == 6 else None
    return VideoDataset(root=root, layout=layout, split=split, intrinsics=K, frames=frames, expr_max=hi, expr_min=lo,
                        background_path=_first_existing(root / "bc.jpg", root / "bc.png"),
                        expression_names=names[:k] if names and len(names) >= k else None,
                        near=_scaled(header.get("near"), scale), far=_scaled(header.get("far"), scale), aabb=aabb,
                        fps=float(header.get("fps", 25.0)), notes=notes)


def _scaled(value, scale: float) -> float | None:
    return None if value is None else float(value) * scale


# --------------------------------------------------------------------------------- tensors

def read_head_mask(path: Path) -> np.ndarray:
    """``[H, W]`` float32 head mask in {0, 1}: a ``head_masks`` PNG (> 127) or a parsing PNG (pure blue)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB") if path.parent.name == "parsing" else handle.convert("L"))
    except (UnidentifiedImageError, OSError) as err:
        raise FaceNerfError(f"cannot read mask {path}: not a valid image file; rerun the preprocessing") from err
    if array.ndim == 3:
        r, g, b = (array[..., c].astype(np.int32) for c in range(3))
        return ((b > 200) & (r < 60) & (g < 60)).astype(np.float32)
    return (array > 127).astype(np.float32)


def read_landmarks(path: Path) -> np.ndarray:
    """``[L, 2]`` (x, y) landmarks from a ``.lms`` text file (one ``x y`` pair per line)."""
    values = _load_txt(path)
    if values.size % 2:
        raise FaceNerfError(f"{path} must hold pairs of numbers (x y per line)")
    return values.reshape(-1, 2)


@dataclass
class VideoTensors:
    """A split loaded for training (``N`` frames at ``H x W`` after downscaling)."""

    images: "torch.Tensor"           # [N, H, W, 3] float in [0, 1] (head_imgs or full frames)
    masks: "torch.Tensor | None"     # [N, H, W] float head mask in [0, 1] (soft after downscaling)
    torso: "torch.Tensor | None"     # [N, H, W, 4] float RGBA torso layer
    coefficients: "torch.Tensor"     # [N, K] float32, unclamped
    poses: "torch.Tensor"            # [N, 4, 4] float32 camera-to-head, OpenGL
    img_ids: "torch.Tensor"          # [N] int64
    intrinsics: Intrinsics           # scaled to H x W
    background: "torch.Tensor | None"  # [H, W, 3] float bc.jpg
    expr_max: "torch.Tensor"         # [K]
    expr_min: "torch.Tensor"         # [K]


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from facenerf.io import resize_image

    if (image.shape[1], image.shape[0]) == size:
        return image
    out = resize_image(image if image.ndim == 3 else image[..., None], size)
    return out if image.ndim == 3 else out[..., 0]


def _read_rgba(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise FaceNerfError(f"cannot read torso image {path}: not a valid image file") from err
    return _resized(array, size)


PRELOAD_SHARE = 0.8  # of the memory still available that preloaded frames may take


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def check_preload_memory(needed: int, device, what: str) -> None:
    """One line, before anything is allocated, when preloading ``needed`` bytes of ``what`` onto
    ``device`` would take more than :data:`PRELOAD_SHARE` of its available memory."""
    from facenerf.runtime import available_memory

    free = available_memory(device)
    if free is not None and needed > PRELOAD_SHARE * free:
        where = "GPU" if str(device).startswith("cuda") else "CPU"
        raise FaceNerfError(f"preloading {what} needs {_bytes(needed)} of {where} memory but "
                            f"{_bytes(free)} is available: use --preload 0 (read frames from disk), "
                            f"{'--preload 1, ' if where == 'GPU' else ''}or a larger --downscale")


def stored(values: np.ndarray, dtype) -> "torch.Tensor":
    """``values`` (float in [0, 1]) as a tensor of ``dtype``; uint8 holds ``round(255 x)``, exact
    for 8-bit images read at their own size (:func:`as_float` gives them back bit for bit)."""
    import torch

    if dtype == torch.uint8:
        return torch.from_numpy(np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8))
    return torch.from_numpy(values).to(dtype)


def as_float(values: "torch.Tensor") -> "torch.Tensor":
    """A stored image tensor as float in [0, 1] (uint8 divided by 255 in float32, as images are read)."""
    import torch

    return values.float() / 255.0 if values.dtype == torch.uint8 else values


def load_split(dataset: VideoDataset, downscale: float = 1.0, image: str = "head", masks: bool = True,
               torso: bool = False, dtype=None, progress: bool = False) -> VideoTensors:
    """Load every frame of ``dataset`` into tensors (CPU).

    Args:
        downscale: divide the resolution by this factor (>= 1; intrinsics follow).
        image: ``"head"`` (head_imgs, the head model's target) or ``"frame"`` (ori_imgs).
        masks / torso: also load head masks / RGBA torso images.
        dtype: image dtype (default float32; float16 halves the memory; uint8 quarters it, exact
            for 8-bit images at their own size; read them with :func:`as_float`).
    """
    import torch
    from tqdm import tqdm

    from facenerf.io import read_image

    if downscale < 1:
        raise FaceNerfError(f"--downscale must be at least 1, got {downscale}")
    if image not in ("head", "frame"):
        raise FaceNerfError(f"image must be 'head' or 'frame', got {image!r}")
    K = dataset.intrinsics.scaled(1.0 / downscale)
    size = (K.width, K.height)
    dtype = dtype or torch.float32
    n = len(dataset.frames)
    check_preload_memory(n * K.width * K.height * (3 + int(masks) + 4 * int(torso)) * dtype.itemsize, "cpu",
                         f"{n} {dataset.split} frames at {K.width}x{K.height}")
    images = torch.empty((n, K.height, K.width, 3), dtype=dtype)
    mask_t = torch.empty((n, K.height, K.width), dtype=dtype) if masks else None
    torso_t = torch.empty((n, K.height, K.width, 4), dtype=dtype) if torso else None
    for j, frame in enumerate(tqdm(dataset.frames, desc=f"loading {dataset.split}", unit="frame",
                                   disable=None if progress else True)):
        path = frame.image_path if image == "head" else frame.frame_path
        if path is None:
            raise FaceNerfError(f"frame {frame.img_id} has no ori_imgs image; restore it or load image='head'")
        images[j] = stored(read_image(path, size), dtype)
        if masks:
            if frame.mask_path is None:
                raise FaceNerfError(f"frame {frame.img_id} has no head mask (head_masks/ or parsing/)")
            mask_t[j] = stored(_resized(read_head_mask(frame.mask_path), size), dtype)
        if torso:
            if frame.torso_path is None:
                raise FaceNerfError(f"frame {frame.img_id} has no torso_imgs image; rerun the preprocessing")
            torso_t[j] = stored(_read_rgba(frame.torso_path, size), dtype)
    background = None
    if dataset.background_path is not None:
        background = torch.from_numpy(read_image(dataset.background_path, size))
        background = background if dtype == torch.uint8 else background.to(dtype)
    return VideoTensors(
        images=images, masks=mask_t, torso=torso_t,
        coefficients=torch.from_numpy(np.stack([f.expression for f in dataset.frames])).float(),
        poses=torch.from_numpy(np.stack([f.c2w for f in dataset.frames])).float(),
        img_ids=torch.tensor([f.img_id for f in dataset.frames], dtype=torch.int64),
        intrinsics=K, background=background,
        expr_max=torch.from_numpy(dataset.expr_max).float(), expr_min=torch.from_numpy(dataset.expr_min).float())


# --------------------------------------------------------------------------------- writing

LABELS = ("background", "head", "neck", "torso")                  # label values 0..3
PARSING_COLOURS = np.array([[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)  # RGB by label


def face_and_lip_rects(landmarks: np.ndarray) -> tuple[list[int], list[int]]:
    """``face_rect`` and ``lip_rect`` ``[x, y, w, h]`` from 68 landmarks (unofficial NeRFBlendShape rule)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    xs = lm[:, 0]
    cx = 0.5 * (xs.min() + xs.max())
    cy = lm[27, 1]
    half_w, half_h = 1.5 * (xs.max() - cx), 1.15 * (lm[8, 1] - cy)
    face = [cx - half_w, cy - half_h, 2 * half_w, 2 * half_h]
    lcx, lcy = 0.5 * (lm[48, 0] + lm[54, 0]), lm[66, 1]
    lip_w, lip_h = 1.2 * (lm[54, 0] - lcx), 1.2 * (lm[57, 1] - lcy)
    lip = [lcx - lip_w, lcy - lip_h, 2 * lip_w, 2 * lip_h]
    return [int(round(v)) for v in face], [int(round(v)) for v in lip]


def write_frame_files(out: Path, img_id: int, frame: np.ndarray, labels: np.ndarray, background: np.ndarray,
                      torso_rgba: np.ndarray, landmarks: np.ndarray | None, quality: int = 95,
                      write_frame: bool = True) -> None:
    """Every per-frame file of the layout, atomically.

    Args:
        frame: float ``[H, W, 3]`` video frame (``ori_imgs``, unless ``write_frame`` is False).
        labels: ``[H, W]`` uint8 (0 background, 1 head, 2 neck, 3 torso).
        background: float ``[H, W, 3]`` the static background (``bc.jpg``).
        torso_rgba: float ``[H, W, 4]`` straight-alpha neck + torso layer.
        landmarks: ``[68, 2]`` (x, y) written as ``ori_imgs/<id>.lms``, or None.
    """
    from facenerf.io import write_image, write_text

    head = labels == 1
    person = labels > 0
    if write_frame:
        write_image(out / "ori_imgs" / f"{img_id}.jpg", frame, quality)
    if landmarks is not None:
        write_text(out / "ori_imgs" / f"{img_id}.lms", "".join(f"{x:.2f} {y:.2f}\n" for x, y in landmarks))
    write_image(out / "gt_imgs" / f"{img_id}.jpg", np.where(person[..., None], frame, background), quality)
    write_image(out / "head_imgs" / f"{img_id}.jpg", np.where(head[..., None], frame, background), quality)
    write_image(out / "head_masks" / f"{img_id}.png", head.astype(np.uint8) * 255)
    write_image(out / "parsing" / f"{img_id}.png", PARSING_COLOURS[labels])
    write_image(out / "torso_imgs" / f"{img_id}.png", torso_rgba)


def write_transforms(out: Path, K: Intrinsics, frames: list[tuple[int, np.ndarray, np.ndarray]], n_test: int,
                     fps: float, near: float, far: float, aabb: np.ndarray) -> None:
    """``transforms_{all,train,val}.json``; the last ``n_test`` of ``frames`` are the validation split.

    ``frames`` = ``[(img_id, c2w [4, 4] camera-to-head OpenGL, landmarks [68, 2])]`` in time order.
    """
    from facenerf.io import write_json

    records = []
    for img_id, pose, lms in frames:
        face, lip = face_and_lip_rects(lms)
        records.append({"img_id": int(img_id), "aud_id": int(img_id), "transform_matrix": np.round(pose, 7).tolist(),
                        "face_rect": face, "lip_rect": lip})
    header = {"focal_len": K.fx, "cx": K.cx, "cy": K.cy, "fx": K.fx, "fy": K.fy, "h": K.height, "w": K.width,
              "near": round(float(near), 4), "far": round(float(far), 4),
              "aabb": np.round(np.asarray(aabb, dtype=np.float64), 4).tolist(), "fps": fps}
    split = len(records) - n_test
    for name, chosen in (("all", records), ("train", records[:split]), ("val", records[split:])):
        write_json(out / f"transforms_{name}.json", dict(header, frames=chosen), indent=1)


def write_expressions(out: Path, table: np.ndarray, train_ids, names=None) -> None:
    """``expr.npy [N, K]`` (row = img_id), ``expr_max/min.npy [K + 1]`` over ``train_ids`` with 1.0 first,
    and ``expr_names.txt`` when ``names`` are given."""
    from facenerf.io import write_npy, write_text

    table = np.asarray(table, dtype=np.float32)
    train = table[np.asarray(train_ids, dtype=np.int64)]
    write_npy(out / "expr.npy", table)
    write_npy(out / "expr_max.npy", np.concatenate([[1.0], train.max(0)]).astype(np.float32))
    write_npy(out / "expr_min.npy", np.concatenate([[1.0], train.min(0)]).astype(np.float32))
    if names is not None:
        write_text(out / "expr_names.txt", "\n".join(names) + "\n")
