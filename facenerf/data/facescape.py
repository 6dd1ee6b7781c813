"""Parser of the multi-view training data written by ``render.py`` (MoFaNeRF's format).

Input: ``data/multiViewImages`` with ``transforms_{split}_{id}.json`` and the images they name.
Original MoFaNeRF files (``camera_angle_x`` + ``frames[file_path, transform_matrix, expression]``)
parse too; our extra fields are used when present. Output records:

``FrameRecord`` - one training image:
    identity (str, the folder id), expression (int 0..19, MoFaNeRF order), expression_name,
    view ("{pitch}_{yawIndex}"), pitch (deg), yaw (deg), image_path (Path to the PNG),
    c2w (float32 [4, 4], OpenGL camera-to-world, scene units = mm / 50),
    intrinsics (:class:`facenerf.core.cameras.Intrinsics`, pixels),
    pixel_center (0.5 or 0: pixel (i, j) shows the ray through (i + c, j + c), see :func:`pixel_center_of`),
    landmarks_2d (float32 [68, 2] pixel (x, y): rounding gives the pixel that shows it; iBUG order, or None),
    landmarks_visible (bool [68] or None), split ("train" | "val" | "test").

``IdentityRecord`` - one person:
    identity, shape_code (float32 [50], row ``int(id)`` of ``factors_id.npy``, or None),
    uv_texture (Path of the neutral UV map ``{id}/models_reg/1_neutral.jpg`` or
    ``textureMap300/{id}/1_neutral.jpg``, or None), landmarks_3d (float32 [20, 68, 3] scene
    units, or None), frames (tuple of FrameRecord).

``FaceScapeDataset`` - identities by id, ``near``/``far`` (8, 26 scene units), the split that
was read, and ``problems`` (frames skipped because their image is missing).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facenerf.data.synthetic import EXPRESSIONS
from facenerf.errors import FaceNerfError

SPLITS = ("train", "val", "test", "all")
NEAR, FAR, SCENE_SCALE = 8.0, 26.0, 1.0 / 50.0
_STEM = re.compile(r"^(\d+)_(.+)$")
_TRANSFORMS = re.compile(r"^transforms_(train|val|test|all)_(.+)\.json$")


def expression_from_stem(stem: str) -> int:
    """``"4_anger"`` -> 3; FaceNerfError for anything that is not one of the 20 FaceScape stems."""
    match = _STEM.match(stem)
    if match:
        k, name = int(match.group(1)), match.group(2)
        if 1 <= k <= len(EXPRESSIONS) and EXPRESSIONS[k - 1] == name:
            return k - 1
    raise FaceNerfError(f"unknown expression '{stem}': expected one of 1_neutral ... 20_brow_lower "
                        "(FaceScape '{k}_{name}' naming); rename or remove it")


@dataclass(frozen=True)
class FrameRecord:
    identity: str
    expression: int
    expression_name: str
    view: str
    pitch: float
    yaw: float
    image_path: Path
    c2w: np.ndarray                       # [4, 4] float32
    intrinsics: object                    # facenerf.core.cameras.Intrinsics
    pixel_center: float                   # 0.5 or 0 (see pixel_center_of)
    landmarks_2d: np.ndarray | None       # [68, 2] float32 (x, y) pixels
    landmarks_visible: np.ndarray | None  # [68] bool
    split: str


@dataclass(frozen=True)
class IdentityRecord:
    identity: str
    shape_code: np.ndarray | None         # [50] float32
    uv_texture: Path | None
    landmarks_3d: np.ndarray | None       # [20, 68, 3] float32 scene units
    frames: tuple[FrameRecord, ...]


@dataclass
class FaceScapeDataset:
    root: Path
    split: str
    identities: dict[str, IdentityRecord]
    near: float = NEAR
    far: float = FAR
    problems: list[str] = field(default_factory=list)

    def frames(self, identities: list[str] | None = None,
               expressions: list[int] | None = None) -> list[FrameRecord]:
        """All frames, optionally only of some identities / expressions (0-based)."""
        chosen = identities if identities is not None else list(self.identities)
        return [f for i in chosen for f in self.identities[i].frames
                if expressions is None or f.expression in expressions]


def identity_folders(root: Path, ids: list[str] | None, fix: str) -> list[Path]:
    """Identity sub-folders of ``root`` in numeric order (non-numeric names last), limited to ``ids``.

    ``fix`` finishes the message when ``root`` is missing (e.g. "run align_clip.py first").
    """
    if not root.is_dir():
        raise FaceNerfError(f"{root} not found ({fix})")
    folders = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    if ids:
        missing = sorted(set(ids) - {p.name for p in folders})
        if missing:
            raise FaceNerfError(f"identities {missing} not found in {root}; check --ids")
        folders = [p for p in folders if p.name in ids]
    return folders


def pixel_center_of(meta: dict) -> float:
    """The pixel convention a camera file was rendered with.

    ``pixel_center`` when the file records it; 0 for files of earlier facenerf versions (they
    carry ``pixel_convention`` only and were rendered with a half-pixel shift); 0.5 for files of
    the original ``render.py`` (an unshifted OpenGL camera shows at pixel ``i`` the ray through
    ``i + 0.5``).
    """
    if "pixel_center" in meta:
        return float(meta["pixel_center"])
    return 0.0 if "pixel_convention" in meta else 0.5


def _intrinsics(meta: dict, image_path: Path):
    """Intrinsics from our fields, or from ``camera_angle_x`` and the image size (original files)."""
    from facenerf.core.cameras import Intrinsics

    if all(k in meta for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")):
        return Intrinsics(int(meta["w"]), int(meta["h"]), float(meta["fl_x"]), float(meta["fl_y"]),
                          float(meta["cx"]), float(meta["cy"]))
    from PIL import Image

    with Image.open(image_path) as handle:
        width, height = handle.size
    focal = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
    return Intrinsics(width, height, focal, focal, width / 2.0, height / 2.0)


def _view_angles(view: str, frame: dict) -> tuple[float, float]:
    if "pitch" in frame and "yaw" in frame:
        return float(frame["pitch"]), float(frame["yaw"])
    pitch, yaw_index = view.split("_") if "_" in view else ("nan", "nan")
    try:
        return float(pitch), -90.0 + 9.0 * float(yaw_index)
    except ValueError:
        return float("nan"), float("nan")


def _frame_record(root: Path, identity: str, frame: dict, split: str, meta: dict,
                  intrinsics_cache: dict) -> FrameRecord:
    rel = str(frame["file_path"]).lstrip("/")
    image = root / (rel if rel.endswith(".png") else rel + ".png")
    key = tuple(meta.get(k) for k in ("fl_x", "w", "camera_angle_x"))
    if key not in intrinsics_cache:
        intrinsics_cache[key] = _intrinsics(meta, image)
    expression = int(frame["expression"])
    if not 0 <= expression < len(EXPRESSIONS):
        raise FaceNerfError(f"frame {rel} has expression {expression}; expected 0..19")
    view = frame.get("view", Path(rel).name)
    pitch, yaw = _view_angles(view, frame)
    lm = frame.get("landmarks_2d")
    vis = frame.get("landmarks_visible")
    return FrameRecord(
        identity, expression, EXPRESSIONS[expression], view, pitch, yaw, image,
        np.asarray(frame["transform_matrix"], dtype=np.float32).reshape(4, 4), intrinsics_cache[key],
        pixel_center_of(meta), None if lm is None else np.asarray(lm, dtype=np.float32).reshape(68, 2),
        None if vis is None else np.asarray(vis, dtype=bool).reshape(68), frame.get("split", split))


def shape_code(factors: np.ndarray, identity: str) -> np.ndarray:
    """Row ``int(identity)`` of ``factors_id.npy`` (row 0 is unused: ids start at 1)."""
    if not identity.isdigit() or not 1 <= int(identity) < factors.shape[0]:
        raise FaceNerfError(f"no shape code for identity '{identity}': factors_id.npy has rows 1..{factors.shape[0] - 1} "
                            "(row = id); regenerate it or drop that identity")
    return factors[int(identity)].astype(np.float32)


def find_uv_texture(texture_roots: list[Path], identity: str) -> Path | None:
    """The identity's neutral UV texture under the first root that has it."""
    for root in texture_roots:
        for candidate in (root / identity / "models_reg" / "1_neutral.jpg", root / identity / "1_neutral.jpg"):
            if candidate.is_file():
                return candidate
    return None


def _read_transforms(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read {path}: {err.__class__.__name__}; re-run render.py") from err
    if "frames" not in meta or ("camera_angle_x" not in meta and "fl_x" not in meta):
        raise FaceNerfError(f"{path} is not a transforms file (needs camera_angle_x and frames); re-run render.py")
    return meta


def _optional_array(path: Path | None, what: str) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read {what} {path}: {err}; regenerate it") from err


def parse_multiview(root: str | Path, split: str = "train", ids: list[str] | None = None,
                    expressions: list[int] | None = None, factors_path: str | Path | None = None,
                    texture_roots: list[str | Path] | None = None,
                    landmarks_path: str | Path | None = None) -> FaceScapeDataset:
    """Read ``transforms_{split}_{id}.json`` of every (or the given) identity under ``root``.

    Defaults look beside ``root``: ``../factors_id.npy``, ``../landmarks_3d.npy`` and the UV
    maps in ``../facescape_trainset`` or ``../textureMap300``. Frames whose image is missing are
    skipped and listed in ``problems``.
    """
    root = Path(root)
    if split not in SPLITS:
        raise FaceNerfError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise FaceNerfError(f"multi-view data not found: {root} (run render.py or pass the multiViewImages folder)")
    found = {m.group(2): root / m.group(0) for p in root.iterdir()
             if (m := _TRANSFORMS.match(p.name)) and m.group(1) == split}
    wanted = ids if ids is not None else sorted(found, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    missing = [i for i in wanted if i not in found]
    if missing or not wanted:
        raise FaceNerfError(f"no transforms_{split}_{{id}}.json in {root} for {missing or 'any identity'}; run render.py")
    factors = _optional_array(Path(factors_path) if factors_path else root.parent / "factors_id.npy", "shape codes")
    lm3d = _optional_array(Path(landmarks_path) if landmarks_path else root.parent / "landmarks_3d.npy", "3D landmarks")
    tex_roots = [Path(t) for t in texture_roots] if texture_roots else \
        [root.parent / "facescape_trainset", root.parent / "textureMap300"]
    dataset = FaceScapeDataset(root, split, {})
    cache: dict = {}
    for identity in wanted:
        meta = _read_transforms(found[identity])
        frames = []
        for frame in meta["frames"]:
            if expressions is not None and int(frame["expression"]) not in expressions:
                continue
            record = _frame_record(root, identity, frame, split, meta, cache)
            if record.image_path.is_file():
                frames.append(record)
            else:
                dataset.problems.append(f"missing image {record.image_path}")
        landmarks = None
        if lm3d is not None and identity.isdigit() and int(identity) < lm3d.shape[0]:
            landmarks = (lm3d[int(identity)] * SCENE_SCALE).astype(np.float32)
        dataset.identities[identity] = IdentityRecord(
            identity, shape_code(factors, identity) if factors is not None else None,
            find_uv_texture(tex_roots, identity), landmarks, tuple(frames))
    return dataset
