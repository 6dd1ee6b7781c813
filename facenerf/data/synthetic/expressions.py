"""Expressions and landmarks of the procedural head (see :mod:`facenerf.data.synthetic.head`).

An expression is a weight vector over :data:`DEFORMERS`, a small set of procedural muscle-like
deformations. Each deformer acts in up to three ways:

* a **slide** of vertices over the surface in chart coordinates (eyelids closing over the
  eyeball, brows moving, lip corners pulled up or down): the texture slides with the skin;
* a **radial** push or pull (cheek puffs, dimples, pucker, lip roll);
* a **rigid jaw** motion (hinge rotation, lateral and forward shift) blended by a weight that
  is split at the lip line, so the mouth opens onto the textured interior.

The 20 FaceScape expressions are fixed rows of :data:`EXPRESSION_TABLE`; every identity gets
its own jittered copy so that the same expression differs slightly between people.
"""

from __future__ import annotations

import numpy as np

from facenerf.data.synthetic.head import (
    EYE_CENTRES, EYE_HALF_HEIGHT, HEAD_CENTRE, EYE_HALF_WIDTH, LIP_Y, MOUTH_HALF_WIDTH, NOSE_TIP_Y,
    HeadTopology, ShapeParams, chart_angles, chart_xy, embed, gauss2, mouth_mask, smoothstep,
)

EXPRESSIONS = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward",
    "mouth_left", "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler",
    "sadness", "lip_roll", "grin", "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)

DEFORMERS = (
    "jaw_open", "jaw_lateral", "jaw_forward", "corner_pull", "corner_depress", "lip_stretch",
    "mouth_shift", "pucker", "funnel", "lip_roll", "eye_close", "brow_raise", "brow_lower",
    "cheek_puff", "dimple", "chin_raise", "squint", "upper_lip_raise",
)
_D = {name: i for i, name in enumerate(DEFORMERS)}

_RECIPES = {  # expression -> {deformer: weight}; signed deformers: + is the subject's left
    "neutral": {},
    "smile": {"corner_pull": 1.0, "squint": 0.6, "jaw_open": 0.08, "upper_lip_raise": 0.3},
    "mouth_stretch": {"jaw_open": 1.0, "lip_stretch": 0.35, "upper_lip_raise": 0.4},
    "anger": {"brow_lower": 1.0, "corner_depress": 0.45, "squint": 0.5, "upper_lip_raise": 0.6,
              "jaw_open": 0.12},
    "jaw_left": {"jaw_lateral": 1.0, "jaw_open": 0.18},
    "jaw_right": {"jaw_lateral": -1.0, "jaw_open": 0.18},
    "jaw_forward": {"jaw_forward": 1.0, "jaw_open": 0.15},
    "mouth_left": {"mouth_shift": 1.0},
    "mouth_right": {"mouth_shift": -1.0},
    "dimpler": {"dimple": 1.0, "corner_pull": 0.25, "lip_stretch": 0.3},
    "chin_raiser": {"chin_raise": 1.0, "corner_depress": 0.35},
    "lip_puckerer": {"pucker": 1.0},
    "lip_funneler": {"funnel": 1.0, "jaw_open": 0.2},
    "sadness": {"corner_depress": 1.0, "brow_raise": 0.35, "brow_lower": 0.25, "chin_raise": 0.3},
    "lip_roll": {"lip_roll": 1.0},
    "grin": {"corner_pull": 0.7, "lip_stretch": 0.9, "upper_lip_raise": 1.0, "jaw_open": 0.3,
             "squint": 0.3},
    "cheek_blowing": {"cheek_puff": 1.0, "pucker": 0.25},
    "eye_closed": {"eye_close": 1.0},
    "brow_raiser": {"brow_raise": 1.0},
    "brow_lower": {"brow_lower": 1.0, "squint": 0.2},
}

EXPRESSION_TABLE = np.zeros((len(EXPRESSIONS), len(DEFORMERS)))  # [20, K]
for _row, _name in enumerate(EXPRESSIONS):
    for _deformer, _weight in _RECIPES[_name].items():
        EXPRESSION_TABLE[_row, _D[_deformer]] = _weight


def expression_stems() -> list[str]:
    """FaceScape file stems ``{k}_{name}``, k = 1..20."""
    return [f"{k}_{name}" for k, name in enumerate(EXPRESSIONS, start=1)]


def jittered_table(rng: np.random.Generator, amount: float = 0.12) -> np.ndarray:
    """A per-identity copy of :data:`EXPRESSION_TABLE` [20, K] with relative jitter."""
    jitter = 1.0 + amount * rng.standard_normal(EXPRESSION_TABLE.shape)
    return EXPRESSION_TABLE * np.clip(jitter, 0.6, 1.4)


# ------------------------------------------------------------------------------ slides

def _eyelid_slide(x: np.ndarray, y: np.ndarray, close: float, squint: float) -> np.ndarray:
    """Vertical slide (chart mm) that closes both eyes and raises the lower lids."""
    dy = np.zeros_like(y)
    h = EYE_HALF_HEIGHT
    for ex, ey in EYE_CENTRES:
        lx = (x - ex) / EYE_HALF_WIDTH
        s = np.sqrt(np.clip(1.0 - lx ** 2, 0.0, 1.0))
        window = smoothstep(1.35, 0.8, np.abs(lx))
        bottom, top, upper_limit = ey - h * s, ey + h * s, ey + 3.4 * h
        lift = 0.25 * h * s * close + 0.35 * h * squint * window
        new_bottom = bottom + lift
        new_top = new_bottom + (top - bottom) * (1.0 - 0.93 * close)
        below = y < bottom
        opening = (y >= bottom) & (y <= top)
        above = (y > top) & (y < upper_limit)
        fade = smoothstep(bottom - 2.2 * h, bottom, y)
        target = np.where(below, y + lift * fade, y)
        target = np.where(opening, new_bottom + (y - bottom) * (1.0 - 0.93 * close), target)
        frac = (y - top) / np.maximum(upper_limit - top, 1e-6)
        target = np.where(above, new_top + frac * (upper_limit - new_top), target)
        dy += (target - y) * window
    return dy


def _chart_slide(x: np.ndarray, y: np.ndarray, upper: np.ndarray, lower: np.ndarray,
                 w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total in-surface slide ``(dx, dy)`` in chart mm for deformer weights ``w [K]``."""
    side = np.sign(x)
    corners = gauss2(np.abs(x), y, MOUTH_HALF_WIDTH, LIP_Y, 14.0, 12.0)
    mouth = gauss2(x, y, 0.0, LIP_Y, 24.0, 16.0)
    lips = gauss2(x, y, 0.0, LIP_Y, 20.0, 13.0)
    inner = mouth_mask(x)
    brow_band = smoothstep(22.0, 36.0, y) * smoothstep(100.0, 40.0, y) * smoothstep(72.0, 45.0, np.abs(x))
    low_brow = smoothstep(20.0, 33.0, y) * smoothstep(70.0, 38.0, y) * smoothstep(70.0, 40.0, np.abs(x))
    dx = (side * corners * (6.5 * w[_D["corner_pull"]] + 2.0 * w[_D["corner_depress"]])
          + x * 0.3 * w[_D["lip_stretch"]] * gauss2(x, y, 0.0, LIP_Y, 30.0, 14.0)
          + 11.0 * w[_D["mouth_shift"]] * mouth
          - x * gauss2(x, y, 0.0, LIP_Y, 30.0, 14.0) * (0.6 * w[_D["pucker"]] + 0.35 * w[_D["funnel"]])
          - side * 4.0 * w[_D["brow_lower"]] * low_brow * smoothstep(55.0, 12.0, np.abs(x)))
    dy = (corners * (11.0 * w[_D["corner_pull"]] - 10.0 * w[_D["corner_depress"]])
          - (y - LIP_Y) * lips * (0.25 * w[_D["pucker"]] + 0.15 * w[_D["funnel"]])
          + 7.0 * w[_D["brow_raise"]] * brow_band - 5.0 * w[_D["brow_lower"]] * low_brow
          + 8.0 * w[_D["chin_raise"]] * gauss2(x, y, 0.0, -60.0, 25.0, 18.0) * lower)
    lip_gap = inner * upper * (4.5 * w[_D["upper_lip_raise"]] * gauss2(x, y, 0.0, LIP_Y + 4.0, 18.0, 8.0)
                               + 2.5 * w[_D["funnel"]])
    lip_gap -= inner * lower * 3.5 * w[_D["funnel"]] * gauss2(x, y, 0.0, LIP_Y - 4.0, 18.0, 8.0)
    roll = w[_D["lip_roll"]] * inner
    dy += lip_gap - roll * upper * 4.0 * gauss2(x, y, 0.0, LIP_Y + 5.0, 20.0, 5.0)
    dy += roll * lower * 4.0 * gauss2(x, y, 0.0, LIP_Y - 6.0, 20.0, 5.0)
    dy += _eyelid_slide(x, y, w[_D["eye_close"]], w[_D["squint"]])
    return dx, dy


def _radial(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Radial push (+) or pull (-) in mm for deformer weights ``w [K]``."""
    ax = np.abs(x)
    lips = gauss2(x, y, 0.0, LIP_Y, 20.0, 12.0)
    out = (13.0 * w[_D["pucker"]] + 9.0 * w[_D["funnel"]]) * lips
    out += 17.0 * w[_D["cheek_puff"]] * gauss2(ax, y, 48.0, -34.0, 22.0, 19.0)
    out -= 5.0 * w[_D["dimple"]] * gauss2(ax, y, 31.0, LIP_Y - 1.0, 4.0, 4.0)
    out -= 2.0 * w[_D["dimple"]] * gauss2(ax, y, 26.0, LIP_Y, 8.0, 8.0)
    out += 6.0 * w[_D["chin_raise"]] * gauss2(x, y, 0.0, -66.0, 18.0, 14.0)
    out += 3.0 * w[_D["chin_raise"]] * gauss2(x, y, 0.0, LIP_Y - 6.0, 18.0, 5.0)
    out -= 5.0 * w[_D["lip_roll"]] * gauss2(x, y, 0.0, LIP_Y, 20.0, 7.0)
    out += 2.0 * w[_D["brow_lower"]] * gauss2(ax, y, 16.0, 32.0, 10.0, 6.0)
    out += 5.0 * (w[_D["corner_pull"]] + 0.5 * w[_D["squint"]]) * gauss2(ax, y, 40.0, -14.0, 14.0, 12.0)
    out -= 3.0 * w[_D["corner_pull"]] * gauss2(ax, y, MOUTH_HALF_WIDTH, LIP_Y, 6.0, 6.0)
    return out


# ---------------------------------------------------------------------------------- jaw

def jaw_weight(x: np.ndarray, y: np.ndarray, row: np.ndarray, topology: HeadTopology) -> np.ndarray:
    """How much each vertex follows the jaw [V]: 1 on the chin, 0 on the skull and neck base.

    Inside the mouth the weight is split at the lip line: the upper lip stays, the lower lip
    moves and the mouth's interior row follows half way.
    """
    lower_face = smoothstep(LIP_Y + 16.0, LIP_Y - 6.0, y) * smoothstep(100.0, 62.0, np.abs(x))
    lower_face *= smoothstep(-128.0, -92.0, y)
    lo, mid, hi = topology.seam_rows
    inner = mouth_mask(x)
    upper = row >= hi
    weight = np.where(upper, lower_face * (1.0 - inner), lower_face)
    weight = np.where(row == mid, 0.5 * lower_face * inner + lower_face * (1.0 - inner), weight)
    weight = np.where(row <= lo, np.maximum(weight, inner * smoothstep(-128.0, -92.0, y)), weight)
    return weight


def _apply_jaw(points: np.ndarray, weight: np.ndarray, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Blend each vertex toward its rigidly moved jaw position."""
    hinge = np.array([0.0, 0.0, 6.0]) * scale + HEAD_CENTRE
    angle = np.deg2rad(24.0) * w[_D["jaw_open"]]
    turn = np.deg2rad(7.0) * w[_D["jaw_lateral"]]
    c, s = np.cos(angle), np.sin(angle)
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    cy, sy = np.cos(turn), np.sin(turn)
    rot_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    shift = np.array([12.0 * w[_D["jaw_lateral"]], 0.0, 10.0 * w[_D["jaw_forward"]]])
    moved = (points - hinge) @ (rot_y @ rot_x).T + hinge + shift
    return points + weight[:, None] * (moved - points)


def deform(topology: HeadTopology, params: ShapeParams, weights: np.ndarray,
           chart: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Vertex positions [V, 3] (mm, TU frame) of one identity in one expression.

    Args:
        topology: the shared grid.
        params: identity geometry.
        weights: [K] deformer weights (a row of :func:`jittered_table`); zeros = neutral.
        chart: optional precomputed ``topology.vertex_chart()``.
    """
    az, el, row = chart if chart is not None else topology.vertex_chart()
    x, y = chart_xy(az, el)
    lo, _, hi = topology.seam_rows
    upper, lower = (row >= hi).astype(float), (row <= lo).astype(float)
    w = np.asarray(weights, dtype=np.float64)
    dx, dy = _chart_slide(x, y, upper, lower, w)
    pole = row == topology.n_rows
    dx, dy = np.where(pole, 0.0, dx), np.where(pole, 0.0, dy)
    points = embed(*chart_angles(x + dx, y + dy), row, topology, params,
                   extra_radius=_radial(x, y, w))
    return _apply_jaw(points, jaw_weight(x, y, row, topology), w, params.scale)


# ---------------------------------------------------------------------------- landmarks

def _landmark_targets() -> tuple[np.ndarray, np.ndarray]:
    """Chart targets [68, 2] (mm) in iBUG order and a seam-row code per landmark.

    Eyes, nose tip, nostrils and mouth sit on the painted and sculpted features. The points
    whose place is a matter of convention follow dlib's 68-point predictor, measured on frontal
    portraits aligned to the eyes and mouth of the frontal training view:

    * jaw contour 0-16: on the visible outline of the cheeks and jaw, from just below the eye
      line (0, 16) round the chin (8) - not on the front of the cheeks;
    * brows 17-26: along the brow ridge's lower edge, the outer ends lowest;
    * nose bridge 27-29: from the nasion between the eyes, evenly down to the tip (30).

    Seam code: 0 any ordinary row, 1 upper-lip inner row (also the inner mouth corners),
    3 lower-lip inner row.
    """
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-74.0 * np.cos(t), 15.0 - 97.0 * np.sin(t)], 1)
    jaw[8] = [0.0, -82.0]                        # chin on the chin's lowest frontal point
    brow_x = np.array([-57.0, -44.0, -32.0, -22.0, -12.0])
    brow_y = np.array([30.0, 34.5, 35.5, 33.0, 30.0])
    brows = np.concatenate([np.stack([brow_x, brow_y], 1), np.stack([-brow_x[::-1], brow_y[::-1]], 1)])
    t = NOSE_TIP_Y
    nose = np.array([[0, 17], [0, 17 + (t - 17) / 3], [0, 17 + 2 * (t - 17) / 3], [0, t], [-12, t - 9],
                     [-6, t - 11], [0, t - 12], [6, t - 11], [12, t - 9]], dtype=float)
    (rx, ry), (lx, ly) = EYE_CENTRES
    hw, hh = EYE_HALF_WIDTH, 0.9 * EYE_HALF_HEIGHT
    right_eye = [[rx - hw, ry], [rx - 5, ry + hh], [rx + 5, ry + hh], [rx + hw, ry], [rx + 5, ry - hh],
                 [rx - 5, ry - hh]]
    left_eye = [[lx - hw, ly], [lx - 5, ly + hh], [lx + 5, ly + hh], [lx + hw, ly], [lx + 5, ly - hh],
                [lx - 5, ly - hh]]
    L = LIP_Y
    mouth = [[-25, L], [-17, L + 4], [-7, L + 6], [0, L + 5.5], [7, L + 6], [17, L + 4], [25, L],
             [17, L - 5], [7, L - 7], [0, L - 7.5], [-7, L - 7], [-17, L - 5]]
    inner = [[-21, L], [-9, L], [0, L], [9, L], [21, L], [9, L], [0, L], [-9, L]]
    targets = np.concatenate([jaw, brows, nose, right_eye, left_eye, mouth, inner]).astype(float)
    seam = np.zeros(68, dtype=int)
    seam[[60, 61, 62, 63, 64]] = 1
    seam[[65, 66, 67]] = 3
    return targets, seam


def landmark_indices(topology: HeadTopology) -> np.ndarray:
    """68 vertex indices (iBUG order) on ``topology``, nearest to the chart targets."""
    az, el, row = topology.vertex_chart()
    xy = np.stack(chart_xy(az, el), 1)
    targets, seam = _landmark_targets()
    lo, _, hi = topology.seam_rows
    allowed_rows = {1: hi, 3: lo}
    ordinary = ~np.isin(row, topology.seam_rows) & (row < topology.n_rows)
    indices = np.empty(68, dtype=np.int64)
    for i, (target, code) in enumerate(zip(targets, seam)):
        mask = ordinary if code == 0 else row == allowed_rows[code]
        candidates = np.flatnonzero(mask)
        dist = np.sum((xy[candidates] - target) ** 2, axis=1)
        indices[i] = candidates[int(np.argmin(dist))]
    return indices
