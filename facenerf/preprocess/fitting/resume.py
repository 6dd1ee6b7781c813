"""Which photos of a wild-photo batch are already done, so that a rerun does no work twice.

The pose file ``pose_<name>.npy`` is written last, after every other output of the photo, and
carries a record under the key ``"preprocess"``::

    {"settings": hash of the PreprocessSettings, "input": file name, "input_bytes": int,
     "input_mtime_ns": int, "outputs": {relative output path: size in bytes}}

A photo counts as done when its pose file decodes (with the safe reader of
:mod:`facenerf.fitting.inputs`), the record matches the photo and the settings of this run,
and every output still has its recorded size. An interrupted photo has no pose file (every
file is written atomically), so it is redone; a changed photo or changed settings redo it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError

RECORD_KEY = "preprocess"


def settings_key(settings) -> str:
    """A short hash of everything in ``settings`` that changes the outputs (not the device)."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k != "device"}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _input_signature(photo: Path) -> dict:
    stat = photo.stat()
    return {"input": photo.name, "input_bytes": int(stat.st_size), "input_mtime_ns": int(stat.st_mtime_ns)}


def make_record(photo: Path, key: str, out_dir: Path, outputs: list[Path]) -> dict:
    """The record stored in the pose file once ``outputs`` (all but the pose file) are written."""
    sizes = {path.relative_to(out_dir).as_posix(): int(path.stat().st_size) for path in outputs}
    return {"settings": key, **_input_signature(photo), "outputs": sizes}


def finished_pose(photo: Path, key: str, out_dir: Path, pose_path: Path) -> dict | None:
    """The pose file's contents when ``photo`` was fully processed with settings ``key``, else None."""
    from facenerf.fitting.inputs import load_pose_file

    if not pose_path.is_file():
        return None
    try:
        pose = load_pose_file(pose_path)
        signature = _input_signature(photo)
    except (FaceNerfError, OSError):
        return None
    record = pose.get(RECORD_KEY)
    if not isinstance(record, dict) or record.get("settings") != key or \
            any(record.get(k) != v for k, v in signature.items()):
        return None
    for name, size in dict(record.get("outputs") or {}).items():
        try:
            if (out_dir / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return pose


def contact_tiles(photo: Path, paths: dict[str, Path], pose: dict, template) -> list[np.ndarray]:
    """The contact-sheet row of a photo done by an earlier run, rebuilt from its output files."""
    from facenerf.core.cameras import project_points
    from facenerf.io import read_image
    from facenerf.preprocess.fitting.contact import draw_landmarks, overlay_colours

    aligned = read_image(paths["aligned"])
    landmarks = np.loadtxt(paths["landmarks"], dtype=np.float64).reshape(-1, 2)
    c2w = np.asarray(pose["pose"], dtype=np.float64).reshape(4, 4)
    projected = np.asarray(project_points(template.landmarks_3d, c2w, template.intrinsics), dtype=np.float64)
    return [read_image(photo), draw_landmarks(aligned, landmarks, projected),
            overlay_colours(aligned, read_image(paths["mask"])), read_image(paths["segRes"]),
            read_image(paths["segRelRes"])]
