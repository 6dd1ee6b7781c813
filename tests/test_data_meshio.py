"""Tests of OBJ/MTL reading and writing (facenerf.data.meshio)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from facenerf.data import synthetic as syn
from facenerf.data.meshio import (
    ObjMesh, _slow_parse, clip_mesh, read_mtl, read_obj, texture_path, unwelded_arrays, write_mtl, write_obj,
)
from facenerf.errors import FaceNerfError


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A textured synthetic head written as OBJ + MTL (Kd 0 0 0) + JPG."""
    folder = tmp_path_factory.mktemp("mesh")
    topo = syn.head_topology(900)
    vertices, faces = syn.mean_head_mesh(900)
    uv, face_uv = topo.uv_layout()
    mesh = ObjMesh(vertices, faces, uv, face_uv, "./1_neutral.obj.mtl", "material_0")
    Image.fromarray(syn.texture_image(syn.sample_identity(0, 1), topo, 32)).save(folder / "1_neutral.jpg")
    write_mtl(folder / "1_neutral.obj.mtl", "material_0", "1_neutral.jpg", black_kd=True)
    write_obj(folder / "1_neutral.obj", mesh)
    return folder / "1_neutral.obj", mesh


def test_round_trip_keeps_order_and_counts_from_the_file(head):
    path, mesh = head
    text = path.read_text().splitlines()
    n_v = sum(line.startswith("v ") for line in text)
    n_vt = sum(line.startswith("vt ") for line in text)
    n_f = sum(line.startswith("f ") for line in text)
    back = read_obj(path)
    assert (len(back.vertices), len(back.uv), len(back.faces)) == (n_v, n_vt, n_f)
    assert n_vt > n_v                                   # the seam duplicates UVs
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_array_equal(back.face_uv, mesh.face_uv)
    assert back.mtllib == "./1_neutral.obj.mtl" and back.material == "material_0"


def test_trimesh_reads_the_same_vertices_in_file_order(head):
    path, mesh = head
    loaded = trimesh.load(path, process=False, maintain_order=True, force="mesh")
    ours = read_obj(path)
    assert len(loaded.vertices) == len(ours.vertices)
    np.testing.assert_allclose(loaded.vertices, ours.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, ours.faces)
    # the FaceScape trap: trimesh takes the black Kd as the colour, our reader keeps the texture
    assert tuple(loaded.visual.material.diffuse[:3]) == (0, 0, 0)
    assert read_mtl(path.with_name("1_neutral.obj.mtl"))["material_0"].kd == (0.0, 0.0, 0.0)
    assert texture_path(path, ours) == path.with_name("1_neutral.jpg")


def test_fast_and_line_by_line_parsers_agree(head):
    path, _ = head
    fast = read_obj(path)
    slow = _slow_parse(path.read_text().splitlines(), path)
    np.testing.assert_array_equal(fast.vertices, slow.vertices)
    np.testing.assert_array_equal(fast.faces, slow.faces)
    np.testing.assert_array_equal(fast.face_uv, slow.face_uv)


def test_polygons_negative_indices_and_normals(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
                    "f -4/-4/1 -3/-3/1 -2/-2/1 -1/-1/1\n")
    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.face_uv, [[0, 1, 2], [0, 2, 3]])
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1//1 2//1 3//1\n")
    assert read_obj(path).face_uv is None


@pytest.mark.parametrize("body, message", [
    ("v 0 0 0\nv 1 0 0\nf 1 2 3\n", "line 3: face refers to vertex 3"),
    ("v 0 0 x\n", "line 1: non-numeric 'v'"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4: a face needs at least 3 corners"),
    ("# nothing\n", "no vertices found"),
])
def test_corrupt_obj_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.obj"
    path.write_text(body)
    with pytest.raises(FaceNerfError, match=message):
        read_obj(path)


def test_binary_or_missing_files_are_user_errors(tmp_path):
    (tmp_path / "bin.obj").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FaceNerfError, match="cannot read OBJ"):
        read_obj(tmp_path / "bin.obj")
    with pytest.raises(FaceNerfError, match="mesh not found"):
        read_obj(tmp_path / "none.obj")


def test_missing_texture_is_reported(head, tmp_path):
    path, mesh = head
    copy = tmp_path / "x.obj"
    write_obj(copy, ObjMesh(mesh.vertices, mesh.faces, mesh.uv, mesh.face_uv, "./x.obj.mtl", "m"))
    write_mtl(tmp_path / "x.obj.mtl", "m", "x.jpg")
    with pytest.raises(FaceNerfError, match="texture missing for .*x.obj"):
        texture_path(copy, read_obj(copy))
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")     # fallback by stem without a valid map_Kd
    assert texture_path(copy, read_obj(copy)) == tmp_path / "x.png"


def test_clip_keeps_order_and_unwelded_arrays_split_seams(head):
    _, mesh = head
    keep = mesh.vertices[mesh.faces].mean(axis=1)[:, 1] > 0      # upper half of the head
    clipped = clip_mesh(mesh, keep)
    used = np.unique(mesh.faces[keep])
    np.testing.assert_array_equal(clipped.vertices, mesh.vertices[used])
    np.testing.assert_array_equal(clipped.vertices[clipped.faces], mesh.vertices[mesh.faces[keep]])
    np.testing.assert_array_equal(clipped.uv[clipped.face_uv], mesh.uv[mesh.face_uv[keep]])
    positions, uv, tris = unwelded_arrays(mesh)
    assert len(positions) >= len(mesh.uv) - 1 and len(positions) > len(mesh.vertices)
    np.testing.assert_array_equal(positions[tris], mesh.vertices[mesh.faces])
    np.testing.assert_array_equal(uv[tris], mesh.uv[mesh.face_uv])
