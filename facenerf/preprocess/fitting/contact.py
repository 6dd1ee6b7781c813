"""Contact sheets: one row per photo (input, landmarks + pose, mask, segmented, relit).

A sheet lets a user check a whole batch at a glance: landmarks on the features (green dots;
the 3D template projected with the estimated pose as red crosses), the label mask over the
photo, and the segmented image before and after relighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.io import to_uint8, write_image
from facenerf.preprocess.fitting.segment import colour_labels

COLUMNS = ("input", "landmarks + pose", "mask", "segmented", "relit")
ROWS_PER_PAGE = 8
_BACKDROP = (40, 40, 40)


@dataclass
class ContactRow:
    name: str
    tiles: list[np.ndarray]  # one image per column: [h, w, 3] float in [0, 1] or uint8


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, projected: np.ndarray | None = None) -> np.ndarray:
    """``[S, S, 3]`` uint8 copy of ``image`` with landmarks ``[68, 2]`` (green) and ``projected`` (red crosses)."""
    import cv2

    canvas = np.ascontiguousarray(to_uint8(image)).copy()
    radius = max(1, canvas.shape[0] // 200)
    if projected is not None:
        for x, y in np.asarray(projected):
            cv2.drawMarker(canvas, (int(round(x)), int(round(y))), (255, 40, 40), cv2.MARKER_CROSS,
                           3 * radius + 2, max(1, radius // 2))
    for x, y in np.asarray(landmarks):
        cv2.circle(canvas, (int(round(x)), int(round(y))), radius, (40, 255, 40), -1, cv2.LINE_AA)
    return canvas


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-coded label mask over ``image`` -> uint8 ``[S, S, 3]``."""
    return overlay_colours(image, colour_labels(labels), alpha)


def overlay_colours(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-coded mask image (``mask/<name>.png``, uint8 or float) over ``image`` -> uint8."""
    base = to_uint8(image).astype(np.float32)
    return (base * (1.0 - alpha) + to_uint8(colours).astype(np.float32) * alpha + 0.5).astype(np.uint8)


def _fit_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """Letterbox ``image`` into a ``tile x tile`` uint8 square."""
    import cv2

    img = to_uint8(image)
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(img, size, interpolation=interp)
    out = np.empty((tile, tile, 3), dtype=np.uint8)
    out[:] = _BACKDROP
    y0, x0 = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[y0:y0 + size[1], x0:x0 + size[0]] = small[..., :3]
    return out


def _label(tile: np.ndarray, text: str) -> None:
    import cv2

    scale = tile.shape[0] / 512.0
    org = (4, tile.shape[0] - 6)
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, (255, 255, 255), 1, cv2.LINE_AA)


def make_contact_sheet(rows: list[ContactRow], tile: int = 256) -> np.ndarray:
    """Grid image ``[header + rows * tile, columns * tile, 3]`` uint8 with column titles."""
    import cv2

    header = np.zeros((max(18, tile // 10), tile * len(COLUMNS), 3), dtype=np.uint8)
    for i, title in enumerate(COLUMNS):
        cv2.putText(header, title, (i * tile + 6, header.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * tile / 256.0, (255, 255, 255), 1, cv2.LINE_AA)
    lines = [header]
    for row in rows:
        tiles = [_fit_tile(img, tile) for img in row.tiles[: len(COLUMNS)]]
        tiles += [np.full((tile, tile, 3), _BACKDROP, np.uint8)] * (len(COLUMNS) - len(tiles))
        _label(tiles[0], row.name)
        lines.append(np.concatenate(tiles, axis=1))
    return np.concatenate(lines, axis=0)


class ContactSheetWriter:
    """Collects rows and writes a page every ``rows_per_page`` rows, so big batches stay small in memory.

    Pages are ``contact_sheet_001.png``, ``contact_sheet_002.png``, ...; a batch that fits on one
    page gets a single ``contact_sheet.png``.
    """

    def __init__(self, out_dir: str | Path, tile: int = 256, rows_per_page: int = ROWS_PER_PAGE):
        self.out_dir = Path(out_dir)
        self.tile = int(tile)
        self.rows_per_page = int(rows_per_page)
        self.rows: list[ContactRow] = []
        self.paths: list[Path] = []

    def add(self, name: str, tiles: list[np.ndarray]) -> None:
        """Queue one row (tiles are shrunk to thumbnails immediately)."""
        self.rows.append(ContactRow(name, [_fit_tile(t, self.tile) for t in tiles]))
        if len(self.rows) >= self.rows_per_page:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            path = self.out_dir / f"contact_sheet_{len(self.paths) + 1:03d}.png"
            self.paths.append(write_image(path, make_contact_sheet(self.rows, self.tile)))
            self.rows = []

    def close(self) -> list[Path]:
        """Write the last page; return the written sheets."""
        self._flush()
        if len(self.paths) == 1:
            single = self.paths[0].with_name("contact_sheet.png")
            self.paths[0].replace(single)
            self.paths = [single]
        for stale in self.out_dir.glob("contact_sheet*.png"):   # pages of an earlier, longer run
            if stale not in self.paths:
                stale.unlink(missing_ok=True)
        return self.paths
