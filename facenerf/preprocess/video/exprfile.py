"""Per-frame expression coefficients from another tracker (``--expr_file``): CSV or NPY.

A CSV holds one row per frame, numbers separated by commas, semicolons or spaces; a first row
with any non-number is a header of coefficient names (e.g. 52 ARKit-style blendshapes). Named
columns that are no expression coefficients are dropped, with a note: time codes, frame numbers
and counts, and head and eye rotations (as Live Link Face writes them next to its 52
blendshapes). An NPY file holds a ``[frames, K]`` array. Either way there is one row per frame
extracted from the video (at ``--fps``), or, with ``--expr_fps``, one row per frame of the
recording's own rate (Live Link Face records at 60 fps): the rows are then resampled in time to
the extracted frames, linearly, the first row at the first frame. A table whose duration differs
from the clip's by more than :data:`DURATION_SLACK` is refused: its rate or its start is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError

# header names (lower case, without spaces and underscores) of columns that hold no coefficient
NOT_COEFFICIENTS = re.compile(r"^(timecode|time|timestamp|frame|frameindex|framenumber|blendshapecount"
                              r"|(head|lefteye|righteye)(yaw|pitch|roll))$")


DURATION_SLACK = (0.05, 0.5)  # table and clip durations may differ by 5% or 0.5 s, whichever is more


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


# The procedural head's blendshapes (process.py's fitted coefficients) from Apple ARKit's 52 (as
# Live Link Face and other iPhone trackers write them): each the mean of its ARKit counterparts,
# both in 0..1 (left and right halves averaged; the brow raise from the inner and both outer raises).
ARKIT_TO_PROCEDURAL = {
    "jaw_open": ("jawOpen",),
    "mouth_stretch": ("mouthStretchLeft", "mouthStretchRight"),
    "mouth_pucker": ("mouthPucker",),
    "mouth_funnel": ("mouthFunnel",),
    "mouth_smile": ("mouthSmileLeft", "mouthSmileRight"),
    "mouth_frown": ("mouthFrownLeft", "mouthFrownRight"),
    "upper_lip_up": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "eye_blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "brow_up": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "brow_down": ("browDownLeft", "browDownRight"),
}


def from_arkit(table: np.ndarray, given: list[str], wanted: list[str]) -> np.ndarray | None:
    """``table [N, len(given)]`` of ARKit coefficients as the procedural blendshapes ``wanted``
    ``[N, len(wanted)]`` (:data:`ARKIT_TO_PROCEDURAL`); None when a wanted name has no ARKit
    counterpart or the table lacks one of its ARKit columns."""
    column = {name_key(name): i for i, name in enumerate(given)}
    mapping = {name_key(k): v for k, v in ARKIT_TO_PROCEDURAL.items()}
    out = []
    for name in wanted:
        sources = mapping.get(name_key(name))
        if sources is None or any(name_key(src) not in column for src in sources):
            return None
        out.append(table[:, [column[name_key(src)] for src in sources]].mean(axis=1))
    return np.stack(out, axis=1)


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


def resample_rows(table: np.ndarray, rate: float, n_frames: int, fps: float) -> np.ndarray:
    """``table [R, K]`` sampled at ``rate`` rows per second -> ``[n_frames, K]`` at ``fps``, linear in
    time from the first row at t = 0; frames past the last row hold it."""
    times = np.arange(table.shape[0]) / rate
    frames = np.arange(n_frames) / fps
    return np.stack([np.interp(frames, times, column) for column in table.T], axis=1)


def _duration_check(path: Path, rows: int, rate: float, n_frames: int, fps: float, say) -> None:
    """Refuse a table whose duration is far from the clip's; note a short tail held still."""
    table_s, clip_s = rows / rate, n_frames / fps
    slack = max(DURATION_SLACK[0] * clip_s, DURATION_SLACK[1])
    if abs(table_s - clip_s) > slack:
        raise FaceNerfError(f"--expr_file {path} has {rows} rows, {table_s:.2f} s at --expr_fps {rate:g}, but the video "
                            f"lasts {clip_s:.2f} s ({n_frames} frames at {fps:g} fps); check --expr_fps, or cut the "
                            "table to the clip")
    if say is not None and (n_frames - 1) / fps > (rows - 1) / rate + 1.0 / fps:
        say(f"--expr_file ends {clip_s - table_s:.2f} s before the video; its last row is held for the frames after it")


def _row_count_error(path: Path, rows: int, n_frames: int, fps: float | None) -> FaceNerfError:
    hint = "give one row per frame"
    if fps:
        implied = rows * fps / n_frames
        hint = (f"if it was recorded at another rate (about {implied:.3g} rows per second here), set --expr_fps "
                f"to it and the rows are resampled to --fps {fps:g}")
    return FaceNerfError(f"--expr_file {path} has {rows} rows but the video has {n_frames} frames at the "
                         f"extraction rate; {hint}")


def _read_table(path: Path, say) -> tuple[np.ndarray, list[str] | None]:
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
    if table.ndim != 2 or table.shape[1] < 1 or table.shape[0] < 1:
        raise FaceNerfError(f"--expr_file {path} must be a [frames, K] table, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise FaceNerfError(f"--expr_file {path} holds NaN or infinite values; fill them in")
    return table, names


def load_expr_file(path: str | Path, n_frames: int, say=None, fps: float | None = None,
                   expr_fps: float | None = None) -> tuple[np.ndarray, list[str] | None]:
    """``(coefficients [n_frames, K], names or None)``; one-line errors for bad files, frame counts
    or durations; ``say(note)`` hears which columns were dropped.

    ``fps``: the extraction rate of the ``n_frames`` frames; ``expr_fps``: the table's rate when it
    is another (its rows are then resampled to the frames, :func:`resample_rows`)."""
    path = Path(path)
    table, names = _read_table(path, say)
    if expr_fps is not None and expr_fps <= 0:
        raise FaceNerfError(f"--expr_fps must be positive, got {expr_fps:g}")
    if expr_fps is None or fps is None:
        if table.shape[0] != n_frames:
            raise _row_count_error(path, table.shape[0], n_frames, fps)
        return table, names
    if abs(expr_fps - fps) < 1e-6 and table.shape[0] == n_frames:
        return table, names
    _duration_check(path, table.shape[0], expr_fps, n_frames, fps, say)
    return resample_rows(table, expr_fps, n_frames, fps), names
