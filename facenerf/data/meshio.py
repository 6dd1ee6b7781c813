"""Reading and writing textured OBJ meshes in the FaceScape layout (OBJ + MTL + texture).

The reader keeps the file's ``v`` order and counts exactly (FaceScape landmark and symmetry
indices refer to raw ``v`` lines, which general mesh loaders may split or reorder at UV seams),
triangulates polygons as fans, accepts negative (relative) indices and ``v/vt``, ``v/vt/vn``,
``v//vn`` face corners, and raises :class:`FaceNerfError` naming the file and line for anything
it cannot read.

The MTL's diffuse colour is recorded but a ``map_Kd`` texture is always used as the albedo:
FaceScape ships ``Kd 0 0 0`` materials, which would otherwise render black.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError
from facenerf.io import write_text


@dataclass
class ObjMesh:
    """A triangle mesh as stored in an OBJ file.

    Attributes:
        vertices: [V, 3] float64, in file order.
        faces: [F, 3] int64, 0-based vertex indices.
        uv: [T, 2] float64 texture coordinates (``vt`` lines), or an empty [0, 2] array.
        face_uv: [F, 3] int64, 0-based ``vt`` indices, or None when faces carry no UVs.
        mtllib: the ``mtllib`` file name as written in the OBJ (None if absent).
        material: the last ``usemtl`` name (None if absent).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    face_uv: np.ndarray | None = None
    mtllib: str | None = None
    material: str | None = None


@dataclass
class Material:
    """One MTL material: diffuse colour and texture path (absolute, resolved beside the MTL)."""

    name: str
    kd: tuple[float, float, float] = (1.0, 1.0, 1.0)
    texture: Path | None = None


def _corrupt(path: Path, lineno: int, what: str) -> FaceNerfError:
    return FaceNerfError(f"corrupt OBJ {path} line {lineno}: {what}; re-export or re-download the file")


def _parse_corner(token: str, n_v: int, n_vt: int, path: Path, lineno: int) -> tuple[int, int]:
    """One face corner ``v[/vt[/vn]]`` -> 0-based (v, vt) with vt = -1 when absent."""
    parts = token.split("/")
    try:
        v = int(parts[0])
        vt = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        raise _corrupt(path, lineno, f"bad face index '{token}'") from None
    v = v - 1 if v > 0 else n_v + v
    vt = (vt - 1 if vt > 0 else n_vt + vt) if vt != 0 else -1
    if not 0 <= v < n_v:
        raise _corrupt(path, lineno, f"face refers to vertex {parts[0]} but only {n_v} are defined before it")
    if vt != -1 and not 0 <= vt < n_vt:
        raise _corrupt(path, lineno, f"face refers to texture coordinate {parts[1]} but only {n_vt} exist")
    return v, vt


def _floats(parts: list[str], count: int, path: Path, lineno: int) -> list[float]:
    try:
        values = [float(p) for p in parts[1:1 + count]]
    except ValueError:
        raise _corrupt(path, lineno, f"non-numeric '{parts[0]}' values") from None
    if len(values) < count:
        raise _corrupt(path, lineno, f"'{parts[0]}' needs {count} numbers")
    return values


def _read_text(file: Path) -> str:
    if not file.is_file():
        raise FaceNerfError(f"mesh not found: {file} (check the path)")
    try:
        return file.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise FaceNerfError(f"cannot read OBJ {file}: {err.__class__.__name__}; is it a text OBJ file?") from err


def _fast_parse(lines: list[str]) -> ObjMesh | None:
    """Vectorised parse of the common case (3-number ``v``, triangles, one corner format).

    Returns None whenever the file strays from that case, or an index is out of range, so the
    line-by-line parser can handle it (and name the offending line).
    """
    v_lines = [ln[2:] for ln in lines if ln.startswith("v ")]
    vt_lines = [ln[3:] for ln in lines if ln.startswith("vt ")]
    f_lines = [ln[2:] for ln in lines if ln.startswith("f ")]
    if not v_lines or not f_lines:
        return None
    first = f_lines[0].split()
    if len(first) != 3 or "//" in first[0]:
        return None
    slashes = first[0].count("/")
    per_corner = 1 if slashes == 0 else 2
    joined = " ".join(f_lines)
    if joined.count("/") != 3 * slashes * len(f_lines):
        return None
    if slashes == 2:
        joined = " ".join(c.rsplit("/", 1)[0] for c in joined.split())
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # malformed numbers raise instead of truncating
        try:
            verts = np.fromstring(" ".join(v_lines), dtype=np.float64, sep=" ")
            uvs = np.fromstring(" ".join(vt_lines), dtype=np.float64, sep=" ") if vt_lines else np.zeros(0)
            idx = np.fromstring(joined.replace("/", " "), dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if verts.size != 3 * len(v_lines) or (vt_lines and uvs.size != 2 * len(vt_lines)) or \
            idx.size != 3 * per_corner * len(f_lines):
        return None
    idx = idx.reshape(-1, 3, per_corner)
    counts = (len(v_lines), len(vt_lines))
    fixed = [np.where(idx[..., k] > 0, idx[..., k] - 1, counts[k] + idx[..., k]) for k in range(per_corner)]
    if any(((f < 0) | (f >= counts[k])).any() or (idx[..., k] == 0).any() for k, f in enumerate(fixed)):
        return None
    return ObjMesh(verts.reshape(-1, 3), fixed[0], uvs.reshape(-1, 2),
                   fixed[1] if per_corner == 2 else None)


def _header(lines: list[str]) -> tuple[str | None, str | None]:
    """``(mtllib, last usemtl)`` of an OBJ."""
    mtllib = material = None
    for line in lines:
        if line.startswith("mtllib ") or line.startswith("mtllib\t"):
            mtllib = line.split(None, 1)[1].strip()
        elif line.startswith("usemtl"):
            parts = line.split()
            material = parts[1] if len(parts) > 1 else material
    return mtllib, material


def read_obj(path: str | Path) -> ObjMesh:
    """Parse an OBJ file (see the module docstring for what is supported)."""
    file = Path(path)
    lines = _read_text(file).splitlines()
    mesh = _fast_parse(lines) or _slow_parse(lines, file)
    mesh.mtllib, mesh.material = _header(lines)
    return mesh


def _slow_parse(lines: list[str], file: Path) -> ObjMesh:
    """Line-by-line parse: polygons, mixed corner formats, precise error messages."""
    verts, uvs, faces, face_uv = [], [], [], []
    for lineno, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0]
        if key == "v":
            verts.append(_floats(parts, 3, file, lineno))
        elif key == "vt":
            uvs.append(_floats(parts, 2, file, lineno))
        elif key == "f":
            corners = [_parse_corner(t, len(verts), len(uvs), file, lineno) for t in parts[1:]]
            if len(corners) < 3:
                raise _corrupt(file, lineno, "a face needs at least 3 corners")
            for k in range(1, len(corners) - 1):
                tri = (corners[0], corners[k], corners[k + 1])
                faces.append([c[0] for c in tri])
                face_uv.append([c[1] for c in tri])
    if not verts or not faces:
        raise FaceNerfError(f"corrupt OBJ {file}: no {'vertices' if not verts else 'faces'} found; "
                            "re-export or re-download the file")
    fuv = np.asarray(face_uv, dtype=np.int64)
    has_uv = bool(uvs) and bool((fuv >= 0).all())
    return ObjMesh(np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64),
                   np.asarray(uvs, dtype=np.float64).reshape(-1, 2), fuv if has_uv else None)


def read_mtl(path: str | Path) -> dict[str, Material]:
    """Parse an MTL file into ``{name: Material}``; texture paths resolve beside the MTL."""
    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"material file not found: {file} (it is named by the OBJ's mtllib line)")
    materials: dict[str, Material] = {}
    current: Material | None = None
    for lineno, line in enumerate(file.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "newmtl":
            current = materials.setdefault(parts[1] if len(parts) > 1 else "", Material(parts[1] if len(parts) > 1 else ""))
        elif current is None:
            continue
        elif parts[0] == "Kd" and len(parts) >= 4:
            try:
                current.kd = (float(parts[1]), float(parts[2]), float(parts[3]))
            except ValueError:
                raise FaceNerfError(f"corrupt MTL {file} line {lineno}: bad Kd values; fix or re-export it") from None
        elif parts[0] == "map_Kd" and len(parts) > 1:
            current.texture = file.parent / line.split(None, 1)[1].strip().split()[-1]
    return materials


def texture_path(obj_path: str | Path, mesh: ObjMesh) -> Path:
    """The albedo texture of ``mesh`` (read from ``obj_path``): its MTL's ``map_Kd``.

    Falls back to an image with the OBJ's stem next to it (``{stem}.jpg|.png``) when the OBJ has
    no usable MTL. Raises :class:`FaceNerfError` when no texture exists.
    """
    obj_path = Path(obj_path)
    candidates: list[Path] = []
    if mesh.mtllib:
        mtl_file = obj_path.parent / mesh.mtllib
        if mtl_file.is_file():
            materials = read_mtl(mtl_file)
            chosen = materials.get(mesh.material or "") or next(iter(materials.values()), None)
            if chosen is not None and chosen.texture is not None:
                candidates.append(chosen.texture)
    stem = obj_path.name.split(".obj")[0]
    candidates += [obj_path.with_name(stem + ext) for ext in (".jpg", ".png", ".jpeg")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FaceNerfError(f"texture missing for {obj_path}: expected {candidates[0].name} beside it "
                        "(named by map_Kd in the MTL); restore the texture image")


def write_mtl(path: str | Path, material: str, texture_name: str, black_kd: bool = False) -> Path:
    """Write a one-material MTL; ``black_kd`` writes ``Kd 0 0 0`` exactly like FaceScape."""
    file = Path(path)
    kd = "0 0 0" if black_kd else "1 1 1"
    text = (f"newmtl {material}\nKa 0 0 0\nKd {kd}\nKs 0 0 0\nNs 0\nillum 1\nd 1\n"
            f"map_Kd {texture_name}\n")
    write_text(file, text, "material file")
    return file


def write_obj(path: str | Path, mesh: ObjMesh, precision: int = 6) -> Path:
    """Write ``mesh`` as an OBJ (``v``, ``vt``, ``f v/vt`` or ``f v``) with its mtllib/usemtl.

    Positions are written with ``precision`` decimals (6 keeps millimetre meshes exact to 1e-6).
    """
    file = Path(path)
    lines = [f"mtllib {mesh.mtllib}"] if mesh.mtllib else []
    fmt = f"{{:.{precision}f}}"
    v_fmt = "v " + " ".join([fmt] * 3)
    lines += [v_fmt.format(*row) for row in mesh.vertices]
    lines += ["vt {:.6f} {:.6f}".format(*row) for row in mesh.uv]
    if mesh.material:
        lines.append(f"usemtl {mesh.material}")
    f1 = mesh.faces + 1
    if mesh.face_uv is not None:
        t1 = mesh.face_uv + 1
        lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f1.tolist(), t1.tolist())]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in f1.tolist()]
    write_text(file, "\n".join(lines) + "\n", "mesh")
    return file


def clip_mesh(mesh: ObjMesh, keep_face: np.ndarray) -> ObjMesh:
    """Keep faces where ``keep_face [F]`` is true; drop unreferenced vertices and UVs, keeping order."""
    faces = mesh.faces[keep_face]
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    clipped = replace(mesh, vertices=mesh.vertices[used], faces=remap[faces])
    if mesh.face_uv is not None:
        face_uv = mesh.face_uv[keep_face]
        used_t = np.zeros(len(mesh.uv), dtype=bool)
        used_t[face_uv.ravel()] = True
        remap_t = np.cumsum(used_t) - 1
        clipped = replace(clipped, uv=mesh.uv[used_t], face_uv=remap_t[face_uv])
    return clipped


def unwelded_arrays(mesh: ObjMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-corner arrays for GPU rendering: one vertex per distinct (v, vt) pair.

    Returns ``(positions [N, 3], uv [N, 2], triangles [F, 3])``. Without UVs all UVs are 0.
    """
    if mesh.face_uv is None:
        return mesh.vertices, np.zeros((len(mesh.vertices), 2)), mesh.faces
    pairs = np.stack([mesh.faces.ravel(), mesh.face_uv.ravel()], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return mesh.vertices[unique[:, 0]], mesh.uv[unique[:, 1]], inverse.reshape(-1, 3)
