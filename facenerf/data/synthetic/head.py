"""Procedural head geometry for the synthetic FaceScape-format generator.

The head is one topologically uniform triangle mesh built on a latitude/longitude grid:

* **Chart.** Every vertex has fixed chart coordinates ``(az, el)`` in radians: azimuth around
  the vertical axis (0 = straight ahead, +Z; +pi/2 = the subject's left, +X) and elevation
  (0 = the horizontal plane through the origin, +pi/2 = top of the head). Facial features are
  placed in "chart millimetres" ``X = CHART_MM_X * az``, ``Y = CHART_MM_Y * (el - CHART_EL0)``
  (:func:`chart_xy`); on the face these are close to real millimetres.
* **Size.** The layout gives the mean head adult dimensions (see :data:`ADULT_FACE_MM`): an
  eye-centre distance of about 63 mm, a bizygomatic width of about 135 mm and a
  nasion-menton height of about 118 mm, with the eye line about 28 mm above the origin so that
  the MoFaNeRF rig's frontal view frames the face like the original renders.
* **Surface.** A vertex sits at ``radius(az, el) * direction(az, el)`` from the origin, where
  the radius is an identity-dependent ellipsoid-plus-neck with Gaussian feature bumps (nose,
  eye sockets, brow ridge, cheekbones, lips, chin, ears). Identity variation also applies a
  global anisotropic scale. Units are millimetres in the FaceScape TU frame (+Y up, +Z forward,
  +X = the subject's left); the head spans roughly +-100 mm.
* **Topology.** Rows run from the neck (bottom, an open boundary loop) to the crown, which a
  single pole vertex closes. The lip line holds three rows that coincide at rest inside the
  mouth: the upper lip's inner edge, the mouth's interior (pushed inwards) and the lower lip's
  inner edge. Opening the jaw separates them, so the mouth opens onto a textured cavity instead
  of a see-through hole. The UV atlas is the grid itself with a seam at the back of the head
  (one extra UV column) and one UV per pole triangle, so there are more ``vt`` than ``v``.

Everything here is pure numpy and deterministic; nothing is random except through the
``z`` identity vector passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Adult face dimensions the mean head is built to (millimetres, sexes averaged):
# * eye-centre (interpupillary) distance 63 mm: adult mean 63.4 mm (men 64.7, women 62.3) in
#   Dodgson, "Variation and extrema of human interpupillary distance", Proc. SPIE 5291 (2004),
#   from the 1988 US Army anthropometric survey (ANSUR, Gordon et al. 1989); Farkas' pupil-pupil
#   and (ex-ex + en-en) / 2 figures agree within 2 mm;
# * bizygomatic width (zy-zy) 135 mm: Farkas, "Anthropometry of the Head and Face", 2nd ed.
#   (1994), young North-American adults, men about 137 mm, women about 130 mm; ANSUR bizygomatic
#   breadth men 139 mm, women 130 mm;
# * face height nasion-menton (n-gn) 118 mm: Farkas (1994) men about 121-125 mm, women about
#   112-113 mm; ANSUR menton-sellion length men about 122 mm, women about 112 mm.
ADULT_FACE_MM = {"eye_centre_distance": 63.0, "bizygomatic_width": 135.0, "nasion_menton": 118.0}

# Chart millimetres per radian across (X) and up (Y): they set the face's size on the skull.
CHART_MM_X = 83.5
CHART_MM_Y = 90.0
CHART_EL0 = np.deg2rad(7.0)  # elevation of chart Y = 0 (raises the face to the TU eye line)
FACE_NARROWING = 10.0        # mm taken off the skull's half-width at the face (bizygomatic < head breadth)
# The head's centre in the TU frame (mm): forward of the origin, so the rig's frontal view sees the
# eyes at the original template's size (108.7 px apart at 512 px, see preprocess/fitting/template.py).
HEAD_CENTRE = np.array([0.0, 0.0, 18.0])
EL_MIN = np.deg2rad(-76.0)  # bottom (neck) row at the front
NECK_BREAK = np.deg2rad(-40.0)  # rows below this are pulled up at the back (neck_remap)
EL_MAX = np.deg2rad(86.0)   # last row before the crown pole
LIP_Y = -43.0             # chart Y of the lip line (rest)
NOSE_TIP_Y = -16.0        # chart Y of the nose tip (pronasale), ~33 mm below the eye line
MOUTH_HALF_WIDTH = 25.0   # chart X of the mouth corners
EYE_CENTRES = ((-32.0, 18.0), (32.0, 18.0))  # subject's right, left (chart mm)
EYE_HALF_WIDTH = 13.0
EYE_HALF_HEIGHT = 5.0
N_SHAPE_PARAMS = 12       # length of the identity vector z (standard normal)
UV_U_RANGE = (0.005, 0.995)
UV_V_RANGE = (0.01, 0.99)


def chart_xy(az: np.ndarray, el: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chart millimetres ``(X, Y)`` of chart angles ``(az, el)`` (radians)."""
    return CHART_MM_X * np.asarray(az), CHART_MM_Y * (np.asarray(el) - CHART_EL0)


def chart_angles(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chart angles ``(az, el)`` (radians) of chart millimetres ``(X, Y)``; inverse of :func:`chart_xy`."""
    return np.asarray(x) / CHART_MM_X, np.asarray(y) / CHART_MM_Y + CHART_EL0


EAR_X = CHART_MM_X * np.deg2rad(90.0)  # chart X of the ears (straight out to the sides)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss2(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """Unnormalised 2D Gaussian bump, 1 at ``(cx, cy)``."""
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def mouth_mask(x: np.ndarray) -> np.ndarray:
    """1 across the middle of the mouth, falling to 0 at the corners (chart X in mm)."""
    return smoothstep(MOUTH_HALF_WIDTH, 0.55 * MOUTH_HALF_WIDTH, np.abs(x))


def neck_remap(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Pull the neck rows up at the back so the neck ends at a roughly level cut.

    Elevations below ``NECK_BREAK`` are compressed by a factor that grows toward the back of
    the head, so the bottom row ends about 150 mm below the origin all the way round.
    """
    back = 0.5 * (1.0 - np.cos(az))
    bottom = EL_MIN + np.deg2rad(10.0) * back
    factor = (bottom - NECK_BREAK) / (EL_MIN - NECK_BREAK)
    return np.where(el < NECK_BREAK, NECK_BREAK + (el - NECK_BREAK) * factor, el)


def _warped_samples(n: int, lo: float, hi: float, centre: float, sigma: float,
                    boost: float, endpoint: bool) -> np.ndarray:
    """``n`` values in [lo, hi] spaced more densely (by ``1 + boost``) around ``centre``."""
    fine = np.linspace(lo, hi, 4097)
    density = 1.0 + boost * np.exp(-0.5 * ((fine - centre) / sigma) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, n + (0 if endpoint else 1))[: n]
    return np.interp(targets, cdf, fine)


@dataclass(frozen=True)
class HeadTopology:
    """The fixed grid shared by every identity and expression.

    Attributes:
        azimuths: [C] radians, column azimuths starting at the back (-pi), increasing.
        elevations: [R] radians, nominal row elevations, bottom (neck) to top.
        seam_rows: (lower-lip inner row, mouth-interior row, upper-lip inner row) indices.
        seam_offsets: [R] radians, each row's elevation offset from the lip line that applies
            away from the mouth (0 for rows other than the seam rows).
    """

    azimuths: np.ndarray
    elevations: np.ndarray
    seam_rows: tuple[int, int, int]
    seam_offsets: np.ndarray

    @property
    def n_cols(self) -> int:
        return int(self.azimuths.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.elevations.shape[0])

    @property
    def n_vertices(self) -> int:
        return self.n_rows * self.n_cols + 1

    def vertex_chart(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rest chart coordinates of every vertex.

        Returns ``(az [V], el [V], row [V])``; the pole has row ``n_rows`` and ``el = pi/2``.
        Seam rows are spread apart away from the mouth and coincide inside it.
        """
        rows, cols = np.meshgrid(np.arange(self.n_rows), np.arange(self.n_cols), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        az = self.azimuths[cols]
        spread = 1.0 - mouth_mask(CHART_MM_X * az)  # seam rows close up inside the mouth
        el = neck_remap(az, self.elevations[rows] + self.seam_offsets[rows] * spread)
        az = np.append(az, 0.0)
        el = np.append(el, np.pi / 2)
        row = np.append(rows, self.n_rows)
        return az, el, row

    def faces(self) -> np.ndarray:
        """[F, 3] int64 vertex indices, counter-clockwise seen from outside."""
        R, C = self.n_rows, self.n_cols
        r, c = np.meshgrid(np.arange(R - 1), np.arange(C), indexing="ij")
        r, c = r.ravel(), c.ravel()
        c1 = (c + 1) % C
        a, b, d, e = r * C + c, r * C + c1, (r + 1) * C + c1, (r + 1) * C + c
        quads = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, e], 1)])
        top = (R - 1) * C + np.arange(C)
        fan = np.stack([top, (R - 1) * C + (np.arange(C) + 1) % C, np.full(C, R * C)], 1)
        return np.concatenate([quads, fan]).astype(np.int64)

    def uv_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """UV atlas: ``(uv [T, 2], face_uv [F, 3])`` matching :meth:`faces` row for row.

        Grid UVs have ``C + 1`` columns (the back seam is duplicated) and the pole has one UV
        per fan triangle, so ``T = R * (C + 1) + C`` exceeds the vertex count.
        """
        R, C = self.n_rows, self.n_cols
        u = np.linspace(*UV_U_RANGE, C + 1)
        v = np.linspace(UV_V_RANGE[0], UV_V_RANGE[1] - 0.02, R)
        vv, uu = np.meshgrid(v, u, indexing="ij")
        pole_u = 0.5 * (u[:-1] + u[1:])
        uv = np.concatenate([np.stack([uu.ravel(), vv.ravel()], 1),
                             np.stack([pole_u, np.full(C, UV_V_RANGE[1])], 1)])
        r, c = np.meshgrid(np.arange(R - 1), np.arange(C), indexing="ij")
        r, c = r.ravel(), c.ravel()
        W = C + 1
        a, b, d, e = r * W + c, r * W + c + 1, (r + 1) * W + c + 1, (r + 1) * W + c
        quads = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, e], 1)])
        top = (R - 1) * W + np.arange(C)
        fan = np.stack([top, top + 1, R * W + np.arange(C)], 1)
        return uv, np.concatenate([quads, fan]).astype(np.int64)

    def uv_to_chart(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map atlas coordinates to rest chart coordinates for texture painting.

        Returns ``(az, el, mouth_t)`` with the same shape as ``u``; ``mouth_t`` is the position
        across the mouth's interior band (0 at the lower lip's inner edge, 1 at the upper lip's)
        and NaN outside the band.
        """
        R, C = self.n_rows, self.n_cols
        col = (u - UV_U_RANGE[0]) / (UV_U_RANGE[1] - UV_U_RANGE[0]) * C
        row = (v - UV_V_RANGE[0]) / (UV_V_RANGE[1] - 0.02 - UV_V_RANGE[0]) * (R - 1)
        az_ext = np.append(self.azimuths, np.pi)
        az = np.interp(col, np.arange(C + 1), az_ext)
        el = neck_remap(az, np.interp(row, np.arange(R), self.elevations + self.seam_offsets))
        lo, _, hi = self.seam_rows
        inside = (row >= lo) & (row <= hi)
        mouth_t = np.where(inside, (row - lo) / (hi - lo), np.nan)
        return az, el, mouth_t


def build_topology(n_cols: int = 88, n_rows: int = 66) -> HeadTopology:
    """The head grid: ``n_cols`` azimuths x ``n_rows`` rows (+2 seam rows) + 1 pole vertex.

    Columns and rows are denser on the face. The defaults give about 6,000 vertices.
    """
    if n_cols < 16 or n_rows < 16:
        raise ValueError(f"head grid too coarse ({n_cols} x {n_rows}); use at least 16 x 16")
    az = _warped_samples(n_cols, -np.pi, np.pi, 0.0, 0.55, 2.6, endpoint=False)
    base = _warped_samples(n_rows, EL_MIN, EL_MAX, chart_angles(0.0, -4.0)[1], 0.5, 2.2, endpoint=True)
    lip_el = float(chart_angles(0.0, LIP_Y)[1])
    k = int(np.argmin(np.abs(base - lip_el)))
    k = min(max(k, 1), n_rows - 2)
    base[k] = lip_el
    spacing = 0.5 * min(base[k] - base[k - 1], base[k + 1] - base[k])
    elevations = np.concatenate([base[:k], [lip_el] * 3, base[k + 1:]])
    offsets = np.zeros_like(elevations)
    offsets[k], offsets[k + 2] = -spacing, spacing
    return HeadTopology(az, elevations, (k, k + 1, k + 2), offsets)


def vertices_for_size(n_vertices: int) -> tuple[int, int]:
    """Grid size ``(n_cols, n_rows)`` giving roughly ``n_vertices`` vertices (4:3 aspect).

    The column count is even, so one column runs down the face's midline (nose, lips, chin).
    """
    n_vertices = max(int(n_vertices), 400)
    rows = int(round(np.sqrt(n_vertices * 0.75)))
    cols = 2 * int(round(n_vertices / max(rows + 2, 1) / 2))
    return max(cols, 16), max(rows, 16)


# ----------------------------------------------------------------------------- identity shape

@dataclass(frozen=True)
class ShapeParams:
    """Geometric identity parameters derived from a standard-normal vector ``z [12]``."""

    scale: np.ndarray   # [3] global x, y, z scale
    jaw_width: float
    nose: float
    nose_width: float
    brow: float
    cheek: float
    chin: float
    lips: float
    socket: float
    face_depth: float   # mm added to the frontal semi-axis

    @classmethod
    def from_z(cls, z: np.ndarray) -> "ShapeParams":
        z = np.clip(np.asarray(z, dtype=np.float64).reshape(-1), -3.0, 3.0)
        if z.shape[0] != N_SHAPE_PARAMS:
            raise ValueError(f"identity vector must have {N_SHAPE_PARAMS} entries, got {z.shape[0]}")
        return cls(
            scale=np.array([1 + 0.05 * z[0], 1 + 0.04 * z[1], 1 + 0.04 * z[2]]),
            jaw_width=1 + 0.07 * z[3], nose=1 + 0.2 * z[4], nose_width=1 + 0.15 * z[5],
            brow=1 + 0.3 * z[6], cheek=1 + 0.3 * z[7], chin=1 + 0.3 * z[8],
            lips=1 + 0.25 * z[9], socket=1 + 0.25 * z[10], face_depth=4.0 * z[11],
        )


def directions(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Unit directions [N, 3] for chart coordinates (0, 0) -> +Z, az = +pi/2 -> +X."""
    ce = np.cos(el)
    return np.stack([ce * np.sin(az), np.sin(el), ce * np.cos(az)], axis=-1)


def narrow(dz: np.ndarray) -> np.ndarray:
    """How much of :data:`FACE_NARROWING` applies at forward component ``dz`` of a direction: 0 at
    the back of the head, 1 at the face, linear in between so the skull's sides stay smooth (a
    sharper change leaves a ridge that the relighting's smoothed normals cannot follow)."""
    return 0.5 * (np.clip(dz, -1.0, 1.0) + 1.0)


def _base_radius(d: np.ndarray, p: ShapeParams) -> np.ndarray:
    """Ellipsoidal skull/face blended with a neck cylinder, radius along unit ``d [N, 3]``."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    front = smoothstep(-0.35, 0.35, dz)
    lower = smoothstep(0.1, -0.6, dy)
    a = 76.0 - FACE_NARROWING * narrow(dz) - 21.0 * lower * front * p.jaw_width ** 2 - 8.0 * lower * (1.0 - front)
    b = np.where(dy > 0, 120.0, 78.0 + 44.0 * front)
    c = np.where(dz > 0, 93.0 + p.face_depth, 102.0)
    power = 2.0 + 0.6 * smoothstep(0.0, 0.5, dy)   # boxier cranium, rounder face
    head = ((np.abs(dx) / a) ** power + (np.abs(dy) / b) ** power + (np.abs(dz) / c) ** power) ** (-1.0 / power)
    neck_rx, neck_rz, neck_z = 47.0, 50.0, -18.0
    qa = (dx / neck_rx) ** 2 + (dz / neck_rz) ** 2
    qb = -2.0 * dz * neck_z / neck_rz ** 2
    qc = (neck_z / neck_rz) ** 2 - 1.0
    neck = (-qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))) / (2 * np.maximum(qa, 1e-9))
    neck = np.where(dy < 0, neck, 0.0)
    return (head ** 10 + np.minimum(neck, 400.0) ** 10) ** 0.1


def _nose(x: np.ndarray, y: np.ndarray, p: ShapeParams) -> np.ndarray:
    """Radial height (mm) of the nose: bridge, tip and alae."""
    tip = NOSE_TIP_Y
    along = np.clip((30.0 - y) / (30.0 - tip), 0.0, 1.0)    # 0 at the bridge top, 1 at the tip
    height = p.nose * (5.0 + 19.0 * along ** 1.6)
    width = p.nose_width * (5.0 + 6.0 * along)
    profile = np.exp(-0.5 * (x / width) ** 2)
    vertical = smoothstep(34.0, 24.0, y) * smoothstep(tip - 8.0, tip + 1.0, y)
    alae = 6.5 * p.nose_width * (gauss2(x, y, -12.0 * p.nose_width, tip - 1.0, 5.0, 4.5)
                                 + gauss2(x, y, 12.0 * p.nose_width, tip - 1.0, 5.0, 4.5))
    return height * profile * vertical + alae * smoothstep(tip - 10.0, tip - 2.0, y)


def feature_offsets(az: np.ndarray, el: np.ndarray, p: ShapeParams) -> np.ndarray:
    """Radial feature displacement in mm at chart coordinates ``(az, el)`` [N]."""
    x, y = chart_xy(az, el)
    off = _nose(x, y, p)
    for ex, ey in EYE_CENTRES:
        off -= 11.0 * p.socket * gauss2(x, y, ex, ey, 14.0, 9.0)
        off += 5.5 * gauss2(x, y, ex, ey, 9.0, 5.0)          # eyeball under the lids
        off += 4.5 * p.cheek * gauss2(x, y, 1.35 * ex, -8.0, 13.0, 11.0)
        off -= 3.0 * gauss2(x, y, 1.6 * ex, -40.0, 14.0, 14.0)  # hollow below the cheekbone
        off -= 3.0 * gauss2(x, y, 2.15 * ex, 40.0, 10.0, 14.0)  # temple
    off += 5.0 * p.brow * gauss2(x, y, 0.0, 35.0, 42.0, 5.5)
    off -= 3.5 * gauss2(x, y, 0.0, 27.0, 9.0, 5.0)            # nasion
    off += 4.0 * p.lips * gauss2(x, y, 0.0, LIP_Y + 5.0, 20.0, 4.0)
    off += 4.5 * p.lips * gauss2(x, y, 0.0, LIP_Y - 6.0, 17.0, 4.5)
    off -= 2.5 * gauss2(x, y, 0.0, LIP_Y - 15.0, 14.0, 4.0)   # labiomental fold
    off += 3.0 * gauss2(x, y, 0.0, LIP_Y + 12.0, 4.0, 4.0)    # columella / philtrum
    off += 6.0 * p.chin * gauss2(x, y, 0.0, -76.0, 13.0, 9.0)
    for side in (-1.0, 1.0):                                  # ears
        off += 11.0 * gauss2(x, y, side * EAR_X, 4.0, 8.0, 17.0)
        off += 5.0 * gauss2(x, y, side * (EAR_X + 9.0), 8.0, 5.0, 12.0)
    return off


def mouth_depth(az: np.ndarray, row: np.ndarray, topology: HeadTopology) -> np.ndarray:
    """Inward displacement (mm) of the mouth-interior seam row (0 for other rows)."""
    inside = row == topology.seam_rows[1]
    return np.where(inside, 14.0 * mouth_mask(CHART_MM_X * az), 0.0)


def embed(az: np.ndarray, el: np.ndarray, row: np.ndarray, topology: HeadTopology,
          p: ShapeParams, extra_radius: np.ndarray | float = 0.0) -> np.ndarray:
    """Vertex positions [N, 3] mm for (possibly displaced) chart coordinates.

    ``extra_radius`` [N] (mm) is added along the viewing-from-origin direction (expressions).
    """
    d = directions(az, el)
    radius = (_base_radius(d, p) + feature_offsets(az, el, p) - mouth_depth(az, row, topology)
              + extra_radius)
    return d * radius[:, None] * p.scale[None, :] + HEAD_CENTRE
