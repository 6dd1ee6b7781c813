"""Tests of the multi-view data parser (facenerf.data.facescape)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from facenerf.data import facescape
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import gl, rig

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None


def _original_layout(root, n_rows=6):
    """A MoFaNeRF-format identity 5 (no extra fields) with 32 x 32 images."""
    mv = root / "multiViewImages"
    (mv / "5" / "smile").mkdir(parents=True)
    frames = []
    for view in (rig.View(0, 10), rig.View(15, 3)):
        Image.new("RGB", (32, 32), (90, 60, 40)).save(mv / "5" / "smile" / f"{view.name}.png")
        frames.append({"file_path": f"/5/smile/{view.name}", "rotation": 0.666, "expression": 1,
                       "transform_matrix": view.c2w().tolist()})
    (mv / "transforms_train_5.json").write_text(json.dumps({"camera_angle_x": 2 * math.atan(256 / 1200),
                                                             "frames": frames}))
    np.save(root / "factors_id.npy", np.arange(n_rows * 50, dtype=np.float64).reshape(n_rows, 50))
    (root / "textureMap300" / "5").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "textureMap300" / "5" / "1_neutral.jpg")
    return mv


def test_parses_original_mofanerf_files(tmp_path):
    mv = _original_layout(tmp_path)
    data = facescape.parse_multiview(mv, "train")
    person = data.identities["5"]
    assert len(person.frames) == 2 and data.problems == []
    frame = person.frames[0]
    assert (frame.identity, frame.expression, frame.expression_name, frame.view) == ("5", 1, "smile", "0_10")
    assert frame.intrinsics.fx == pytest.approx(75.0) and frame.intrinsics.cx == 16.0
    assert (frame.pitch, frame.yaw) == (0.0, 0.0)
    np.testing.assert_allclose(frame.c2w, rig.View(0, 10).c2w(), atol=1e-6)
    assert frame.landmarks_2d is None and frame.split == "train"
    np.testing.assert_array_equal(person.shape_code, np.arange(250, 300))      # row = id
    assert person.uv_texture == tmp_path / "textureMap300" / "5" / "1_neutral.jpg"
    assert data.near == 8.0 and data.far == 26.0


def test_shape_code_rows_are_bounds_checked(tmp_path):
    mv = _original_layout(tmp_path, n_rows=5)        # rows 0..4: no row for id 5
    with pytest.raises(FaceNerfError, match="no shape code for identity '5'.*rows 1..4"):
        facescape.parse_multiview(mv, "train")
    factors = np.zeros((3, 50))
    for bad in ("0", "3", "abc"):
        with pytest.raises(FaceNerfError, match="no shape code"):
            facescape.shape_code(factors, bad)


def test_missing_images_and_bad_requests(tmp_path):
    mv = _original_layout(tmp_path)
    (mv / "5" / "smile" / "15_3.png").unlink()
    data = facescape.parse_multiview(mv, "train")
    assert len(data.frames()) == 1 and "15_3.png" in data.problems[0]
    with pytest.raises(FaceNerfError, match="unknown split"):
        facescape.parse_multiview(mv, "holdout")
    with pytest.raises(FaceNerfError, match="transforms_test"):
        facescape.parse_multiview(mv, "test")
    with pytest.raises(FaceNerfError, match="unknown expression '2_frown'"):
        facescape.expression_from_stem("2_frown")
    assert facescape.expression_from_stem("20_brow_lower") == 19


@pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")
def test_records_of_rendered_data_are_consistent(tmp_path):
    from facenerf.core.cameras import project_points
    from facenerf.data.synthetic.writer import GeneratorSettings, generate_dataset
    from facenerf.preprocess.training import align, multiview

    generate_dataset(GeneratorSettings(out=tmp_path, n_ids=1, seed=4, n_vertices=900, texture_size=32,
                                       expressions="1,2", progress=False))
    predef = align.load_predef(tmp_path / "predef", tmp_path / "landmarks_3d.npy")
    align.align_dataset(tmp_path / "models_raw", tmp_path / "models_out", predef, align.AlignOptions(), progress=False)
    opts = multiview.RenderOptions(resolution=32, views=tuple(rig.select_views(6)))
    multiview.render_dataset(tmp_path / "models_out", tmp_path / "multiViewImages", opts, platform=PLATFORM,
                             landmarks=np.load(tmp_path / "landmarks_3d.npy"), progress=False)
    train = facescape.parse_multiview(tmp_path / "multiViewImages", "train")
    test = facescape.parse_multiview(tmp_path / "multiViewImages", "test")
    assert len(train.frames()) == 10 and len(test.frames()) == 2
    assert not {f.image_path for f in train.frames()} & {f.image_path for f in test.frames()}
    person = train.identities["1"]
    assert person.shape_code.shape == (50,) and person.landmarks_3d.shape == (20, 68, 3)
    assert person.uv_texture.name == "1_neutral.jpg"
    for frame in train.frames(expressions=[1]):
        assert frame.expression_name == "smile" and frame.intrinsics.fx == 75.0
        xy = project_points(torch.as_tensor(person.landmarks_3d[1]), torch.as_tensor(frame.c2w), frame.intrinsics)
        # landmark pixels follow the images' convention: rounding gives the pixel that shows the point
        assert frame.pixel_center == 0.5
        np.testing.assert_allclose(frame.landmarks_2d, xy.numpy() - frame.pixel_center, atol=2e-3)
        assert frame.landmarks_visible.dtype == bool


def test_camera_files_name_their_pixel_convention():
    assert facescape.pixel_center_of({"pixel_center": 0.0, "pixel_convention": "..."}) == 0.0
    assert facescape.pixel_center_of({"pixel_center": 0.5}) == 0.5
    # earlier facenerf files: a shifted principal point, recorded only in words
    assert facescape.pixel_center_of({"pixel_convention": "pixel (i, j) centred at (x, y) = (i, j)"}) == 0.0
    # the original render.py: an unshifted OpenGL camera shows the ray through (i + 0.5, j + 0.5)
    assert facescape.pixel_center_of({"camera_angle_x": 0.42, "frames": []}) == 0.5
