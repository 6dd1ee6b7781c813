"""Contact sheet of one identity's rendered expressions, to look at the training data.

    python -m facenerf.preprocess.training.contact_sheet --data data --id 1 \\
        --views 0_10,0_15,15_6 --out docs/facescape_contact_sheet.png

Reads ``{data}/multiViewImages/{id}/{expression}/{view}.png`` (written by ``render.py``) and
tiles the 20 expressions (5 per row), each as its views side by side with a label.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from facenerf.data.synthetic import EXPRESSIONS
from facenerf.errors import FaceNerfError

LABEL_HEIGHT = 16


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


def make_contact_sheet(multiview_root: Path, identity: str, views: list[str], size: int = 112,
                       per_row: int = 5, crop: float = 0.7) -> np.ndarray:
    """uint8 [H, W, 3] sheet of the 20 expressions of ``identity`` (missing images stay black)."""
    person = Path(multiview_root) / identity
    if not person.is_dir():
        raise FaceNerfError(f"no rendered images for identity {identity} in {multiview_root}; run render.py first")
    tiles = [_tile(person / name, views, size, crop) for name in EXPRESSIONS]
    rows = [np.concatenate(tiles[i:i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    gap = np.full((4, rows[0].shape[1], 3), 40, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


def main(argv: list[str] | None = None) -> int:
    from facenerf.config import make_parser, parse_args
    from facenerf.io import write_image

    parser = make_parser("Tile one identity's 20 rendered expressions into a PNG.",
                         prog="python -m facenerf.preprocess.training.contact_sheet")
    parser.add_argument("--data", default="data", help="dataset root holding multiViewImages/")
    parser.add_argument("--id", default="1", help="identity folder")
    parser.add_argument("--views", default="0_10,0_15,15_6", help="comma list of view names {pitch}_{yawIndex}")
    parser.add_argument("--size", type=int, default=112, help="tile size in pixels")
    parser.add_argument("--crop", type=float, default=0.7, help="central fraction of each image to show")
    parser.add_argument("--out", default="docs/facescape_contact_sheet.png", help="PNG to write")
    args = parse_args(parser, argv)
    sheet = make_contact_sheet(Path(args.data) / "multiViewImages", args.id,
                               [v.strip() for v in args.views.split(",")], args.size, crop=args.crop)
    path = write_image(args.out, sheet)
    print(f"contact sheet written to {path}")
    return 0


if __name__ == "__main__":
    from facenerf.errors import run_cli

    run_cli(lambda: main(sys.argv[1:]))
