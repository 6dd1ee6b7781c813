"""The preview video: every frame with its landmarks, head-pose axes and strongest coefficients."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facenerf.io import read_image, write_video

AXIS_LENGTH = 1.2  # scene units (60 mm)


def annotate(image: np.ndarray, landmarks: np.ndarray | None, rvec, tvec, kmat: np.ndarray,
             coefficients: np.ndarray | None, names) -> np.ndarray:
    """uint8 ``[H, W, 3]`` frame with landmarks (green), head axes (x red, y green, z blue) and text."""
    import cv2

    canvas = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    scale = max(canvas.shape[:2]) / 512.0
    thick = max(1, int(round(2 * scale)))
    if landmarks is None or not np.isfinite(landmarks).all():
        cv2.putText(canvas, "no face: dropped", (int(10 * scale), int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.8 * scale, (255, 40, 40), thick, cv2.LINE_AA)
        return canvas
    for x, y in landmarks:
        cv2.circle(canvas, (int(round(x)), int(round(y))), max(1, thick), (40, 255, 40), -1, cv2.LINE_AA)
    if rvec is not None and np.isfinite(rvec).all():
        axes = np.array([[0, 0, 0], [AXIS_LENGTH, 0, 0], [0, AXIS_LENGTH, 0], [0, 0, AXIS_LENGTH]], np.float64)
        points, _ = cv2.projectPoints(axes, np.asarray(rvec, np.float64), np.asarray(tvec, np.float64), kmat, None)
        o, *ends = [tuple(int(round(v)) for v in p) for p in points.reshape(-1, 2)]
        for end, colour in zip(ends, ((255, 50, 50), (50, 255, 50), (60, 120, 255))):
            cv2.line(canvas, o, end, colour, thick, cv2.LINE_AA)
    if coefficients is not None:
        for row, k in enumerate(np.argsort(-coefficients)[:3]):
            label = names[k] if names is not None and k < len(names) else f"coef {k}"
            origin = (int(10 * scale), int((24 + 26 * row) * scale))
            width = int(120 * scale * float(np.clip(coefficients[k], 0, 1)))
            cv2.rectangle(canvas, (origin[0], origin[1] + int(4 * scale)),
                          (origin[0] + width, origin[1] + int(8 * scale)), (255, 220, 60), -1)
            cv2.putText(canvas, f"{label} {coefficients[k]:.2f}", origin, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale,
                        (255, 255, 255), max(1, thick - 1), cv2.LINE_AA)
    return canvas


def write_preview(path: Path, frame_paths: list[Path], landmarks: np.ndarray, keep: np.ndarray, rvecs, tvecs,
                  kmat: np.ndarray, coefficients: np.ndarray, names, fps: float, progress: bool = True) -> Path:
    """Write the annotated clip as an MP4 at ``fps``."""
    from tqdm import tqdm

    def frames():
        for i in tqdm(range(len(frame_paths)), desc="preview", unit="frame", disable=None if progress else True):
            lms = landmarks[i] if keep[i] else None
            yield annotate(read_image(frame_paths[i]), lms, rvecs[i], tvecs[i], kmat,
                           coefficients[i] if keep[i] else None, names)

    return write_video(path, frames(), fps=int(round(fps)))
