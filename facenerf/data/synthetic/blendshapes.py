"""Named expression blendshapes of the procedural head, for talking heads and tracking.

A blendshape is a fixed combination of the head's procedural deformers
(:data:`facenerf.data.synthetic.expressions.DEFORMERS`); a frame's expression is a vector of
``K`` non-negative coefficients in [0, 1], one per name in :data:`BLENDSHAPES`, mapped to
deformer weights by :func:`deformer_weights`. The talking-head generator animates these
coefficients, and the video tracker fits them back from landmarks with the linear landmark
basis of :func:`landmark_basis` (the landmark displacement of each blendshape at full weight).
"""

from __future__ import annotations

import numpy as np

from facenerf.data.synthetic import expressions as sx
from facenerf.data.synthetic import head as sh

# name -> {deformer: weight}; every coefficient is used in [0, 1]
_RECIPES = {
    "jaw_open": {"jaw_open": 1.0},
    "mouth_stretch": {"lip_stretch": 1.0},
    "mouth_pucker": {"pucker": 1.0},
    "mouth_funnel": {"funnel": 1.0},
    "mouth_smile": {"corner_pull": 1.0, "squint": 0.3},
    "mouth_frown": {"corner_depress": 1.0},
    "upper_lip_up": {"upper_lip_raise": 1.0},
    "eye_blink": {"eye_close": 1.0},
    "brow_up": {"brow_raise": 1.0},
    "brow_down": {"brow_lower": 1.0},
}
BLENDSHAPES: tuple[str, ...] = tuple(_RECIPES)   # K = 10 names, the column order of expr.npy

BLENDSHAPE_TABLE = np.zeros((len(BLENDSHAPES), len(sx.DEFORMERS)))  # [K, D] deformer weights
for _row, _name in enumerate(BLENDSHAPES):
    for _deformer, _weight in _RECIPES[_name].items():
        BLENDSHAPE_TABLE[_row, sx.DEFORMERS.index(_deformer)] = _weight


def deformer_weights(coefficients: np.ndarray) -> np.ndarray:
    """Blendshape coefficients ``[..., K]`` -> deformer weights ``[..., D]``."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if coefficients.shape[-1] != len(BLENDSHAPES):
        raise ValueError(f"expected {len(BLENDSHAPES)} blendshape coefficients, got {coefficients.shape[-1]}")
    return coefficients @ BLENDSHAPE_TABLE


def head_vertices(topology: sh.HeadTopology, shape: sh.ShapeParams, coefficients: np.ndarray,
                  chart=None) -> np.ndarray:
    """Vertices ``[V, 3]`` (mm, TU frame) of a head with ``shape`` showing ``coefficients [K]``."""
    return sx.deform(topology, shape, deformer_weights(coefficients), chart)


def landmark_basis(topology: sh.HeadTopology, shape: sh.ShapeParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The linear landmark model ``L(c) ~ neutral + sum_k c_k * deltas[k]``.

    Returns ``(neutral [68, 3], deltas [K, 68, 3])`` in mm (TU frame) for ``shape`` (default:
    the mean identity). ``deltas[k]`` is the landmark displacement of blendshape ``k`` at full
    weight; the deformers are mildly non-linear (the jaw rotates), so this is the chord of each
    blendshape's path.
    """
    shape = shape or sh.ShapeParams.from_z(np.zeros(sh.N_SHAPE_PARAMS))
    chart = topology.vertex_chart()
    indices = sx.landmark_indices(topology)
    neutral = sx.deform(topology, shape, np.zeros(len(sx.DEFORMERS)), chart)[indices]
    deltas = np.stack([sx.deform(topology, shape, row, chart)[indices] - neutral for row in BLENDSHAPE_TABLE])
    return neutral, deltas
