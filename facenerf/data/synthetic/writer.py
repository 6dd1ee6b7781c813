"""Writes a synthetic dataset in the FaceScape layouts (what ``python -m facenerf.data.synthetic`` runs).

See :mod:`facenerf.data.synthetic` for the layout and ``data/README.md`` for every file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.config import option
from facenerf.data.meshio import ObjMesh, write_mtl, write_obj
from facenerf.data.synthetic import identity as syn
from facenerf.errors import FaceNerfError
from facenerf.io import write_bytes, write_json, write_npy, write_npz, write_text

MAX_DISTANCE_MARGIN_MM = 10.0


@dataclass(frozen=True)
class GeneratorSettings:
    """What :func:`generate_dataset` writes (the options of ``python -m facenerf.data.synthetic``)."""

    out: Path = option(Path("data"), "dataset root to write into")
    n_ids: int = option(4, "number of identities (ids 1..N)", key="ids")
    seed: int = option(0, "random seed; identity i depends on (seed, i) only")
    n_vertices: int = option(syn.DEFAULT_VERTICES, "approximate vertex count per mesh", key="vertices")
    texture_size: int = option(1024, "texture width = height in pixels")
    expressions: str = option("all", "comma list of expressions (1..20, names or k_name stems), or 'all'")
    kd: str = option("black", "MTL diffuse colour: 'black' writes Kd 0 0 0 exactly like FaceScape",
                     choices=("black", "white"))
    no_raw: bool = option(False, "skip models_raw and the alignment files")
    jpeg_quality: int = option(95, "texture JPEG quality (1-100)")
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.n_ids < 1:
            raise FaceNerfError(f"--ids must be at least 1, got {self.n_ids}")
        if self.texture_size < 16:
            raise FaceNerfError(f"--texture_size must be at least 16 pixels, got {self.texture_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise FaceNerfError(f"--jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        self.expression_indices  # noqa: B018 - an unknown expression name fails here, before anything is written

    @property
    def expression_indices(self) -> list[int]:
        """The chosen expressions as 0-based indices."""
        return syn.parse_expression_list(self.expressions)

    @property
    def black_kd(self) -> bool:
        return self.kd == "black"

    @property
    def write_raw(self) -> bool:
        return not self.no_raw


def _write_model(folder: Path, stem: str, mesh: ObjMesh, jpeg: bytes, black_kd: bool) -> None:
    """``{stem}.obj`` + ``{stem}.obj.mtl`` + ``{stem}.jpg`` in ``folder`` (FaceScape naming)."""
    write_bytes(folder / f"{stem}.jpg", jpeg, "texture")
    write_mtl(folder / f"{stem}.obj.mtl", mesh.material or "material_0", f"{stem}.jpg", black_kd)
    write_obj(folder / f"{stem}.obj", mesh)


def _raw_scan(tu: ObjMesh, rng: np.random.Generator) -> tuple[ObjMesh, list]:
    """The TU mesh plus shoulders, moved by a random similarity; returns (mesh, Rt entry)."""
    body_v, body_f = syn.shoulders(rng)
    vertices = np.concatenate([tu.vertices, body_v])
    faces = np.concatenate([tu.faces, body_f + len(tu.vertices)])
    face_uv = np.concatenate([tu.face_uv, np.zeros_like(body_f)])
    s, rot, t = syn.random_similarity(rng)
    scan = ObjMesh(s * vertices @ rot.T + t, faces, tu.uv, face_uv, tu.mtllib, tu.material)
    return scan, syn.rt_scale_entry(s, rot, t)


def _side_files(cfg: GeneratorSettings, codes: np.ndarray, landmarks: np.ndarray, max_dist: np.ndarray,
                rt_dict: dict, mapping: dict[int, int], lm_idx: np.ndarray, n_vertices: int) -> None:
    """Shape codes, 3D landmarks, predef files and the FaceScape list files.

    ``landmark_indices.npz`` holds ``v10`` (as FaceScape's) and ``n_vertices``, the vertex count of
    the meshes it indexes (FaceScape's file has no such key: 26,317, its TU models, is assumed).
    """
    write_npy(cfg.out / "factors_id.npy", codes)
    write_npy(cfg.out / "landmarks_3d.npy", landmarks)
    predef = cfg.out / "predef"
    write_npz(predef / "landmark_indices.npz", v10=lm_idx, n_vertices=np.int64(n_vertices))
    write_text(predef / "landmark_indices.txt", "\n".join(str(i) for i in lm_idx) + "\n")
    write_npy(predef / "maxDistance.npy", max_dist)
    if cfg.write_raw:
        write_json(predef / "Rt_scale_dict.json", rt_dict, indent=None)
        write_text(predef / "order_new_old.txt", "".join(f"{new} {old}\n" for new, old in mapping.items()))
    trainset = cfg.out / "facescape_trainset"
    rows = [f"{i} {'mf'[i % 2]} {20 + (i * 7) % 40} 11111" for i in range(1, cfg.n_ids + 1)]
    write_text(trainset / "info_list.txt", "\n".join(rows) + "\n")
    write_text(trainset / "publishable_list_v1.txt", ",".join(str(i) for i in range(1, cfg.n_ids + 1, 2)) + "\n")


def _info(cfg: GeneratorSettings, topology, people: list, mapping: dict[int, int]) -> dict:
    uv, _ = topology.uv_layout()
    return {
        "generator": "facenerf.data.synthetic", "seed": cfg.seed, "n_ids": cfg.n_ids,
        "vertices": topology.n_vertices, "faces": int(len(topology.faces())), "uvs": int(len(uv)),
        "texture_size": cfg.texture_size, "black_kd": cfg.black_kd,
        "expressions": [syn.EXPRESSION_STEMS[e] for e in cfg.expression_indices],
        "new_to_old_id": {str(k): v for k, v in mapping.items()},
        "identities": {str(p.identity): {"z": p.z.round(6).tolist(),
                                         "skin_rgb": p.texture.skin.round(4).tolist(),
                                         "hair_rgb": p.texture.hair.round(4).tolist(),
                                         "iris_rgb": p.texture.iris.round(4).tolist()} for p in people},
    }


def generate_dataset(cfg: GeneratorSettings) -> dict:
    """Write the dataset described by ``cfg``; returns a summary dict (also saved as JSON)."""
    from tqdm import tqdm

    expressions = cfg.expression_indices
    topology = syn.head_topology(cfg.n_vertices)
    chart = topology.vertex_chart()
    faces, (uv, face_uv) = topology.faces(), topology.uv_layout()
    lm_idx = syn.sx.landmark_indices(topology)
    mapping = syn.id_mapping(cfg.seed, cfg.n_ids)
    codes = np.zeros((cfg.n_ids + 1, syn.SHAPE_CODE_DIM))
    landmarks = np.full((cfg.n_ids + 1, len(syn.EXPRESSIONS), 68, 3), np.nan)
    max_dist = np.zeros(cfg.n_ids)
    rt_dict: dict[str, dict[str, list]] = {}
    people = []
    bar = tqdm(total=cfg.n_ids * len(expressions), desc="synthetic heads", disable=None if cfg.progress else True)
    for new_id in range(1, cfg.n_ids + 1):
        person = syn.sample_identity(cfg.seed, new_id)
        people.append(person)
        codes[new_id] = person.shape_code
        jpeg = syn.encode_jpeg(syn.texture_image(person, topology, cfg.texture_size), cfg.jpeg_quality)
        scan_rng = np.random.default_rng([cfg.seed, new_id, 99])
        for e in expressions:
            stem = syn.EXPRESSION_STEMS[e]
            vertices = syn.expression_mesh(person, e, topology, chart)
            landmarks[new_id, e] = vertices[lm_idx]
            max_dist[new_id - 1] = max(max_dist[new_id - 1], float(np.linalg.norm(vertices, axis=1).max()))
            tu = ObjMesh(vertices, faces, uv, face_uv, f"./{stem}.obj.mtl", "material_0")
            _write_model(cfg.out / "facescape_trainset" / str(new_id) / "models_reg", stem, tu, jpeg, cfg.black_kd)
            if cfg.write_raw:
                scan, entry = _raw_scan(tu, scan_rng)
                rt_dict.setdefault(str(new_id), {})[str(e + 1)] = entry
                _write_model(cfg.out / "models_raw" / str(mapping[new_id]) / stem, stem, scan, jpeg, cfg.black_kd)
            bar.update(1)
    bar.close()
    _side_files(cfg, codes, landmarks, max_dist + MAX_DISTANCE_MARGIN_MM, rt_dict, mapping, lm_idx,
                topology.n_vertices)
    info = _info(cfg, topology, people, mapping)
    write_json(cfg.out / "synthetic_info.json", info)
    return info
