"""Compare a processed dataset with a synthetic talking head's ground truth.

``python -m facenerf.tools.video_evaluate data/NAME data/talk/ground_truth`` prints the
head-rotation error (mean, median, max; degrees; also after removing the constant rotation
between the two head frames), the per-coefficient correlation with the true
coefficients (on the kept frames, for coefficients whose truth varies), the landmark error and
the head-mask IoU, and writes them to ``--out`` as JSON when asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError

VARIES = 0.02   # a ground-truth coefficient "varies" when its standard deviation exceeds this


def rotation_errors(c2w: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Geodesic angles (degrees) between the rotations of ``[N, 4, 4]`` pose pairs."""
    rel = np.einsum("nji,njk->nik", truth[:, :3, :3], c2w[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def aligned_rotation_errors(c2w: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rotation errors (degrees) left after removing the one constant rotation between the head frames.

    A tracker's head frame may be turned against the truth's by a fixed rotation ``A``
    (``c2w = A @ truth``); a NeRF trained on its poses does not see ``A``, only how the
    rotations vary. ``A`` is the mean of the per-frame ``R_i R_true_i^T``; the errors are the
    angles of what is left, ``A^T R_i R_true_i^T``.
    """
    from scipy.spatial.transform import Rotation

    offsets = Rotation.from_matrix(np.einsum("nij,nkj->nik", c2w[:, :3, :3], truth[:, :3, :3]))
    return np.degrees((offsets.mean().inv() * offsets).magnitude())


def correlations(estimate: np.ndarray, truth: np.ndarray, names) -> dict:
    """Pearson r per coefficient (None where the truth or the estimate does not vary)."""
    out = {}
    for k, name in enumerate(names):
        t, e = truth[:, k], estimate[:, k]
        out[name] = None if t.std() <= VARIES or e.std() == 0 else round(float(np.corrcoef(t, e)[0, 1]), 3)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def compare(dataset: str | Path, truth: str | Path, mask_frames: int = 20) -> dict:
    """Errors of a processed ``dataset`` folder against a generator's ``ground_truth`` folder."""
    import imageio.v3 as iio

    dataset, truth = Path(dataset), Path(truth)
    if not (truth / "camera_to_head.npy").is_file():
        raise FaceNerfError(f"{truth} is not a talking-head ground_truth folder (no camera_to_head.npy)")
    frames = json.loads((dataset / "transforms_all.json").read_text())["frames"]
    ids = np.array([f["img_id"] for f in frames])
    c2w = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)
    true_c2w = np.load(truth / "camera_to_head.npy")[ids]
    errors, aligned = rotation_errors(c2w, true_c2w), aligned_rotation_errors(c2w, true_c2w)
    gt_names = json.loads((truth / "info.json").read_text())["blendshapes"]
    names_file = dataset / "expr_names.txt"
    names = names_file.read_text().split() if names_file.is_file() else []
    expr, gt = np.load(dataset / "expr.npy")[ids], np.load(truth / "coefficients.npy")[ids]
    shared = [n for n in gt_names if n in names]
    estimate = np.stack([expr[:, names.index(n)] for n in shared], 1) if shared else np.zeros((len(ids), 0))
    landmark = [np.linalg.norm(np.loadtxt(dataset / "ori_imgs" / f"{i}.lms") - np.load(truth / "landmarks_2d.npy")[i],
                               axis=1).mean() for i in ids]
    chosen = ids[np.linspace(0, len(ids) - 1, min(mask_frames, len(ids))).astype(int)]
    head_iou, person_iou, neck_missed = [], [], []
    for i in chosen:
        true_labels = iio.imread(truth / "labels" / f"{i}.png")                  # [H, W] 0 bg, 1 head, 2 neck, 3 torso
        person = (iio.imread(dataset / "parsing" / f"{i}.png") < 250).any(axis=-1)  # white is background
        head_iou.append(_iou(iio.imread(dataset / "head_masks" / f"{i}.png") > 127, true_labels == 1))
        person_iou.append(_iou(person, true_labels > 0))
        neck_missed.append(float((~person & (true_labels == 2)).sum() / max((true_labels == 2).sum(), 1)))
    return {"frames": int(len(ids)),
            "rotation_error_deg": {"mean": round(float(errors.mean()), 3), "median": round(float(np.median(errors)), 3),
                                   "max": round(float(errors.max()), 3),
                                   "aligned_mean": round(float(aligned.mean()), 3),
                                   "aligned_max": round(float(aligned.max()), 3)},
            "correlation": correlations(estimate, gt[:, [gt_names.index(n) for n in shared]], shared),
            "landmark_error_px": round(float(np.mean(landmark)), 3),
            "head_mask_iou": round(float(np.mean(head_iou)), 4),
            "person_mask_iou": round(float(np.mean(person_iou)), 4),
            "neck_missed": round(float(np.mean(neck_missed)), 4)}
