"""Builders shared by tests: tiny FaceScape-layout data as render.py and the generator leave it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facenerf.io import write_image
from facenerf.preprocess.training.rig import mofanerf_pose


def write_multiview_data(root: Path, size: int = 16, seed: int = 0) -> Path:
    """Two identities x one expression x three views (a coloured box on black) in the render.py
    layout, with shape codes and neutral UV maps; returns the ``multiViewImages`` folder."""
    rng = np.random.default_rng(seed)
    mv = root / "multiViewImages"
    np.save(root / "factors_id.npy", rng.normal(size=(3, 6)).astype(np.float32))
    for ident in ("1", "2"):
        write_image(root / "facescape_trainset" / ident / "models_reg" / "1_neutral.jpg",
                    rng.random((8, 8, 3)).astype(np.float32))
        frames = []
        for v, yaw in enumerate((-20.0, 0.0, 20.0)):
            image = np.zeros((size, size, 3), np.float32)
            image[size // 4:3 * size // 4, 5 * size // 16:11 * size // 16] = rng.uniform(0.3, 0.9, 3)
            write_image(mv / ident / "neutral" / f"0_{v}.png", image)
            frames.append({"file_path": f"/{ident}/neutral/0_{v}", "expression": 0, "view": f"0_{v}",
                           "transform_matrix": mofanerf_pose(0.0, yaw).tolist()})
        focal = 37.5 * size / 16
        header = {"fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size}
        (mv / f"transforms_train_{ident}.json").write_text(json.dumps({**header, "frames": frames}))
        (mv / ident / "neutral" / "transforms.json").write_text(
            json.dumps({**header, "near": 8.0, "far": 26.0, "frames": frames}))
    return mv
