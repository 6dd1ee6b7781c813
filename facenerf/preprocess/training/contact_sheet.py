"""Contact sheet of one identity's rendered expressions, to look at the training data.

    python -m facenerf.tools.contact_sheet --data data --id 1 --views 0_10,0_15,15_6
    # -> data/contact_sheet_1.png (``--out`` writes elsewhere)

Reads ``{data}/multiViewImages/{id}/{expression}/{view}.png`` (written by ``render.py``) and
tiles the 20 expressions (5 per row), each as its views side by side with a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.config import option
from facenerf.data.synthetic import EXPRESSIONS
from facenerf.errors import FaceNerfError

LABEL_HEIGHT = 16


@dataclass(frozen=True)
class ContactSheet:
    """Which identity and views to tile, how large, and where the PNG goes."""

    data: str = option("data", "dataset root holding multiViewImages/")
    id: str = option("1", "identity folder")
    views: str = option("0_10,0_15,15_6", "comma list of view names {pitch}_{yawIndex}")
    size: int = option(112, "tile size in pixels")
    crop: float = option(0.7, "central fraction of each image to show")
    per_row: int = option(5, "expressions per row")
    out: str = option("", "PNG to write; empty = <data>/contact_sheet_<id>.png, beside the data")

    @property
    def out_path(self) -> Path:
        """Where the sheet goes: ``out``, else beside the data it shows (never over tracked docs)."""
        return Path(self.out) if self.out else Path(self.data) / f"contact_sheet_{self.id}.png"

    @property
    def view_names(self) -> list[str]:
        return [v.strip() for v in self.views.split(",") if v.strip()]


def _tile(folder: Path, views: list[str], size: int, crop: float) -> np.ndarray:
    """The views of one expression side by side, uint8 [size + label, size * len(views), 3].

    Each image is cropped to its central ``crop`` fraction before resizing to ``size``.
    """
    import cv2

    from facenerf.io import read_image, resize_image

    images = []
    for view in views:
        path = folder / f"{view}.png"
        if path.is_file():
            image = read_image(path)
            h, w = image.shape[:2]
            ch, cw = int(round(h * crop)), int(round(w * crop))
            image = resize_image(image[(h - ch) // 2:(h + ch) // 2, (w - cw) // 2:(w + cw) // 2], (size, size))
        else:
            image = np.zeros((size, size, 3), np.float32)
        images.append((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    tile = np.zeros((size + LABEL_HEIGHT, size * len(views), 3), np.uint8)
    tile[LABEL_HEIGHT:] = np.concatenate(images, axis=1)
    cv2.putText(tile, folder.name, (3, LABEL_HEIGHT - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1,
                cv2.LINE_AA)
    return tile


def make_contact_sheet(multiview_root: Path, sheet: ContactSheet) -> np.ndarray:
    """uint8 [H, W, 3] sheet of the 20 expressions of ``sheet.id`` (missing images stay black)."""
    person = Path(multiview_root) / sheet.id
    if not person.is_dir():
        raise FaceNerfError(f"no rendered images for identity {sheet.id} in {multiview_root}; run render.py first")
    tiles = [_tile(person / name, sheet.view_names, sheet.size, sheet.crop) for name in EXPRESSIONS]
    per_row = sheet.per_row
    rows = [np.concatenate(tiles[i:i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    gap = np.full((4, rows[0].shape[1], 3), 40, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
