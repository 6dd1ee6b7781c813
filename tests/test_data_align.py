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
    (data / "landmarks_3d.npy").unlink()
    assert _run_cli(["--data", str(data), "--progress", "false"]) == 1
    out = capsys.readouterr().out
    assert "aligned 3 of 6 meshes" in out and "4 problem(s)" in out
    assert "texture missing" in out and "corrupt OBJ" in out and "unknown expression '21_yawn'" in out
    assert "no Rt_scale_dict entry for id 2 expression 1" in out
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
