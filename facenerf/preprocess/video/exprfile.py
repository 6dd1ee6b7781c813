"""Per-frame expression coefficients from another tracker (``--expr_file``): CSV or NPY.

A CSV holds one row per frame, numbers separated by commas, semicolons or spaces; a first row
with any non-number is a header of coefficient names (e.g. 52 ARKit-style blendshapes). Named
columns that are no expression coefficients are dropped, with a note: time codes, frame numbers
and counts, and head and eye rotations (as Live Link Face writes them next to its 52
blendshapes). An NPY file holds a ``[frames, K]`` array. Either way the row count must equal the
number of frames extracted from the video (at ``--fps``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError

# header names (lower case, without spaces and underscores) of columns that hold no coefficient
NOT_COEFFICIENTS = re.compile(r"^(timecode|time|timestamp|frame|frameindex|framenumber|blendshapecount"
                              r"|(head|lefteye|righteye)(yaw|pitch|roll))$")


def _fields(line: str) -> list[str]:
    return [f for f in re.split(r"[,;\s]+", line.strip()) if f != ""]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def name_key(name: str) -> str:
    """A coefficient name compared without case, spaces and underscores ("Jaw_Open" = "jawopen")."""
    return re.sub(r"[\s_]", "", name.lower())


def _not_coefficients(names: list[str]) -> list[int]:
    return [i for i, name in enumerate(names) if NOT_COEFFICIENTS.match(name_key(name))]


def read_csv(path: Path) -> tuple[np.ndarray, list[str] | None, list[str]]:
    """``(table [rows, K], names or None, names of the dropped columns)``."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        raise FaceNerfError(f"--expr_file {path} is empty; give one row of coefficients per frame")
    names, drop = None, []
    if any(_number(f) is None for f in _fields(lines[0])):
        names, lines = _fields(lines[0]), lines[1:]
        drop = _not_coefficients(names)
    rows = []
    for n, line in enumerate(lines, start=2 if names else 1):
        fields = _fields(line)
        values = [_number(f) for i, f in enumerate(fields) if i not in drop]
        if any(v is None for v in values):
            raise FaceNerfError(f"--expr_file {path} line {n} holds a non-number; keep only numeric coefficient columns")
        rows.append(values)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise FaceNerfError(f"--expr_file {path}: rows have {sorted(widths)} values; every row needs the same number")
    table = np.asarray(rows, dtype=np.float64)
    dropped = [names[i] for i in drop] if names else []
    if names is not None:
        names = [name for i, name in enumerate(names) if i not in drop]
        names = names if len(names) == table.shape[1] else None
    return table, names, dropped


def load_expr_file(path: str | Path, n_frames: int, say=None) -> tuple[np.ndarray, list[str] | None]:
    """``(coefficients [n_frames, K], names or None)``; one-line errors for bad files or frame
    counts; ``say(note)`` hears which columns were dropped."""
    path = Path(path)
    if not path.is_file():
        raise FaceNerfError(f"--expr_file not found: {path} (check the path)")
    if path.suffix.lower() == ".npy":
        try:
            table, names = np.load(path, allow_pickle=False).astype(np.float64), None
        except (OSError, ValueError) as err:
            raise FaceNerfError(f"--expr_file {path} is not a readable numeric .npy array") from err
    elif path.suffix.lower() in (".csv", ".txt", ".tsv"):
        table, names, dropped = read_csv(path)
        if dropped and say is not None:
            say(f"--expr_file: dropped {len(dropped)} column(s) that hold no expression coefficient: "
                f"{', '.join(dropped)}")
    else:
        raise FaceNerfError(f"--expr_file {path}: use a .csv (one row per frame) or a .npy [frames, K] file")
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[1] < 1:
        raise FaceNerfError(f"--expr_file {path} must be a [frames, K] table, got shape {table.shape}")
    if table.shape[0] != n_frames:
        raise FaceNerfError(f"--expr_file {path} has {table.shape[0]} rows but the video has {n_frames} frames at "
                            "the extraction rate; give one row per frame (resample the coefficients to --fps)")
    if not np.isfinite(table).all():
        raise FaceNerfError(f"--expr_file {path} holds NaN or infinite values; fill them in")
    return table, names
