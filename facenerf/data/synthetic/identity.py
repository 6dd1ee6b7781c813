"""Procedural FaceScape-format heads: meshes, textures, raw scans and side files.

Run ``python -m facenerf.data.synthetic --ids 4 --out data/`` to write a small dataset in the
real FaceScape layouts (documented in ``data/README.md``)::

    {out}/facescape_trainset/{id}/models_reg/{k}_{name}.obj|.obj.mtl|.jpg   TU models, ids 1..N
    {out}/facescape_trainset/info_list.txt, publishable_list_v1.txt
    {out}/models_raw/{old_id}/{k}_{name}/{k}_{name}.obj|.obj.mtl|.jpg     "multi-view" scans
    {out}/predef/Rt_scale_dict.json, maxDistance.npy, order_new_old.txt,
                 landmark_indices.npz (key v10), landmark_indices.txt
    {out}/factors_id.npy          [N + 1, 50] shape codes, row = id, row 0 unused (zeros)
    {out}/landmarks_3d.npy        [N + 1, 20, 68, 3] mm, TU frame, row 0 unused (NaN)
    {out}/synthetic_info.json     generator settings and per-identity parameters

Geometry lives in :mod:`facenerf.data.synthetic.head` (grid, shape space), expressions and
landmarks in :mod:`facenerf.data.synthetic.expressions`, textures in
:mod:`facenerf.data.synthetic.texture`, the files in :mod:`facenerf.data.synthetic.writer`. Everything is deterministic per ``--seed``; identity
``i`` depends only on ``(seed, i)``, so a larger ``--ids`` run extends a smaller one.

The module also exports the mean-identity template used by the wild-photo preprocessing:
:data:`EXPRESSIONS`, :func:`canonical_landmarks_3d` and :func:`mean_head_mesh`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from facenerf.data.synthetic import expressions as sx
from facenerf.data.synthetic import head as sh
from facenerf.data.synthetic.texture import TextureParams, paint_albedo
from facenerf.errors import FaceNerfError

EXPRESSIONS: tuple[str, ...] = sx.EXPRESSIONS   # 20 names, index 0 = neutral (MoFaNeRF order)
EXPRESSION_STEMS: tuple[str, ...] = tuple(sx.expression_stems())  # "1_neutral" ... "20_brow_lower"
DEFAULT_VERTICES = 6000
SHAPE_CODE_DIM = 50
_CODE_STD = 1.0 / np.sqrt(847.0)   # spread of FaceScape's identity factors (see mofanerf.md 1.5)


def head_topology(n_vertices: int = DEFAULT_VERTICES) -> sh.HeadTopology:
    """The shared head grid with roughly ``n_vertices`` vertices."""
    return sh.build_topology(*sh.vertices_for_size(n_vertices))


def mean_head_mesh(n_vertices: int = DEFAULT_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """The mean identity's neutral head: ``(vertices [V, 3] float64 mm, faces [F, 3] int64)``.

    TU frame (+Y up, +Z forward, +X the subject's left), faces counter-clockwise from outside.
    """
    topology = head_topology(n_vertices)
    params = sh.ShapeParams.from_z(np.zeros(sh.N_SHAPE_PARAMS))
    vertices = sx.deform(topology, params, np.zeros(len(sx.DEFORMERS)))
    return vertices, topology.faces()


def canonical_landmarks_3d(n_vertices: int = DEFAULT_VERTICES) -> np.ndarray:
    """The mean identity's neutral 68 landmarks [68, 3] in mm (iBUG order, TU frame).

    These are the vertices of :func:`mean_head_mesh` at :func:`landmark_indices`.
    """
    vertices, _ = mean_head_mesh(n_vertices)
    return vertices[landmark_indices(n_vertices)]


def landmark_indices(n_vertices: int = DEFAULT_VERTICES) -> np.ndarray:
    """68 vertex indices (iBUG order) of the landmarks on the grid of ``n_vertices``."""
    return sx.landmark_indices(head_topology(n_vertices))


@dataclass(frozen=True)
class SyntheticIdentity:
    """One synthetic person: shape, appearance and personal expression weights."""

    identity: int
    z: np.ndarray                 # [12] standard-normal shape parameters
    shape_code: np.ndarray        # [50] FaceScape-like identity factor
    texture: TextureParams
    expression_table: np.ndarray  # [20, K] deformer weights
    texture_seed: int

    @property
    def shape(self) -> sh.ShapeParams:
        return sh.ShapeParams.from_z(self.z)


def _code_basis() -> np.ndarray:
    """Fixed [49, 12] orthonormal map from shape parameters to the 49 free code dimensions."""
    basis, _ = np.linalg.qr(np.random.default_rng(20211204).standard_normal((SHAPE_CODE_DIM - 1, sh.N_SHAPE_PARAMS)))
    return basis


def sample_identity(seed: int, identity: int) -> SyntheticIdentity:
    """Identity ``identity`` (>= 1) of the dataset drawn with ``seed``; depends on nothing else."""
    if identity < 1:
        raise ValueError(f"identity ids start at 1 (FaceScape numbering), got {identity}")
    rng = np.random.default_rng([int(seed), int(identity)])
    z = rng.standard_normal(sh.N_SHAPE_PARAMS)
    code = np.empty(SHAPE_CODE_DIM)
    code[0] = -_CODE_STD + 0.0014 * rng.standard_normal()
    code[1:] = _CODE_STD * (_code_basis() @ z) * np.sqrt((SHAPE_CODE_DIM - 1) / sh.N_SHAPE_PARAMS)
    return SyntheticIdentity(identity, z, code, TextureParams.sample(rng), sx.jittered_table(rng),
                             int(rng.integers(2 ** 31)))


def expression_mesh(person: SyntheticIdentity, expression: int, topology: sh.HeadTopology,
                    chart=None) -> np.ndarray:
    """Vertices [V, 3] mm of ``person`` in expression ``expression`` (0-based)."""
    return sx.deform(topology, person.shape, person.expression_table[expression], chart)


def texture_image(person: SyntheticIdentity, topology: sh.HeadTopology, size: int) -> np.ndarray:
    """The person's albedo texture, uint8 [size, size, 3]."""
    return paint_albedo(topology, person.texture, size, np.random.default_rng(person.texture_seed))


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 [H, W, 3] image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def random_similarity(rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    """A random map TU -> scan frame ``v_scan = s * R @ v_tu + t``: ``(s, R [3, 3], t [3])``.

    ``s`` lies in [0.02, 0.05] and ``t`` within +-3 units, like structure-from-motion scans.
    """
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    rot = q * np.sign(np.diag(r))
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    return float(rng.uniform(0.02, 0.05)), rot, rng.uniform(-3.0, 3.0, 3)


def rt_scale_entry(s: float, rot: np.ndarray, t: np.ndarray) -> list:
    """The ``Rt_scale_dict.json`` entry ``[scale, Rt 3x4]`` that inverts :func:`random_similarity`.

    FaceScape's rule ``v_tu = Rt[:, :3] @ (scale * v_scan) + Rt[:, 3]`` recovers the TU mesh.
    """
    rt = np.concatenate([rot.T, (-rot.T @ t / s)[:, None]], axis=1)
    return [1.0 / s, rt.tolist()]


def shoulders(rng: np.random.Generator, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A coarse shoulder/torso ellipsoid below the neck (mm), clipped away by align_clip.

    Returns ``(vertices [M, 3], faces [G, 3])`` with faces 0-based within this part.
    """
    theta, phi = np.meshgrid(np.linspace(0.1, np.pi - 0.1, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                             indexing="ij")
    radii = np.array([200.0, 60.0, 105.0]) * rng.uniform(0.95, 1.05, 3)
    pts = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1)
    verts = (pts * radii).reshape(-1, 3) + np.array([0.0, -275.0, -12.0])
    i, j = np.meshgrid(np.arange(n - 1), np.arange(2 * n), indexing="ij")
    a = i * 2 * n + j
    b = i * 2 * n + (j + 1) % (2 * n)
    faces = np.concatenate([np.stack([a, a + 2 * n, b], -1).reshape(-1, 3),
                            np.stack([b, a + 2 * n, b + 2 * n], -1).reshape(-1, 3)])
    return verts, faces


def id_mapping(seed: int, n_ids: int) -> dict[int, int]:
    """A deterministic permuted ``new id -> old id`` map (old ids are 1..N + N // 2, with gaps)."""
    rng = np.random.default_rng([int(seed), 0, 7])
    olds = np.sort(rng.choice(np.arange(1, n_ids + n_ids // 2 + 2), size=n_ids, replace=False))
    rng.shuffle(olds)
    return {new: int(old) for new, old in enumerate(olds, start=1)}


def parse_expression_list(text: str | None) -> list[int]:
    """0-based expression indices from a comma list of names, stems or 1-based numbers."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return list(range(len(EXPRESSIONS)))
    chosen = []
    for token in str(text).replace(" ", "").split(","):
        if token.isdigit() and 1 <= int(token) <= len(EXPRESSIONS):
            chosen.append(int(token) - 1)
        elif token in EXPRESSIONS:
            chosen.append(EXPRESSIONS.index(token))
        elif token in EXPRESSION_STEMS:
            chosen.append(EXPRESSION_STEMS.index(token))
        else:
            raise FaceNerfError(f"unknown expression '{token}': use 1..20, a name like 'smile' "
                                "or a stem like '2_smile'")
    return sorted(set(chosen))
