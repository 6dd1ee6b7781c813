"""Writes a synthetic dataset in the FaceScape layouts (the body of ``python -m facenerf.data.synthetic``).

See :mod:`facenerf.data.synthetic` for the layout and ``data/README.md`` for every file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facenerf.data.synthetic import identity as syn
from facenerf.data.meshio import ObjMesh, write_mtl, write_obj
from facenerf.errors import FaceNerfError
from facenerf.io import write_bytes, write_json, write_npy, write_npz, write_text

MAX_DISTANCE_MARGIN_MM = 10.0


@dataclass
class GeneratorSettings:
    """What :func:`generate_dataset` writes."""

    out: Path
    n_ids: int = 4
    seed: int = 0
    n_vertices: int = syn.DEFAULT_VERTICES
    texture_size: int = 1024
    expressions: list[int] = field(default_factory=lambda: list(range(len(syn.EXPRESSIONS))))
    black_kd: bool = True
    write_raw: bool = True
    jpeg_quality: int = 95
    progress: bool = True


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
                rt_dict: dict, mapping: dict[int, int], lm_idx: np.ndarray) -> None:
    """Shape codes, 3D landmarks, predef files and the FaceScape list files."""
    write_npy(cfg.out / "factors_id.npy", codes)
    write_npy(cfg.out / "landmarks_3d.npy", landmarks)
    predef = cfg.out / "predef"
    write_npz(predef / "landmark_indices.npz", v10=lm_idx)
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
        "expressions": [syn.EXPRESSION_STEMS[e] for e in cfg.expressions],
        "new_to_old_id": {str(k): v for k, v in mapping.items()},
        "identities": {str(p.identity): {"z": p.z.round(6).tolist(),
                                         "skin_rgb": p.texture.skin.round(4).tolist(),
                                         "hair_rgb": p.texture.hair.round(4).tolist(),
                                         "iris_rgb": p.texture.iris.round(4).tolist()} for p in people},
    }


def generate_dataset(cfg: GeneratorSettings) -> dict:
    """Write the dataset described by ``cfg``; returns a summary dict (also saved as JSON)."""
    from tqdm import tqdm

    if cfg.n_ids < 1:
        raise FaceNerfError(f"--ids must be at least 1, got {cfg.n_ids}")
    if cfg.texture_size < 16:
        raise FaceNerfError(f"--texture_size must be at least 16 pixels, got {cfg.texture_size}")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise FaceNerfError(f"--jpeg_quality must be in 1..100, got {cfg.jpeg_quality}")
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
    bar = tqdm(total=cfg.n_ids * len(cfg.expressions), desc="synthetic heads", disable=not cfg.progress)
    for new_id in range(1, cfg.n_ids + 1):
        person = syn.sample_identity(cfg.seed, new_id)
        people.append(person)
        codes[new_id] = person.shape_code
        jpeg = syn.encode_jpeg(syn.texture_image(person, topology, cfg.texture_size), cfg.jpeg_quality)
        scan_rng = np.random.default_rng([cfg.seed, new_id, 99])
        for e in cfg.expressions:
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
    _side_files(cfg, codes, landmarks, max_dist + MAX_DISTANCE_MARGIN_MM, rt_dict, mapping, lm_idx)
    info = _info(cfg, topology, people, mapping)
    write_json(cfg.out / "synthetic_info.json", info)
    return info


def build_parser():
    """ConfigArgParse parser of ``python -m facenerf.data.synthetic``."""
    from facenerf.config import make_parser, str2bool

    parser = make_parser("Write procedural heads in the FaceScape layouts (TU models, raw scans, "
                         "predef files, shape codes).", prog="python -m facenerf.data.synthetic")
    parser.add_argument("--out", default="data", help="dataset root to write into")
    parser.add_argument("--ids", type=int, default=4, help="number of identities (ids 1..N)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; identity i depends on (seed, i) only")
    parser.add_argument("--vertices", type=int, default=syn.DEFAULT_VERTICES, help="approximate vertex count per mesh")
    parser.add_argument("--texture_size", type=int, default=1024, help="texture width = height in pixels")
    parser.add_argument("--expressions", default="all",
                        help="comma list of expressions (1..20, names or k_name stems), or 'all'")
    parser.add_argument("--kd", choices=("black", "white"), default="black",
                        help="MTL diffuse colour: 'black' writes Kd 0 0 0 exactly like FaceScape")
    parser.add_argument("--no_raw", action="store_true", help="skip models_raw and the alignment files")
    parser.add_argument("--jpeg_quality", type=int, default=95, help="texture JPEG quality (1-100)")
    parser.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate from parsed arguments and say where the files went."""
    from facenerf.config import ensure_writable_dir, save_config

    out = ensure_writable_dir(args.out)
    cfg = GeneratorSettings(out=out, n_ids=args.ids, seed=args.seed, n_vertices=args.vertices,
                            texture_size=args.texture_size,
                            expressions=syn.parse_expression_list(args.expressions),
                            black_kd=args.kd == "black", write_raw=not args.no_raw,
                            jpeg_quality=args.jpeg_quality, progress=args.progress)
    info = generate_dataset(cfg)
    save_config(args, out, "synthetic_config.txt")
    print(f"wrote {cfg.n_ids} identities x {len(cfg.expressions)} expressions "
          f"({info['vertices']} vertices, {info['faces']} faces, {info['uvs']} UVs) to {out}")
    print(f"  TU models:  {out / 'facescape_trainset'}")
    if cfg.write_raw:
        print(f"  raw scans:  {out / 'models_raw'}   (align with: python align_clip.py --data {out})")
    print(f"  side files: {out / 'predef'}, {out / 'factors_id.npy'}, {out / 'landmarks_3d.npy'}")
    return 0
