"""Tests of the procedural FaceScape-format generator (facenerf.data.synthetic*)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facenerf.data import synthetic as syn
from facenerf.data.synthetic import __main__ as synthetic_cli
from facenerf.data.synthetic import expressions as sx
from facenerf.data.meshio import read_mtl, read_obj
from facenerf.data.synthetic.writer import GeneratorSettings, generate_dataset
from facenerf.errors import FaceNerfError

SMALL = 1500


def _signed_volume(vertices, faces):
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _boundary_loops(faces):
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    assert (counts <= 2).all(), "non-manifold edge"
    parent = {v: v for v in boundary.ravel()}

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in boundary:
        parent[find(a)] = find(b)
    return len({find(v) for v in parent})


def test_expression_names_match_facescape_order():
    assert len(syn.EXPRESSIONS) == 20 and syn.EXPRESSIONS[0] == "neutral"
    assert syn.EXPRESSION_STEMS[3] == "4_anger" and syn.EXPRESSION_STEMS[19] == "20_brow_lower"
    assert syn.parse_expression_list("1,smile,3_mouth_stretch") == [0, 1, 2]
    with pytest.raises(FaceNerfError, match="unknown expression"):
        syn.parse_expression_list("21")


def test_mean_head_is_a_closed_outward_head_in_the_tu_frame():
    vertices, faces = syn.mean_head_mesh(SMALL)
    assert vertices.shape[1] == 3 and faces.shape[1] == 3 and faces.max() == len(vertices) - 1
    assert _signed_volume(vertices, faces) > 0          # counter-clockwise seen from outside
    assert _boundary_loops(faces) == 1                  # only the neck is open
    span = vertices.max(0) - vertices.min(0)
    assert 140 < span[0] < 200 and 150 < span[2] < 230  # about a head wide and deep, in mm
    assert np.abs(vertices).max() < 260


def test_canonical_landmarks_sit_where_a_face_has_them():
    lm = syn.canonical_landmarks_3d(SMALL)
    assert lm.shape == (68, 3)
    assert np.argmax(lm[:, 2]) in range(27, 36)         # the nose is the most forward part
    assert lm[8, 1] == lm[:, 1].min()                   # chin is the lowest landmark
    assert lm[36, 0] < lm[39, 0] < 0 < lm[42, 0] < lm[45, 0]   # right eye at -X (iBUG order)
    np.testing.assert_allclose(lm[36], lm[45] * [-1, 1, 1], atol=2.0)   # symmetric
    assert lm[48, 1] < lm[33, 1] < lm[39, 1] < lm[19, 1]  # mouth < nose < eyes < brows
    assert len(set(syn.landmark_indices(SMALL).tolist())) == 68


def test_identities_are_deterministic_and_distinct():
    a, b = syn.sample_identity(3, 1), syn.sample_identity(3, 1)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.shape_code, b.shape_code)
    c = syn.sample_identity(3, 2)
    assert np.abs(a.z - c.z).max() > 0.1
    topo = syn.head_topology(SMALL)
    assert np.abs(syn.expression_mesh(a, 0, topo) - syn.expression_mesh(c, 0, topo)).max() > 2.0
    assert a.shape_code.shape == (50,) and abs(a.shape_code[0] + 1 / np.sqrt(847)) < 0.01


def test_expressions_are_real_deformations():
    topo = syn.head_topology(SMALL)
    person = syn.sample_identity(0, 1)
    idx = sx.landmark_indices(topo)
    lm = {e: syn.expression_mesh(person, syn.EXPRESSIONS.index(e), topo)[idx]
          for e in ("neutral", "mouth_stretch", "eye_closed", "smile", "brow_raiser", "lip_puckerer")}
    n = lm["neutral"]
    assert lm["mouth_stretch"][8, 1] < n[8, 1] - 10            # jaw drops > 1 cm
    assert lm["mouth_stretch"][66, 1] < lm["mouth_stretch"][62, 1] - 10   # lips part
    assert abs(n[66, 1] - n[62, 1]) < 1.0                      # closed at rest
    open_eye = n[37, 1] - n[41, 1]
    assert open_eye > 3 and lm["eye_closed"][37, 1] - lm["eye_closed"][41, 1] < 0.3 * open_eye
    assert lm["smile"][48, 1] > n[48, 1] + 3 and lm["smile"][54, 1] > n[54, 1] + 3
    assert lm["brow_raiser"][19, 1] > n[19, 1] + 3
    width = lambda m: m[54, 0] - m[48, 0]
    assert width(lm["lip_puckerer"]) < 0.8 * width(n)
    meshes = np.stack([syn.expression_mesh(person, e, topo) for e in range(20)])
    diffs = np.abs(meshes[:, None] - meshes[None]).max(axis=(2, 3))
    assert (diffs + np.eye(20) * 1e9).min() > 1.0              # all 20 differ by > 1 mm somewhere


def test_texture_has_skin_eyes_and_is_deterministic():
    topo = syn.head_topology(SMALL)
    person = syn.sample_identity(0, 2)
    tex = syn.texture_image(person, topo, 128)
    assert tex.shape == (128, 128, 3) and tex.dtype == np.uint8
    np.testing.assert_array_equal(tex, syn.texture_image(person, topo, 128))
    bright = (tex.min(axis=2) > 200).sum()      # sclera
    dark = (tex.max(axis=2) < 40).sum()         # pupils, nostrils, lash lines
    assert bright > 5 and dark > 5
    assert tex.reshape(-1, 3).std(0).min() > 5  # not a flat colour


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    cfg = GeneratorSettings(out=out, n_ids=2, seed=5, n_vertices=SMALL, texture_size=64,
                            expressions="1,3,18", progress=False)
    return out, generate_dataset(cfg)


def test_generator_writes_the_facescape_layout(dataset):
    out, info = dataset
    reg = out / "facescape_trainset" / "2" / "models_reg"
    obj = read_obj(reg / "3_mouth_stretch.obj")
    text = (reg / "3_mouth_stretch.obj").read_text()
    assert obj.vertices.shape[0] == text.count("\nv ") + text.startswith("v ") == info["vertices"]
    assert len(obj.uv) > len(obj.vertices)                    # UV seam like TU models
    assert "mtllib ./3_mouth_stretch.obj.mtl" in text and "usemtl material_0" in text
    material = read_mtl(reg / "3_mouth_stretch.obj.mtl")["material_0"]
    assert material.kd == (0.0, 0.0, 0.0) and material.texture == reg / "3_mouth_stretch.jpg"
    assert (reg / "3_mouth_stretch.jpg").read_bytes()[:2] == b"\xff\xd8"
    codes = np.load(out / "factors_id.npy")
    assert codes.shape == (3, 50) and not codes[0].any()      # row = id, row 0 unused
    np.testing.assert_allclose(codes[2], syn.sample_identity(5, 2).shape_code)
    lm = np.load(out / "landmarks_3d.npy")
    assert lm.shape == (3, 20, 68, 3) and np.isnan(lm[0]).all() and np.isnan(lm[1, 1]).all()
    idx = np.load(out / "predef" / "landmark_indices.npz")["v10"]
    np.testing.assert_allclose(lm[2, 2], obj.vertices[idx], atol=1e-5)


def test_raw_scans_invert_exactly_with_rt_scale_dict(dataset):
    out, _ = dataset
    rt = json.loads((out / "predef" / "Rt_scale_dict.json").read_text())
    order = dict(tuple(map(int, line.split()))[::-1] for line in (out / "predef" / "order_new_old.txt").read_text().splitlines())
    assert sorted(order.values()) == [1, 2]
    old_of_new = {new: old for old, new in order.items()}
    raw = read_obj(out / "models_raw" / str(old_of_new[1]) / "18_eye_closed" / "18_eye_closed.obj")
    tu = read_obj(out / "facescape_trainset" / "1" / "models_reg" / "18_eye_closed.obj")
    scale, matrix = rt["1"]["18"][0], np.asarray(rt["1"]["18"][1])
    assert 20 <= scale <= 50 and matrix.shape == (3, 4)
    back = (scale * raw.vertices) @ matrix[:, :3].T + matrix[:, 3]
    np.testing.assert_allclose(back[: len(tu.vertices)], tu.vertices, atol=2e-3)
    assert len(raw.vertices) > len(tu.vertices)               # shoulders added to the scan
    max_dist = np.load(out / "predef" / "maxDistance.npy")
    assert max_dist.shape == (2,)
    assert np.linalg.norm(tu.vertices, axis=1).max() < max_dist[0] < np.linalg.norm(back, axis=1).max()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(FaceNerfError, match="--ids must be at least 1"):
        synthetic_cli.main(["--ids", "0", "--out", str(tmp_path), "--progress", "false"])
    with pytest.raises(FaceNerfError, match="unknown expression"):
        synthetic_cli.main(["--ids", "1", "--out", str(tmp_path), "--expressions", "frown"])
