"""Tests of align_clip: alignment, clipping, id mapping and per-file error reports."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from facenerf.data.meshio import read_obj
from facenerf.data.synthetic.writer import GeneratorSettings, generate_dataset
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import align

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("align_src")
    generate_dataset(GeneratorSettings(out=out, n_ids=2, seed=11, n_vertices=900, texture_size=32,
                                       expressions="1,3,17", progress=False))
    return out


@pytest.fixture()
def data(raw_data, tmp_path):
    """A fresh copy a test may damage."""
    copy = tmp_path / "data"
    shutil.copytree(raw_data, copy)
    return copy


def _old_ids(data: Path) -> dict[int, str]:
    rows = [line.split() for line in (data / "predef" / "order_new_old.txt").read_text().splitlines()]
    return {int(new): old for new, old in rows}


def _run_cli(argv):
    sys.path.insert(0, str(ROOT))
    try:
        import align_clip
    finally:
        sys.path.remove(str(ROOT))
    return align_clip.main(argv)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(68, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q if np.linalg.det(q) > 0 else -q
    dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 3.0])
    scale, r, t = align.umeyama(src, dst)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(r, rot, atol=1e-10)
    np.testing.assert_allclose(t, [1.0, -2.0, 3.0], atol=1e-10)


def test_cli_recovers_tu_geometry_and_clips_the_shoulders(data, capsys):
    assert _run_cli(["--data", str(data), "--progress", "false"]) == 0
    assert "aligned 6 of 6 meshes" in capsys.readouterr().out
    for new_id in (1, 2):
        for stem in ("1_neutral", "3_mouth_stretch", "17_cheek_blowing"):
            tu = read_obj(data / "facescape_trainset" / str(new_id) / "models_reg" / f"{stem}.obj")
            out = read_obj(data / "models_out" / str(new_id) / f"{stem}.obj")
            assert out.vertices.shape == tu.vertices.shape      # shoulders gone, head complete
            rel = np.abs(out.vertices - tu.vertices).max() / np.abs(tu.vertices).max()
            assert rel < 1e-5
            np.testing.assert_array_equal(out.faces, tu.faces)
            np.testing.assert_array_equal(out.uv[out.face_uv], tu.uv[tu.face_uv])
    mtl = (data / "models_out" / "1" / "1_neutral.obj.mtl").read_text()
    assert "newmtl 1_neutral" in mtl and "map_Kd 1_neutral.jpg" in mtl
    lm = np.loadtxt(data / "models_out" / "2" / "3_mouth_stretch.landmarks.txt")
    np.testing.assert_allclose(lm, np.load(data / "landmarks_3d.npy")[2, 2], atol=1e-5)


def test_missing_rt_entry_falls_back_to_landmarks_and_is_reported(data, capsys):
    rt_file = data / "predef" / "Rt_scale_dict.json"
    rt = json.loads(rt_file.read_text())
    del rt["1"]["3"]
    rt_file.write_text(json.dumps(rt))
    assert _run_cli(["--data", str(data), "--progress", "false", "--ids", _old_ids(data)[1]]) == 0
    out = capsys.readouterr().out
    assert "(1 from landmarks)" in out and "NOTE" in out and "Rt_scale_dict entry missing" in out
    tu = read_obj(data / "facescape_trainset" / "1" / "models_reg" / "3_mouth_stretch.obj")
    got = read_obj(data / "models_out" / "1" / "3_mouth_stretch.obj")
    assert np.abs(got.vertices - tu.vertices).max() / np.abs(tu.vertices).max() < 1e-5


def test_bad_files_are_reported_and_the_batch_finishes(data, capsys):
    old = _old_ids(data)
    raw = data / "models_raw"
    (raw / old[1] / "1_neutral" / "1_neutral.jpg").unlink()                          # missing texture
    (raw / old[1] / "3_mouth_stretch" / "3_mouth_stretch.obj").write_text("v 1 2\n")  # corrupt OBJ
    (raw / old[2] / "21_yawn").mkdir()                                                # unknown expression
    rt = json.loads((data / "predef" / "Rt_scale_dict.json").read_text())
    del rt["2"]["1"]                                           # missing entry, no landmarks anywhere
    (data / "predef" / "Rt_scale_dict.json").write_text(json.dumps(rt))
    (data / "predef" / "landmark_indices.npz").unlink()
    (data / "predef" / "landmark_indices.txt").unlink()
    (data / "landmarks_3d.npy").unlink()
    assert _run_cli(["--data", str(data), "--progress", "false"]) == 1
    out = capsys.readouterr().out
    assert "aligned 3 of 6 meshes" in out and "4 problem(s)" in out
    assert "texture missing" in out and "corrupt OBJ" in out and "unknown expression '21_yawn'" in out
    assert "Rt_scale_dict.json has no entry [2][1] and there are no 3D landmarks to align 1_neutral.obj" in out
    report = json.loads((data / "models_out" / "align_report.json").read_text())
    assert len(report["problems"]) == 1 and sum(r["error"] is not None for r in report["results"]) == 3
    assert (data / "models_out" / "2" / "3_mouth_stretch.obj").is_file()


def test_ids_map_through_order_file_with_bounds_checks(data):
    predef = align.load_predef(data / "predef")
    old = _old_ids(data)
    assert align.new_id_for(old[2], predef) == 2
    with pytest.raises(FaceNerfError, match="not listed in order_new_old.txt"):
        align.new_id_for("999", predef)
    with pytest.raises(FaceNerfError, match="not a positive integer"):
        align.new_id_for("0", predef)
    opts = align.AlignOptions()
    assert align.clip_radius_for(2, predef, opts) == pytest.approx(predef.max_distance[1])
    with pytest.raises(FaceNerfError, match="maxDistance.npy has 2 entries but id 3 needs entry 2"):
        align.clip_radius_for(3, predef, opts)
    original = align.AlignOptions(max_distance_base=0)        # the original's maxDistance[new_id]
    with pytest.raises(FaceNerfError, match="needs entry 2"):
        align.clip_radius_for(2, predef, original)
    assert align.clip_radius_for(3, predef, align.AlignOptions(clip_radius=120.0)) == 120.0


def test_old_folder_ids_and_clip_radius(data):
    predef = align.load_predef(data / "predef", data / "landmarks_3d.npy")
    old = _old_ids(data)
    opts = align.AlignOptions(clip_radius=100.0, output_ids="old")
    results, problems = align.align_dataset(data / "models_raw", data / "out", predef, opts,
                                            ids=[old[1]], expressions=[0], progress=False)
    assert not problems and results[0].error is None
    mesh = read_obj(data / "out" / old[1] / "1_neutral.obj")
    assert np.linalg.norm(mesh.vertices, axis=1).max() <= 100.0
    assert 0 < results[0].faces_kept < results[0].faces_total


def _similarity(seed: int):
    from facenerf.data import synthetic as syn

    return syn.random_similarity(np.random.default_rng(seed))


def test_landmark_fallback_keeps_real_size_and_reports_the_residual_at_that_scale():
    """A real-size head, scaled and rotated like a scan, comes back at its size (error < 2%)."""
    from dataclasses import replace

    from facenerf.data import synthetic as syn

    template = syn.canonical_landmarks_3d()
    rigid = align.RIGID_LANDMARKS
    for seed in range(5):                        # the mean head, 1 mm landmark noise
        s, rot, t = _similarity(seed)
        noise = np.random.default_rng(seed).normal(0.0, 1.0, template.shape)
        raw = s * (template + noise) @ rot.T + t
        scale, r, _, rms = align.landmark_similarity(raw[rigid], template[rigid])
        assert abs(scale * s - 1.0) < 0.02
        np.testing.assert_allclose(r, rot.T, atol=0.03)
        assert 0.5 < rms < 2.0                   # the noise, in real millimetres
    topology, idx = syn.head_topology(), syn.landmark_indices()
    errors = []
    for i in range(1, 21):                       # other faces of the template's overall size
        person = syn.sample_identity(5, i)
        z = person.z.copy()
        z[:3] = 0.0
        landmarks = syn.expression_mesh(replace(person, z=z), 0, topology)[idx]
        s, rot, t = _similarity(100 + i)
        scale, _, _, _ = align.landmark_similarity((s * landmarks @ rot.T + t)[rigid], template[rigid])
        errors.append(scale * s - 1.0)
    assert abs(np.mean(errors)) < 0.02 and np.max(np.abs(errors)) < 0.12


def test_symmetric_scale_is_not_shrunk_by_a_shape_mismatch():
    rng = np.random.default_rng(3)
    template = rng.normal(size=(13, 3)) * 20.0
    other = template + rng.normal(size=(13, 3)) * 8.0      # another face, same spread on average
    other *= np.sqrt((template ** 2).sum() / (other - other.mean(0)) .__pow__(2).sum())
    least_squares, _, _ = align.umeyama(other, template)
    symmetric, _, _, _ = align.landmark_similarity(other, template)
    assert symmetric == pytest.approx(1.0, abs=0.02)
    assert least_squares < 0.95                               # the least-squares scale shrinks it


def test_side_files_in_the_data_root_and_tu_models_for_render(data, capsys):
    """FaceScape keeps Rt_scale_dict.json and landmark_indices outside predef/: they are found."""
    for name in ("Rt_scale_dict.json", "landmark_indices.npz"):
        shutil.move(data / "predef" / name, data / name)
    assert _run_cli(["--data", str(data), "--progress", "false"]) == 0
    assert "aligned 6 of 6 meshes (0 from landmarks)" in capsys.readouterr().out
    predef = align.load_predef(data / "predef", data_root=data)
    assert predef.rt_scale is not None and predef.landmark_indices is not None and predef.tu_vertices > 0


def test_a_missing_side_file_is_named_once_before_the_batch(data, capsys):
    (data / "predef" / "Rt_scale_dict.json").unlink()
    (data / "predef" / "landmark_indices.npz").unlink()
    (data / "predef" / "landmark_indices.txt").unlink()
    with pytest.raises(FaceNerfError, match=r"Rt_scale_dict.json not found \(looked in .*predef or .*\)") as err:
        _run_cli(["--data", str(data), "--progress", "false"])
    assert "{" not in str(err.value).replace("{k}_{name}", "")
    (data / "predef" / "maxDistance.npy").unlink()
    with pytest.raises(FaceNerfError, match="no maxDistance.npy in .*predef or .*--clip_radius MM or --no_clip"):
        _run_cli(["--data", str(data), "--progress", "false"])


def test_landmark_indices_on_a_scan_in_its_own_vertex_order_get_their_own_message(data, capsys):
    from facenerf.data.meshio import write_obj

    old = _old_ids(data)
    obj = data / "models_raw" / old[1] / "1_neutral" / "1_neutral.obj"
    mesh = read_obj(obj)
    order = np.random.default_rng(0).permutation(len(mesh.vertices))     # a scan's own vertex order
    mesh.faces = np.argsort(order)[mesh.faces]
    mesh.vertices = mesh.vertices[order]
    write_obj(obj, mesh)
    rt = json.loads((data / "predef" / "Rt_scale_dict.json").read_text())
    del rt["1"]["1"]
    (data / "predef" / "Rt_scale_dict.json").write_text(json.dumps(rt))
    (data / "landmarks_3d.npy").unlink()
    assert _run_cli(["--data", str(data), "--progress", "false", "--ids", old[1], "--expressions", "1"]) == 1
    out = capsys.readouterr().out
    assert "landmark_indices fit only meshes in TU vertex order" in out and "1_neutral.landmarks.txt" in out
