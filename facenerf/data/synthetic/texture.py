"""Procedural albedo textures in the head's UV atlas (see :mod:`facenerf.data.synthetic.head`).

Every texel is mapped back to rest chart coordinates and painted with vectorised numpy:
skin tone with low-frequency blotches and pore-scale noise, hair on the scalp, eyebrows,
eyes (sclera, iris, pupil, lash line), lips, nostrils, ears and the mouth's interior (teeth and
a dark cavity) in the band of UV space that only becomes visible when the mouth opens.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facenerf.data.synthetic.head import (
    EAR_X, EYE_CENTRES, EYE_HALF_HEIGHT, EYE_HALF_WIDTH, LIP_Y, MOUTH_HALF_WIDTH, NOSE_TIP_Y,
    HeadTopology, chart_xy, gauss2, mouth_mask, smoothstep,
)

_SKIN_LIGHT = np.array([0.94, 0.78, 0.67])
_SKIN_DARK = np.array([0.42, 0.28, 0.20])
_IRIS = np.array([[0.36, 0.22, 0.12], [0.25, 0.42, 0.62], [0.33, 0.45, 0.25], [0.50, 0.36, 0.18]])
_HAIR = np.array([[0.07, 0.05, 0.04], [0.24, 0.14, 0.07], [0.62, 0.48, 0.28], [0.45, 0.18, 0.08],
                  [0.55, 0.54, 0.52]])


@dataclass(frozen=True)
class TextureParams:
    """Appearance of one identity (all colours linear-ish RGB in [0, 1])."""

    skin: np.ndarray      # [3]
    lips: np.ndarray      # [3]
    iris: np.ndarray      # [3]
    hair: np.ndarray      # [3]
    brow_darkness: float
    hairline: float       # chart mm above the brows at the forehead
    blush: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "TextureParams":
        """Draw an appearance: skin tone, lip tint, eye and hair colour, hairline, blush."""
        tone = rng.uniform(0.0, 1.0)
        skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 0.015, 3)
        lips = skin * np.array([0.78, 0.48, 0.50]) + np.array([0.08, 0.0, 0.01]) * (1 - tone)
        hair_index = rng.choice(len(_HAIR), p=[0.4, 0.3, 0.12, 0.08, 0.1])
        return cls(
            skin=np.clip(skin, 0, 1), lips=np.clip(lips, 0, 1),
            iris=_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.85, 1.1),
            hair=_HAIR[hair_index] * rng.uniform(0.85, 1.15),
            brow_darkness=rng.uniform(0.55, 0.85), hairline=rng.uniform(60.0, 78.0),
            blush=rng.uniform(0.3, 1.0),
        )


def fractal_noise(size: int, rng: np.random.Generator, base_cells: int, octaves: int,
                  persistence: float = 0.5, stretch: float = 1.0) -> np.ndarray:
    """Zero-mean multi-octave value noise [size, size], roughly in [-1, 1].

    Each octave is a random grid of ``base_cells * 2**k`` cells (``stretch`` times fewer along
    the rows, giving streaks along v) upsampled with bicubic interpolation; octaves are summed
    with amplitude ``persistence**k``.
    """
    total = np.zeros((size, size), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for k in range(octaves):
        cells = min(base_cells * 2 ** k, size)
        rows = max(int(cells / stretch), 2)
        grid = rng.uniform(-1.0, 1.0, (rows + 1, cells + 1)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= persistence
    return total / norm


def _mix(base: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` ([3] or [..., 3]) over ``base`` [..., 3] with ``alpha`` [...]."""
    return base * (1.0 - alpha[..., None]) + colour * alpha[..., None]


def _hair_mask(x: np.ndarray, y: np.ndarray, az: np.ndarray, hairline: float) -> np.ndarray:
    """Scalp hair coverage: above the hairline, down the sides and back, clear of the ears."""
    a = np.abs(az)
    line = hairline - 38.0 * smoothstep(0.55, 1.35, a) - 70.0 * smoothstep(1.9, 2.8, a)
    line = line - 4.0 * np.cos(4.0 * az)
    ears = gauss2(np.abs(x), y, EAR_X - 2.0, 2.0, 14.0, 24.0)
    return smoothstep(line - 2.5, line + 2.5, y) * (1.0 - smoothstep(0.25, 0.6, ears))


def _brow_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two arched eyebrows, thicker at the inner ends."""
    ax = np.abs(x)
    t = np.clip((ax - 14.0) / 42.0, 0.0, 1.0)            # 0 inner end, 1 outer end
    centre = 37.5 + 3.0 * np.sin(np.pi * np.clip(t * 1.1, 0, 1)) - 4.0 * t ** 2
    half = 3.2 - 1.5 * t
    band = smoothstep(half + 0.8, half - 0.8, np.abs(y - centre))
    return band * smoothstep(12.0, 16.0, ax) * smoothstep(58.0, 53.0, ax)


def _paint_eyes(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, p: TextureParams) -> np.ndarray:
    """Sclera, iris, pupil, lash line and lid crease for both eyes."""
    for ex, ey in EYE_CENTRES:
        lx, ly = (x - ex) / EYE_HALF_WIDTH, (y - ey) / EYE_HALF_HEIGHT
        ellipse = lx ** 2 + ly ** 2
        opening = smoothstep(1.0, 0.9, ellipse)
        corner_pink = np.exp(-(((x - (ex - np.sign(ex) * 11.0)) / 3.0) ** 2 + (ly / 0.8) ** 2))
        sclera = _mix(np.broadcast_to(np.array([0.93, 0.91, 0.88]), rgb.shape),
                      np.array([0.85, 0.55, 0.52]), 0.7 * corner_pink)
        rgb = _mix(rgb, sclera, opening)
        r = np.hypot(x - ex, (y - ey) * 1.0)
        iris = p.iris[None, None, :] * (0.75 + 0.35 * smoothstep(5.2, 1.5, r))[..., None]
        rgb = _mix(rgb, iris, smoothstep(5.6, 4.9, r) * opening)
        rgb = _mix(rgb, np.array([0.02, 0.02, 0.02]), smoothstep(2.4, 1.9, r) * opening)
        lash = np.exp(-((ellipse - 1.0) / 0.18) ** 2) * (0.55 + 0.45 * (ly > 0))
        rgb = _mix(rgb, np.array([0.05, 0.03, 0.03]), 0.9 * lash)
        crease = np.exp(-((np.hypot(lx, (y - ey - 1.5) / (EYE_HALF_HEIGHT * 1.9)) - 1.0) / 0.12) ** 2)
        rgb = _mix(rgb, rgb * 0.72, crease * (y > ey) * smoothstep(1.3, 0.9, np.abs(lx)))
    return rgb


def _paint_mouth(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, mouth_t: np.ndarray,
                 p: TextureParams) -> np.ndarray:
    """Lip vermilion, and inside the seam band the teeth and mouth cavity."""
    ax = np.abs(x)
    shape_u = np.clip(1.0 - (ax / (MOUTH_HALF_WIDTH + 1.0)) ** 2, 0.0, 1.0)
    top = LIP_Y + 6.5 * shape_u ** 0.55 - 1.2 * np.exp(-(x / 3.0) ** 2)
    bottom = LIP_Y - 8.0 * shape_u ** 0.7
    lips = smoothstep(top + 0.8, top - 0.8, y) * smoothstep(bottom - 0.8, bottom + 0.8, y)
    lips *= smoothstep(MOUTH_HALF_WIDTH + 1.5, MOUTH_HALF_WIDTH - 1.0, ax)
    rgb = _mix(rgb, p.lips, 0.9 * lips)
    band = ~np.isnan(mouth_t)
    t = np.where(band, mouth_t, 0.5)
    inner = mouth_mask(x) * band
    cavity = np.array([0.30, 0.07, 0.07]) * (0.6 + 0.4 * np.abs(2 * t - 1))[..., None]
    gaps = 0.5 + 0.5 * np.cos(2 * np.pi * x / 4.6)
    teeth_col = np.array([0.92, 0.89, 0.80]) * (1.0 - 0.35 * smoothstep(0.85, 1.0, gaps))[..., None]
    teeth = smoothstep(0.8, 0.85, t) * smoothstep(0.995, 0.96, t) + smoothstep(0.2, 0.15, t) * smoothstep(0.005, 0.04, t)
    teeth *= smoothstep(21.0, 15.0, ax)
    inside = _mix(cavity, teeth_col, teeth)
    rgb = _mix(rgb, inside, inner)
    return _mix(rgb, p.lips * 0.8, band * (1 - inner) * smoothstep(MOUTH_HALF_WIDTH + 3, MOUTH_HALF_WIDTH, ax))


def paint_albedo(topology: HeadTopology, params: TextureParams, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The identity's albedo texture, uint8 [size, size, 3] (row 0 = top of the atlas, v = 1)."""
    centres = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(centres, 1.0 - centres)
    az, el, mouth_t = topology.uv_to_chart(u, v)
    x, y = chart_xy(az, el)
    low = fractal_noise(size, rng, 6, 3)
    pores = fractal_noise(size, rng, max(size // 16, 8), 3, 0.6)
    skin = params.skin[None, None, :] * (1.0 + 0.035 * low)[..., None]
    redness = params.blush * (gauss2(np.abs(x), y, 42.0, -12.0, 16.0, 14.0) + 0.7 * gauss2(x, y, 0, NOSE_TIP_Y + 2, 7, 6)
                              + 0.6 * gauss2(np.abs(x), y, EAR_X, 4.0, 10.0, 20.0))
    rgb = _mix(skin, params.skin * np.array([1.0, 0.72, 0.70]), 0.35 * np.clip(redness, 0, 1))
    rgb *= (1.0 - 0.18 * smoothstep(-70.0, -115.0, y) * smoothstep(0.2, 0.0, np.cos(az) - 0.8))[..., None]
    for ex, ey in EYE_CENTRES:
        rgb *= (1.0 - 0.10 * gauss2(x, y, ex, ey - 9.0, 12.0, 4.0))[..., None]
    rgb = _paint_mouth(rgb, x, y, mouth_t, params)
    for side in (-1.0, 1.0):
        rgb = _mix(rgb, np.array([0.05, 0.03, 0.03]), 0.85 * smoothstep(1.0, 0.6, np.hypot((x - 6.5 * side) / 3.2, (y - NOSE_TIP_Y + 10.5) / 1.7)))
        rgb *= (1.0 - 0.3 * gauss2(x, y, side * EAR_X, 6.0, 4.0, 8.0))[..., None]
    streaks = fractal_noise(size, rng, max(size // 4, 8), 2, 0.6, stretch=8.0)
    hair = params.hair[None, None, :] * (0.85 + 0.25 * streaks)[..., None]
    rgb = _mix(rgb, hair, 0.97 * _hair_mask(x, y, az, params.hairline))
    rgb = _mix(rgb, params.hair * params.brow_darkness * (0.85 + 0.3 * streaks[..., None]),
               0.9 * _brow_mask(x, y))
    rgb = _paint_eyes(rgb, x, y, params)
    rgb *= (1.0 + 0.045 * pores)[..., None]
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
