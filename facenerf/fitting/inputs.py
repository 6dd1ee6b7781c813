"""The image to fit, with its camera, landmarks and foreground mask (:class:`FitTarget`).

Two kinds of input are recognised from the files next to the image:

* **A preprocessed wild photo** (``fittingDataPreprocess/wildData_preprocess.py``):
  ``<root>/segRelRes/<name>.png`` and the pose file ``pose_<name>.npy`` = ``{"pose": 4x4
  camera-to-world (OpenGL, scene units), "kp": 68x2 landmarks (row, col), "kp_xy": 68x2 (x, y)
  (optional), "image_size": int (optional, default 512)}``. The pose file is looked up, in
  order: ``--posePath`` if given, two folders up from the image (``<root>/pose_<name>.npy``, as
  in the original), then beside the image. The mask is ``<root>/mask/<name>.png`` (face, hair and
  neck labels) when it exists, else the image's non-black pixels. Intrinsics: focal
  ``--focal`` (1200 px) at 512 px, scaled to the image size, principal point at the centre.
* **A synthetic render** (``render.py``): ``multiViewImages/{id}/{expression}/{view}.png`` with
  the per-expression ``transforms.json`` beside it, which holds the intrinsics, near/far, the
  view's camera and its projected landmarks (invisible ones are ignored). The mask is the
  non-black pixels (renders have a black background).

Rays always span the model's ``near``/``far`` (the fit config's, which should equal training's),
not the bounds written in a camera file.

A pose file takes precedence over a ``transforms.json``. An image of another size than its
camera file describes is resized (with a note); an image larger than ``fit_size`` is reduced
to it (intrinsics scaled). Missing camera files, a non-square wild image and an image without
foreground each raise one :class:`FaceNerfError` line.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.data.facescape import pixel_center_of
from facenerf.errors import FaceNerfError
from facenerf.fitting.sampling import level_intrinsics, mask_from_image, mask_from_labels, to_level_pixels
from facenerf.io import read_image, resize_image
from facenerf.preprocess.training.rig import BASE_FOCAL, BASE_RESOLUTION, FAR, NEAR

CAMERA_FILE = "transforms.json"
MIN_FOREGROUND_PIXELS = 16


@dataclass
class FitTarget:
    """One image to fit, at the resolution the fit runs at."""

    name: str
    path: Path
    image: Tensor  # [H, W, 3] float32 in [0, 1]
    mask: Tensor  # [H, W] bool foreground
    landmarks_xy: Tensor | None  # [68, 2] (x, y) pixels, NaN rows for unknown landmarks
    c2w: Tensor  # [4, 4] camera-to-world (OpenGL)
    K: Intrinsics
    near: float
    far: float
    kind: str  # "wild" or "synthetic"
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # e.g. identity / expression of a synthetic render


# ----------------------------------------------------------------------------- pose files

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, dtypes and scalars inside plain containers."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_npy_object(path: str | Path, what: str, fix: str):
    """Load an ``.npy`` file that may hold a pickled dict (``np.save(path, dict)``) without running code.

    Only numpy arrays, dtypes, scalars and plain containers are accepted; a 0-d object array is
    unwrapped. Anything else, or an unreadable file, raises FaceNerfError (``fix`` says what to do).
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = reader(handle)
            record = _ArrayUnpickler(handle).load() if dtype.hasobject else None
        if record is None:
            record = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as err:
        raise FaceNerfError(f"cannot read {what} {file} ({err}); {fix}") from err
    if isinstance(record, np.ndarray) and record.dtype.hasobject and record.shape == ():
        record = record.item()
    return record


def load_pose_file(path: str | Path) -> dict:
    """Read ``pose_<name>.npy`` (a dict saved with ``np.save``); see :func:`read_npy_object`."""
    fix = "rerun the wild-photo preprocessing"
    record = read_npy_object(path, "pose file", fix)
    if not isinstance(record, dict) or "pose" not in record or ("kp" not in record and "kp_xy" not in record):
        raise FaceNerfError(f"pose file {path} is not a dict with 'pose' and 'kp'; {fix}")
    try:
        pose = np.asarray(record["pose"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise FaceNerfError(f"pose file {path} has a non-numeric 'pose'; {fix}") from err
    if pose.size != 16 or not np.isfinite(pose).all():
        raise FaceNerfError(f"pose file {path} holds a 'pose' of shape {pose.shape}, not a finite 4x4 matrix; {fix}")
    return record


def find_pose_file(image_path: Path, explicit: str | Path | None = None) -> Path | None:
    """The pose file of a preprocessed photo (see the module docstring for the lookup order)."""
    if explicit:
        file = Path(explicit)
        if not file.is_file():
            raise FaceNerfError(f"pose file not found: {file} (check --posePath)")
        return file
    name = f"pose_{image_path.stem}.npy"
    for folder in (image_path.parent.parent, image_path.parent):
        if (folder / name).is_file():
            return folder / name
    return None


# ----------------------------------------------------------------------------- loaders

def _landmarks_from_pose(record: dict) -> np.ndarray:
    if "kp_xy" in record:
        return np.asarray(record["kp_xy"], dtype=np.float32).reshape(-1, 2)
    return np.asarray(record["kp"], dtype=np.float32).reshape(-1, 2)[:, ::-1].copy()  # (row, col) -> (x, y)


def _wild_mask(image_path: Path, pose_path: Path, image: np.ndarray) -> tuple[np.ndarray, str]:
    label_file = pose_path.parent / "mask" / f"{image_path.stem}.png"
    if label_file.is_file():
        labels = read_image(label_file)
        if labels.shape[:2] != image.shape[:2]:
            labels = resize_image(labels, (image.shape[1], image.shape[0]))
        return mask_from_labels(labels) & (image.max(axis=-1) > 0), f"mask from {label_file}"
    return mask_from_image(image), "mask from the non-black pixels"


def with_pixel_center(K: Intrinsics, pixel_center: float) -> Intrinsics:
    """``K`` for rays without a half-pixel offset on images with convention ``pixel_center``.

    A pixel ``(i, j)`` that shows the ray through ``(i + c, j + c)`` of a camera centred at
    ``(cx, cy)`` shows the ray through ``(i, j)`` of one centred at ``(cx - c, cy - c)``. Fit
    targets carry this form, so their rays need no offset and every resize (whose rule in
    :func:`~facenerf.fitting.sampling.level_intrinsics` is exact for that form) stays exact.
    """
    c = float(pixel_center)
    return K if c == 0.0 else Intrinsics(K.width, K.height, K.fx, K.fy, K.cx - c, K.cy - c)


def load_wild_target(image_path: Path, pose_path: Path, focal: float, near: float, far: float,
                     pixel_center: float = 0.0) -> FitTarget:
    """A preprocessed photo and its pose file; ``pixel_center``: the training images' convention
    (the photo was aligned to their landmark template)."""
    record = load_pose_file(pose_path)
    image = read_image(image_path)
    notes = [f"camera from {pose_path}"]
    height, width = image.shape[:2]
    if height != width:
        raise FaceNerfError(f"{image_path} is {width}x{height}, not square: fit the preprocessed image "
                            "(segRelRes/<name>.png) written by fittingDataPreprocess/wildData_preprocess.py")
    size = int(record.get("image_size", BASE_RESOLUTION))
    if width != size:
        notes.append(f"resized the image from {width}x{height} to {size}x{size} to match its pose file")
        image = resize_image(image, (size, size))
    mask, how = _wild_mask(image_path, pose_path, image)
    notes.append(how)
    f = focal * size / BASE_RESOLUTION
    K = with_pixel_center(Intrinsics(size, size, f, f, size / 2.0, size / 2.0), pixel_center)
    c2w = torch.as_tensor(np.asarray(record["pose"], dtype=np.float32)).reshape(4, 4)
    return FitTarget(image_path.stem, image_path, torch.from_numpy(image), torch.from_numpy(mask),
                     torch.from_numpy(_landmarks_from_pose(record)), c2w, K, near, far, "wild", notes)


def _camera_frame(camera_file: Path, image_path: Path) -> tuple[dict, dict]:
    try:
        payload = json.loads(camera_file.read_text())
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read camera file {camera_file} ({err}); re-run render.py") from err
    for frame in payload.get("frames", []):
        if frame.get("view") == image_path.stem or Path(str(frame.get("file_path", ""))).name == image_path.stem:
            return payload, frame
    raise FaceNerfError(f"{camera_file} has no camera for view {image_path.stem}; re-run render.py for it")


def load_synthetic_target(image_path: Path, camera_file: Path, near: float, far: float) -> FitTarget:
    """A render with the ``transforms.json`` of its folder (``near``/``far``: the model's ray bounds)."""
    header, frame = _camera_frame(camera_file, image_path)
    image = read_image(image_path)
    notes = [f"camera from {camera_file}"]
    K = with_pixel_center(Intrinsics(int(header["w"]), int(header["h"]), float(header["fl_x"]),
                                     float(header["fl_y"]), float(header["cx"]), float(header["cy"])),
                          pixel_center_of(header))
    if image.shape[:2] != (K.height, K.width):
        notes.append(f"resized the image from {image.shape[1]}x{image.shape[0]} to {K.width}x{K.height} "
                     "to match its camera file")
        image = resize_image(image, (K.width, K.height))
    landmarks = None
    if "landmarks_2d" in frame:
        landmarks = np.asarray(frame["landmarks_2d"], dtype=np.float32).reshape(-1, 2)
        visible = np.asarray(frame.get("landmarks_visible", [1] * len(landmarks)), dtype=bool)
        landmarks[~visible] = np.nan
        landmarks = torch.from_numpy(landmarks)
    c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float32)
    info = {"identity": str(header.get("identity", "")), "expression": int(frame.get("expression", -1)),
            "view": str(frame.get("view", image_path.stem))}
    return FitTarget(image_path.stem, image_path, torch.from_numpy(image), torch.from_numpy(mask_from_image(image)),
                     landmarks, c2w, K, near, far, "synthetic", notes, info)


def reduce_target(target: FitTarget, fit_size: int) -> FitTarget:
    """Shrink ``target`` so its longer side is at most ``fit_size`` (intrinsics and landmarks scaled)."""
    side = max(target.K.width, target.K.height)
    if side <= fit_size:
        return target
    K = level_intrinsics(target.K, fit_size / side)
    image = resize_image(target.image.numpy(), (K.width, K.height))
    mask = torch.nn.functional.interpolate(target.mask.float()[None, None], size=(K.height, K.width),
                                           mode="nearest")[0, 0] > 0.5
    landmarks = None if target.landmarks_xy is None else to_level_pixels(target.landmarks_xy, target.K, K)
    notes = target.notes + [f"fitting at {K.width}x{K.height} (--fit_size {fit_size}) instead of "
                            f"{target.K.width}x{target.K.height}"]
    return FitTarget(target.name, target.path, torch.from_numpy(image), mask, landmarks, target.c2w, K,
                     target.near, target.far, target.kind, notes, target.info)


def load_target(image_path: str | Path, pose_path: str | Path | None = None, fit_size: int = BASE_RESOLUTION,
                focal: float = BASE_FOCAL, near: float = NEAR, far: float = FAR, pixel_center: float = 0.0) -> FitTarget:
    """Load an image to fit with its camera (see the module docstring for what is looked up).

    ``pixel_center`` is the pixel convention of a photo (the model's training images'); a render
    takes the one its camera file records. The target's intrinsics include it
    (:func:`with_pixel_center`).
    """
    path = Path(image_path)
    if not path.is_file():
        raise FaceNerfError(f"image not found: {path} (check --filePath)")
    pose_file = find_pose_file(path, pose_path)
    if pose_file is not None:
        target = load_wild_target(path, pose_file, focal, near, far, pixel_center)
    elif (path.parent / CAMERA_FILE).is_file():
        target = load_synthetic_target(path, path.parent / CAMERA_FILE, near, far)
    else:
        raise FaceNerfError(
            f"no camera for {path}: expected pose_{path.stem}.npy in {path.parent.parent} or {path.parent} "
            f"(run fittingDataPreprocess/wildData_preprocess.py on the photo first) or a render.py "
            f"{CAMERA_FILE} beside the image")
    if int(target.mask.sum()) < MIN_FOREGROUND_PIXELS:
        raise FaceNerfError(f"no face in {path}: the image has no foreground (it is black or its mask is empty); "
                            "fit a preprocessed photo (segRelRes/<name>.png) with the face visible")
    return reduce_target(target, fit_size)


def sibling_views(target: FitTarget, count: int) -> list[tuple[Tensor, Tensor, Intrinsics]]:
    """Up to ``count`` other views of a synthetic target's identity and expression, for evaluation.

    Reads the ``transforms.json`` beside the render; returns ``(image [h, w, 3], c2w [4, 4], K)``
    at the fit's resolution, spread evenly over the available views (the fitted view excluded).
    An empty list for wild photos or when no other view exists.
    """
    camera_file = target.path.parent / CAMERA_FILE
    if target.kind != "synthetic" or count <= 0 or not camera_file.is_file():
        return []
    header = json.loads(camera_file.read_text())
    frames = [f for f in header.get("frames", []) if f.get("view") != target.info.get("view")
              and (target.path.parent / f"{f.get('view')}.png").is_file()]
    if not frames:
        return []
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    views = []
    for i in picks:
        frame = frames[int(i)]
        image = read_image(target.path.parent / f"{frame['view']}.png", size=(target.K.width, target.K.height))
        views.append((torch.from_numpy(image), torch.tensor(frame["transform_matrix"], dtype=torch.float32),
                      target.K))
    return views
