"""Align raw FaceScape scans into the TU frame and clip them (the body of ``align_clip.py``).

Input (real FaceScape or :mod:`facenerf.data.synthetic`)::

    {models_raw}/{id}/{k}_{name}/{k}_{name}.obj (+ MTL + texture)      id = "old" folder id
    {predef}/Rt_scale_dict.json    {new_id: {k: [scale, Rt 3x4 | 4x4]}}, v_tu = R (scale v) + t
    {predef}/maxDistance.npy       clip radius in mm per new id; entry new_id - 1 by default
    {predef}/order_new_old.txt     rows "new old"; without it new id = folder id
    {predef}/landmark_indices.npz  key v10: 68 vertex indices (only for scans in TU topology)

For every mesh: map the folder id to the new (TU) id with explicit bounds checks; transform
with its ``Rt_scale_dict`` entry or, when that entry is missing, with a similarity fitted to 68
3D landmarks (Umeyama; reported per file); delete every face with a vertex farther than the clip
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
    """The optional FaceScape side files (None where absent)."""

    rt_scale: dict | None = None
    max_distance: np.ndarray | None = None
    new_of_old: dict[int, int] | None = None
    landmark_indices: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None     # [ids, 20, 68, 3] mm, TU frame


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


def load_predef(predef_dir: Path, landmarks_path: Path | None = None) -> Predef:
    """Read whichever side files exist; corrupt files raise :class:`FaceNerfError`."""
    predef = Predef()
    if (predef_dir / "Rt_scale_dict.json").is_file():
        predef.rt_scale = _load_json(predef_dir / "Rt_scale_dict.json")
    try:
        if (predef_dir / "maxDistance.npy").is_file():
            predef.max_distance = np.load(predef_dir / "maxDistance.npy", allow_pickle=False).reshape(-1)
        if (predef_dir / "landmark_indices.npz").is_file():
            with np.load(predef_dir / "landmark_indices.npz", allow_pickle=False) as npz:
                predef.landmark_indices = np.asarray(npz["v10"]).reshape(-1) if "v10" in npz else None
        if landmarks_path is not None and landmarks_path.is_file():
            predef.landmarks_3d = np.load(landmarks_path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as err:
        raise FaceNerfError(f"cannot read a predef file in {predef_dir}: {err}; restore or regenerate it") from err
    if (predef_dir / "order_new_old.txt").is_file():
        predef.new_of_old = _load_order(predef_dir / "order_new_old.txt")
    return predef


def check_predef(predef_dir: Path, predef: Predef, opts: AlignOptions) -> list[str]:
    """Raise once, before the batch, what would otherwise fail every mesh; return notes to print once."""
    where = f"predef folder {predef_dir} not found" if not predef_dir.is_dir() else f"no maxDistance.npy in {predef_dir}"
    if predef.max_distance is None and opts.clip_radius is None and not opts.no_clip:
        raise FaceNerfError(f"{where}: clipping needs it; pass --predef (or --data), --clip_radius MM or --no_clip")
    if predef.rt_scale is None:
        missing = f"predef folder {predef_dir} not found" if not predef_dir.is_dir() else \
            f"no Rt_scale_dict.json in {predef_dir}"
        return [f"note: {missing}: meshes are aligned to their 3D landmarks ({{stem}}.landmarks.txt beside "
                "each OBJ, or landmark_indices.npz)"]
    return []


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


def _raw_landmarks(obj_path: Path, mesh: ObjMesh, predef: Predef) -> np.ndarray | None:
    """68 landmarks [68, 3] in the scan's own frame, or None."""
    side = obj_path.with_name(obj_path.name[: -len(".obj")] + ".landmarks.txt")
    if side.is_file():
        try:
            return np.loadtxt(side, dtype=np.float64).reshape(68, 3)
        except ValueError as err:
            raise FaceNerfError(f"cannot read landmarks {side}: {err}; fix or delete it") from err
    idx = predef.landmark_indices
    if idx is not None and len(idx) == 68 and idx.max() < len(mesh.vertices):
        return mesh.vertices[idx]
    return None


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
    raw_lm = _raw_landmarks(obj_path, mesh, predef)
    target = _tu_landmarks(predef, new_id, expression)
    if entry is not None:
        scale, rt = entry
        aligned = (scale * mesh.vertices) @ rt[:, :3].T + rt[:, 3]
        landmarks = target if target is not None else (
            (scale * raw_lm) @ rt[:, :3].T + rt[:, 3] if raw_lm is not None else None)
        return aligned, landmarks, "rt_scale", None
    if raw_lm is None:
        raise FaceNerfError(f"no Rt_scale_dict entry for id {new_id} expression {expression + 1} and no 3D "
                            "landmarks to align with; add the entry or a {stem}.landmarks.txt beside the OBJ")
    note = "Rt_scale_dict entry missing: aligned to 3D landmarks"
    if target is None:
        target = canonical_landmarks_3d()
        note += " of the mean template (approximate)"
    scale, rot, t = umeyama(raw_lm, target)
    rms = float(np.sqrt((((scale * raw_lm @ rot.T + t) - target) ** 2).sum(1).mean()))
    if rms > LANDMARK_RMS_LIMIT_MM:
        raise FaceNerfError(f"landmark alignment failed (rms {rms:.1f} mm > {LANDMARK_RMS_LIMIT_MM} mm); "
                            "check the landmarks or add the Rt_scale_dict entry")
    return scale * mesh.vertices @ rot.T + t, target, "landmarks", f"{note} (rms {rms:.2g} mm)"


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
    remove_stale_temporaries(out_root, recursive=True)   # left by a killed run
    results: list[AlignResult] = []
    try:
        for obj, old_id, e in tqdm(items, desc="aligning", unit="mesh", disable=not progress):
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
