"""Align raw FaceScape scans into the TU frame and clip them (the body of ``align_clip.py``).

Input (real FaceScape or :mod:`facenerf.data.synthetic`)::

    {models_raw}/{id}/{k}_{name}/{k}_{name}.obj (+ MTL + texture)      id = "old" folder id
    {predef}/Rt_scale_dict.json    {new_id: {k: [scale, Rt 3x4 | 4x4]}}, v_tu = R (scale v) + t
    {predef}/maxDistance.npy       clip radius in mm per new id; entry new_id - 1 by default
    {predef}/order_new_old.txt     rows "new old"; without it new id = folder id
    {predef}/landmark_indices.npz  key v10: 68 vertex indices (or landmark_indices.txt; TU vertex order only)

Each side file is looked for in the predef folder, then in the data root (FaceScape ships
``Rt_scale_dict.json`` and ``landmark_indices`` outside ``predef/`` too). A file the whole batch
needs that is missing is named once, before the batch starts.

For every mesh: map the folder id to the new (TU) id with explicit bounds checks; transform
with its ``Rt_scale_dict`` entry or, when that entry is missing, with a similarity fitted to 68
3D landmarks (rotation by Umeyama's method, scale from the ratio of the two point sets' spreads,
reported per file with the landmark residual at that scale); delete every face with a vertex farther than the clip
radius from the origin and drop unreferenced vertices (order kept); write
``{models_out}/{id}/{k}_{name}.obj|.obj.mtl|texture`` (material renamed to ``{k}_{name}``) and,
when landmarks are known, ``{k}_{name}.landmarks.txt`` (68 rows ``x y z``, mm, TU frame).
Problems with one file are reported and the batch continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facenerf.config import option
from facenerf.data.facescape import expression_from_stem, identity_folders
from facenerf.data.meshio import ObjMesh, clip_mesh, read_mtl, read_obj, texture_path, write_mtl, write_obj
from facenerf.data.synthetic import EXPRESSIONS, canonical_landmarks_3d
from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import copy_file, remove_stale_temporaries, write_array_text, write_json

REPORT_FILE = "align_report.json"
LANDMARK_RMS_LIMIT_MM = 15.0
FACESCAPE_TU_VERTICES = 26317   # vertices of a FaceScape TU model (the order landmark_indices v10 index)
# Landmarks that expressions hardly move (nose bridge and nose, eye corners): the landmark
# fallback is fitted and scored on these, so an open mouth or raised brows neither bend the
# scale nor count as alignment error.
RIGID_LANDMARKS = np.r_[27:36, 36, 39, 42, 45]


@dataclass(frozen=True)
class AlignOptions:
    """``max_distance_base``: 1 means entry ``new_id - 1`` holds id ``new_id`` (ids start at 1);
    0 reproduces the original code's ``maxDistance[new_id]``. ``clip_radius`` (mm) overrides the
    file; ``no_clip`` keeps every face. ``output_ids``: ``new`` (TU ids) or ``old`` (folder ids)."""

    max_distance_base: int = option(1, "maxDistance.npy entry of id n is n - base (1: ids start at 1; "
                                       "0: the original code)", choices=(0, 1))
    clip_radius: float | None = option(None, "clip radius in mm instead of maxDistance.npy")
    no_clip: bool = option(False, "keep every face")
    output_ids: str = option("new", "name output folders by TU (new) id or by the raw folder (old) id",
                             choices=("new", "old"))


@dataclass
class Predef:
    """The optional FaceScape side files (None where absent) and where they were looked for."""

    rt_scale: dict | None = None
    max_distance: np.ndarray | None = None
    new_of_old: dict[int, int] | None = None
    landmark_indices: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None     # [ids, 20, 68, 3] mm, TU frame
    searched: tuple[str, ...] = ()             # folders searched for the side files, in order
    tu_vertices: int = FACESCAPE_TU_VERTICES   # vertex count of the meshes landmark_indices index

    def where(self) -> str:
        return " or ".join(self.searched) if self.searched else "the predef folder"


@dataclass
class AlignResult:
    path: str
    out_path: str | None = None
    new_id: int | None = None
    method: str | None = None
    clip_radius: float | None = None
    faces_kept: int = 0
    faces_total: int = 0
    note: str | None = None
    error: str | None = None


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read {path}: {err.__class__.__name__}; restore the file") from err


def _load_order(path: Path) -> dict[int, int]:
    mapping = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise FaceNerfError(f"bad line {lineno} in {path}: expected 'new_id old_id'; fix the file")
        mapping[int(parts[1])] = int(parts[0])
    return mapping


def find_side_file(name: str, folders: list[Path]) -> Path | None:
    """The first ``folder / name`` that exists, or None."""
    return next((Path(f) / name for f in folders if (Path(f) / name).is_file()), None)


def read_landmark_indices(folders: list[Path]) -> tuple[np.ndarray | None, int]:
    """68 indices from ``landmark_indices.npz`` (key v10) or ``.txt``, and the vertex count they index."""
    npz, txt = find_side_file("landmark_indices.npz", folders), find_side_file("landmark_indices.txt", folders)
    try:
        if npz is not None:
            with np.load(npz, allow_pickle=False) as data:
                if "v10" in data:
                    count = int(data["n_vertices"]) if "n_vertices" in data else FACESCAPE_TU_VERTICES
                    return np.asarray(data["v10"]).reshape(-1).astype(np.int64), count
        if txt is not None:
            return np.loadtxt(txt, dtype=np.int64).reshape(-1), FACESCAPE_TU_VERTICES
    except (OSError, ValueError, KeyError) as err:
        raise FaceNerfError(f"cannot read {npz or txt}: {err}; restore or regenerate it") from err
    return None, FACESCAPE_TU_VERTICES


def load_predef(predef_dir: Path, landmarks_path: Path | None = None, data_root: Path | None = None) -> Predef:
    """Read whichever side files exist in ``predef_dir`` or else ``data_root``; corrupt files raise
    :class:`FaceNerfError`."""
    folders = [Path(predef_dir)] + ([Path(data_root)] if data_root is not None else [])
    folders = list(dict.fromkeys(f.resolve() for f in folders))
    predef = Predef(searched=tuple(str(f) for f in folders))
    rt_file = find_side_file("Rt_scale_dict.json", folders)
    if rt_file is not None:
        predef.rt_scale = _load_json(rt_file)
    try:
        max_file = find_side_file("maxDistance.npy", folders)
        if max_file is not None:
            predef.max_distance = np.load(max_file, allow_pickle=False).reshape(-1)
        predef.landmark_indices, predef.tu_vertices = read_landmark_indices(folders)
        if landmarks_path is not None and landmarks_path.is_file():
            predef.landmarks_3d = np.load(landmarks_path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as err:
        raise FaceNerfError(f"cannot read a side file in {predef.where()}: {err}; restore or regenerate it") from err
    order = find_side_file("order_new_old.txt", folders)
    if order is not None:
        predef.new_of_old = _load_order(order)
    return predef


def _missing(name: str, predef_dir: Path, predef: Predef) -> str:
    """``"predef folder X not found"`` or ``"no NAME in X or Y"`` for a side file that was not found."""
    if not predef_dir.is_dir():
        return f"predef folder {predef_dir} not found"
    return f"no {name} in {predef.where()}"


def check_predef(predef_dir: Path, predef: Predef, opts: AlignOptions) -> list[str]:
    """Raise once, before the batch, what would otherwise fail every mesh; return notes to print once."""
    if predef.max_distance is None and opts.clip_radius is None and not opts.no_clip:
        raise FaceNerfError(f"{_missing('maxDistance.npy', predef_dir, predef)}: clipping needs it; pass --predef "
                            "(or --data), --clip_radius MM or --no_clip")
    if predef.rt_scale is None:
        return [f"note: {_missing('Rt_scale_dict.json', predef_dir, predef)}: meshes are aligned to their 3D "
                "landmarks ({k}_{name}.landmarks.txt beside each OBJ, or landmark_indices)"]
    return []


def check_landmark_sources(predef: Predef, objs: list[Path]) -> None:
    """Without Rt_scale_dict.json, one FaceNerfError (before the batch) when no mesh has 3D landmarks."""
    if predef.rt_scale is None and predef.landmark_indices is None and \
            not any(_side_landmarks(obj).is_file() for obj in objs):
        raise FaceNerfError(f"Rt_scale_dict.json not found (looked in {predef.where()}) and there are no 3D "
                            "landmarks to align by instead ({k}_{name}.landmarks.txt beside each scan, or "
                            "landmark_indices.npz); copy FaceScape's Rt_scale_dict.json into the predef folder")


def landmark_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Similarity ``dst ~ s R src + t`` between two 68-landmark sets [68, 3] of different people.

    The rotation is Umeyama's. The least-squares scale of the same fit shrinks the source by the
    shapes' mismatch (it is the spread ratio times their correlation), so the scale is instead the
    ratio of the two sets' RMS spreads about their centroids (Horn's symmetric scale, Horn 1987,
    J. Opt. Soc. Am. A 4(4)): a head of the template's size keeps its size. Returns ``(s, R, t,
    rms)`` with ``rms`` the landmark residual (in ``dst`` units) at that scale.
    """
    _, rot, _ = umeyama(src, dst)
    a, b = src - src.mean(0), dst - dst.mean(0)
    scale = float(np.sqrt((b ** 2).sum() / max((a ** 2).sum(), 1e-300)))
    t = dst.mean(0) - scale * rot @ src.mean(0)
    rms = float(np.sqrt((((scale * src @ rot.T + t) - dst) ** 2).sum(1).mean()))
    return scale, rot, t, rms


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` for point sets [N, 3] (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (a ** 2).sum(1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


def new_id_for(old_id: str, predef: Predef) -> int:
    """The TU ("new") id of a folder id, with explicit checks."""
    if not old_id.isdigit() or int(old_id) < 1:
        raise FaceNerfError(f"identity folder '{old_id}' is not a positive integer id; rename it")
    if predef.new_of_old is None:
        return int(old_id)
    if int(old_id) not in predef.new_of_old:
        raise FaceNerfError(f"folder id {old_id} is not listed in order_new_old.txt; add a 'new old' row for it")
    return predef.new_of_old[int(old_id)]


def clip_radius_for(new_id: int, predef: Predef, opts: AlignOptions) -> float | None:
    """Clip radius in mm (None = no clipping), with a bounds check on ``maxDistance.npy``."""
    if opts.no_clip:
        return None
    if opts.clip_radius is not None:
        return float(opts.clip_radius)
    if predef.max_distance is None:
        raise FaceNerfError("maxDistance.npy not found in the predef folder; pass --clip_radius MM or --no_clip")
    index = new_id - opts.max_distance_base
    if not 0 <= index < len(predef.max_distance):
        raise FaceNerfError(f"maxDistance.npy has {len(predef.max_distance)} entries but id {new_id} needs entry "
                            f"{index} (--max_distance_base {opts.max_distance_base}); pass --clip_radius MM")
    return float(predef.max_distance[index])


def _rt_entry(predef: Predef, new_id: int, k: int) -> tuple[float, np.ndarray] | None:
    """``(scale, Rt [3, 4])`` for (new id, 1-based expression) or None when absent."""
    if predef.rt_scale is None:
        return None
    entry = predef.rt_scale.get(str(new_id), {}).get(str(k))
    if entry is None:
        return None
    try:
        scale, rt = float(entry[0]), np.asarray(entry[1], dtype=np.float64)
    except (TypeError, ValueError, IndexError) as err:
        raise FaceNerfError(f"Rt_scale_dict entry [{new_id}][{k}] is malformed ({err}); expected [scale, Rt]") from err
    if rt.shape not in ((3, 4), (4, 4)):
        raise FaceNerfError(f"Rt_scale_dict entry [{new_id}][{k}] has Rt of shape {rt.shape}; expected 3x4 or 4x4")
    return scale, rt[:3]


def _side_landmarks(obj_path: Path) -> Path:
    return obj_path.with_name(obj_path.name[: -len(".obj")] + ".landmarks.txt")


def _not_tu_order(obj_path: Path, mesh: ObjMesh, predef: Predef, why: str) -> FaceNerfError:
    return FaceNerfError(
        f"{why}: landmark_indices fit only meshes in TU vertex order (FaceScape TU models, "
        f"{predef.tu_vertices} vertices), and {obj_path.name} ({len(mesh.vertices)} vertices) is a scan in its own "
        f"order; add its Rt_scale_dict entry or a {_side_landmarks(obj_path).name} beside it")


def _raw_landmarks(obj_path: Path, mesh: ObjMesh, predef: Predef) -> tuple[np.ndarray | None, str]:
    """68 landmarks [68, 3] in the scan's own frame (or None) and their source: "file" or "indices"."""
    side = _side_landmarks(obj_path)
    if side.is_file():
        try:
            return np.loadtxt(side, dtype=np.float64).reshape(68, 3), "file"
        except ValueError as err:
            raise FaceNerfError(f"cannot read landmarks {side}: {err}; fix or delete it") from err
    idx = predef.landmark_indices
    if idx is None or len(idx) != 68:
        return None, ""
    if idx.max() >= len(mesh.vertices):
        raise _not_tu_order(obj_path, mesh, predef, f"landmark index {int(idx.max())} is past the mesh's last vertex")
    return mesh.vertices[idx], "indices"


def _tu_landmarks(predef: Predef, new_id: int, expression: int) -> np.ndarray | None:
    array = predef.landmarks_3d
    if array is not None and array.ndim == 4 and 0 <= new_id < array.shape[0]:
        values = array[new_id, expression]
        if np.isfinite(values).all():
            return values
    return None


def align_vertices(obj_path: Path, mesh: ObjMesh, new_id: int, expression: int,
                   predef: Predef) -> tuple[np.ndarray, np.ndarray | None, str, str | None]:
    """TU-frame vertices [V, 3], TU landmarks [68, 3] or None, method name and a note."""
    entry = _rt_entry(predef, new_id, expression + 1)
    target = _tu_landmarks(predef, new_id, expression)
    if entry is not None:
        scale, rt = entry
        aligned = (scale * mesh.vertices) @ rt[:, :3].T + rt[:, 3]
        if target is None:  # landmarks are optional here: a scan that the indices do not fit has none
            try:
                raw_lm, _ = _raw_landmarks(obj_path, mesh, predef)
            except FaceNerfError:
                raw_lm = None
            target = (scale * raw_lm) @ rt[:, :3].T + rt[:, 3] if raw_lm is not None else None
        return aligned, target, "rt_scale", None
    raw_lm, source = _raw_landmarks(obj_path, mesh, predef)
    if raw_lm is None:
        missing = "file not found" if predef.rt_scale is None else f"has no entry [{new_id}][{expression + 1}]"
        raise FaceNerfError(f"Rt_scale_dict.json {missing} and there are no 3D landmarks to align "
                            f"{obj_path.name} by; add the entry or a {_side_landmarks(obj_path).name} beside it")
    note = ("Rt_scale_dict.json not found" if predef.rt_scale is None else "Rt_scale_dict entry missing") + \
        ": aligned to 3D landmarks"
    if target is None:
        target = canonical_landmarks_3d()
        note += " of the real-size mean template (approximate)"
    scale, rot, t, rms = landmark_similarity(raw_lm[RIGID_LANDMARKS], target[RIGID_LANDMARKS])
    if rms > LANDMARK_RMS_LIMIT_MM:
        if source == "indices":
            raise _not_tu_order(obj_path, mesh, predef, f"the 68 landmark vertices do not form a face (rms {rms:.1f} mm)")
        raise FaceNerfError(f"landmark alignment failed (rms {rms:.1f} mm > {LANDMARK_RMS_LIMIT_MM} mm); "
                            f"check {_side_landmarks(obj_path).name} or add the Rt_scale_dict entry")
    note += f" (scale {scale:.4g}, rms {rms:.2g} mm over the {len(RIGID_LANDMARKS)} rigid landmarks)"
    return scale * mesh.vertices @ rot.T + t, target, "landmarks", note


def _write_output(out_dir: Path, stem: str, mesh: ObjMesh, texture: Path, black_kd: bool,
                  landmarks: np.ndarray | None) -> Path:
    tex_name = f"{stem}{texture.suffix.lower()}"
    if texture.resolve() != (out_dir / tex_name).resolve():
        copy_file(texture, out_dir / tex_name, "texture")
    mesh.mtllib, mesh.material = f"./{stem}.obj.mtl", stem
    write_mtl(out_dir / f"{stem}.obj.mtl", stem, tex_name, black_kd)
    if landmarks is not None:
        write_array_text(out_dir / f"{stem}.landmarks.txt", landmarks, fmt="%.6f", what="landmark file")
    return write_obj(out_dir / f"{stem}.obj", mesh, precision=6)   # last: an OBJ means a complete output


def align_one(obj_path: Path, old_id: str, expression: int, out_root: Path, predef: Predef,
              opts: AlignOptions) -> AlignResult:
    """Align, clip and write one raw mesh; user-caused problems end up in ``result.error``.

    An :class:`OutputError` (the output cannot be written) is raised instead: it stops the batch.
    """
    result = AlignResult(str(obj_path))
    try:
        new_id = new_id_for(old_id, predef)
        result.new_id = new_id
        radius = clip_radius_for(new_id, predef, opts)
        mesh = read_obj(obj_path)
        texture = texture_path(obj_path, mesh)
        materials = read_mtl(obj_path.parent / mesh.mtllib) if mesh.mtllib and (obj_path.parent / mesh.mtllib).is_file() else {}
        black_kd = any(m.kd == (0.0, 0.0, 0.0) for m in materials.values())
        vertices, landmarks, result.method, result.note = align_vertices(obj_path, mesh, new_id, expression, predef)
        mesh.vertices = vertices
        keep = np.ones(len(mesh.faces), dtype=bool)
        if radius is not None:
            keep = (np.linalg.norm(vertices, axis=1) <= radius)[mesh.faces].all(axis=1)
        if not keep.any():
            raise FaceNerfError(f"clipping at {radius:.1f} mm removed every face; check the alignment or --clip_radius")
        result.clip_radius, result.faces_total, result.faces_kept = radius, len(keep), int(keep.sum())
        stem = f"{expression + 1}_{EXPRESSIONS[expression]}"
        folder = out_root / (str(new_id) if opts.output_ids == "new" else old_id)
        result.out_path = str(_write_output(folder, stem, clip_mesh(mesh, keep), texture, black_kd, landmarks))
    except OutputError:
        raise
    except FaceNerfError as err:
        result.error = str(err)
    except OSError as err:
        result.error = f"{err.__class__.__name__}: {err}"
    return result


def discover_raw(models_raw: Path, ids: list[str] | None,
                 expressions: list[int] | None) -> tuple[list[tuple[Path, str, int]], list[dict]]:
    """``(obj, folder id, expression)`` per ``{id}/{k}_{name}/{k}_{name}.obj``, plus problems."""
    folders = identity_folders(models_raw, ids, "raw meshes: pass --models_raw or --data")
    items, problems = [], []
    for folder in folders:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                expression = expression_from_stem(sub.name)
            except FaceNerfError as err:
                problems.append({"path": str(sub), "error": str(err)})
                continue
            if expressions is not None and expression not in expressions:
                continue
            obj = sub / f"{sub.name}.obj"
            if not obj.is_file():
                problems.append({"path": str(obj), "error": f"mesh not found: expected {obj.name} in {sub}"})
                continue
            items.append((obj, folder.name, expression))
    return items, problems


def align_dataset(models_raw: Path, out_root: Path, predef: Predef, opts: AlignOptions,
                  ids: list[str] | None = None, expressions: list[int] | None = None,
                  progress: bool = True) -> tuple[list[AlignResult], list[dict]]:
    """Align every raw mesh; writes ``align_report.json`` in ``out_root``."""
    from tqdm import tqdm

    if opts.output_ids not in ("new", "old"):
        raise FaceNerfError(f"--output_ids must be 'new' or 'old', got '{opts.output_ids}'")
    items, problems = discover_raw(models_raw, ids, expressions)
    if not items and not problems:
        raise FaceNerfError(f"no '{{id}}/{{k}}_{{name}}/{{k}}_{{name}}.obj' meshes under {models_raw}")
    check_landmark_sources(predef, [obj for obj, _, _ in items])
    remove_stale_temporaries(out_root, recursive=True)   # left by a killed run
    results: list[AlignResult] = []
    try:
        for obj, old_id, e in tqdm(items, desc="aligning", unit="mesh", disable=None if progress else True):
            results.append(align_one(obj, old_id, e, out_root, predef, opts))
    except (KeyboardInterrupt, FaceNerfError) as err:
        stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        try:
            write_report(out_root, results, problems, opts, stopped)
        except OutputError:
            pass   # the disk is full: the error that stopped the batch is the one to show
        raise
    write_report(out_root, results, problems, opts)
    return results, problems


def write_report(out_root: Path, results: list[AlignResult], problems: list[dict], opts: AlignOptions,
                 stopped: str | None = None) -> Path:
    """``align_report.json``: per-mesh results, problems found before aligning, options, and why
    the batch ended early (``stopped``, None when it finished)."""
    report = {"results": [asdict(r) for r in results], "problems": problems, "options": asdict(opts),
              "stopped": stopped}
    return write_json(out_root / REPORT_FILE, report, what="report")


def print_summary(results: list[AlignResult], problems: list[dict], out_root: Path) -> int:
    """Print per-file notes and failures; returns 1 if anything failed, else 0."""
    ok = [r for r in results if r.error is None]
    failures = problems + [{"path": r.path, "error": r.error} for r in results if r.error]
    by_landmarks = sum(r.method == "landmarks" for r in ok)
    print(f"aligned {len(ok)} of {len(results)} meshes ({by_landmarks} from landmarks), "
          f"{len(failures)} problem(s)")
    for r in ok:
        if r.note:
            print(f"  NOTE {r.path}: {r.note}")
    for item in failures:
        print(f"  FAILED {item['path']}: {item['error']}")
    print(f"aligned meshes in {out_root}; report: {out_root / REPORT_FILE}")
    return 1 if failures else 0
