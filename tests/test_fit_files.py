"""Fit inputs and files: pose-file lookup and safe loading, synthetic renders, bad images,
the versioned fit file and the code statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facenerf.core.cameras import Intrinsics, project_points
from facenerf.errors import FaceNerfError
from facenerf.fitting.inputs import load_pose_file, load_target
from facenerf.fitting.result import FIT_FORMAT, FitResult
from facenerf.fitting.stats import CodeStatistics, compute_code_statistics, floored_std
from facenerf.io import write_image
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.preprocess.training.rig import mofanerf_pose


def _disc_image(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size, 3), np.float32)
    image[(xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2] = (0.8, 0.6, 0.5)
    return image


def _wild(tmp_path, size=64, pose_size=64, where="two_up"):
    root = tmp_path / "fit"
    image_path = root / "segRelRes" / "face.png"
    write_image(image_path, _disc_image(size))
    c2w = mofanerf_pose(5.0, -10.0).numpy()
    kp_xy = np.stack([np.linspace(20, 40, 68), np.linspace(25, 45, 68)], axis=1)
    record = {"pose": c2w, "kp": np.rint(kp_xy[:, ::-1]).astype(np.int64), "image_size": pose_size}
    folder = root if where == "two_up" else image_path.parent
    np.save(folder / "pose_face.npy", record, allow_pickle=True)
    return image_path, c2w, kp_xy


def test_wild_photo_with_pose_two_folders_up(tmp_path):
    image_path, c2w, kp_xy = _wild(tmp_path)
    target = load_target(image_path, fit_size=64)
    assert target.kind == "wild" and target.image.shape == (64, 64, 3)
    torch.testing.assert_close(target.c2w, torch.from_numpy(c2w))
    assert target.K.fx == pytest.approx(1200 * 64 / 512) and target.K.cx == 32.0
    torch.testing.assert_close(target.landmarks_xy, torch.from_numpy(np.rint(kp_xy)).float())  # (row, col) -> (x, y)
    assert target.mask.sum() > 0 and not target.mask[0, 0]


def test_pose_beside_the_image_wrong_size_and_fit_size(tmp_path):
    image_path, _, _ = _wild(tmp_path, size=48, pose_size=64, where="beside")
    target = load_target(image_path, fit_size=32)
    assert any("resized the image from 48x48 to 64x64" in n for n in target.notes)
    assert target.image.shape == (32, 32, 3) and target.K.width == 32
    assert target.K.fx == pytest.approx(1200 * 32 / 512)
    assert any("fitting at 32x32" in n for n in target.notes)


def test_label_mask_beside_the_pose_file_is_used(tmp_path):
    image_path, _, _ = _wild(tmp_path)
    labels = np.zeros((64, 64, 3), np.float32)
    labels[20:44, 20:44] = (1, 0, 0)  # face label covers only a square
    write_image(tmp_path / "fit" / "mask" / "face.png", labels)
    target = load_target(image_path, fit_size=64)
    assert int(target.mask.sum()) <= 24 * 24 and bool(target.mask[32, 32])


def test_one_line_errors_for_bad_inputs(tmp_path):
    with pytest.raises(FaceNerfError, match="image not found"):
        load_target(tmp_path / "missing.png")
    lonely = tmp_path / "a" / "b" / "x.png"
    write_image(lonely, _disc_image(32))
    with pytest.raises(FaceNerfError, match="no camera for .*pose_x.npy.*wildData_preprocess"):
        load_target(lonely)
    image_path, _, _ = _wild(tmp_path)
    write_image(image_path, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(FaceNerfError, match="no face in"):
        load_target(image_path)
    write_image(image_path, np.ones((64, 48, 3), np.float32))
    with pytest.raises(FaceNerfError, match="not square"):
        load_target(image_path)


def test_pose_files_never_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "pose_x.npy"
    np.save(path, np.array({"pose": Evil(), "kp": np.zeros((68, 2))}, dtype=object), allow_pickle=True)
    with pytest.raises(FaceNerfError, match="refusing to load builtins.print"):
        load_pose_file(path)
    np.save(path, {"kp": np.zeros((68, 2))}, allow_pickle=True)
    with pytest.raises(FaceNerfError, match="'pose' and 'kp'"):
        load_pose_file(path)


def test_synthetic_render_with_transforms_and_visible_landmarks(tmp_path):
    folder = tmp_path / "multiViewImages" / "7" / "neutral"
    K = Intrinsics(32, 32, 75.0, 75.0, 16.0, 16.0)
    c2w = mofanerf_pose(15.0, 18.0)
    points = torch.randn(68, 3, generator=torch.Generator().manual_seed(0)) * 0.5
    xy = project_points(points, c2w, K)
    visible = [1] * 60 + [0] * 8
    frame = {"view": "15_12", "transform_matrix": c2w.tolist(), "expression": 0,
             "landmarks_2d": xy.tolist(), "landmarks_visible": visible}
    header = {"w": 32, "h": 32, "fl_x": 75.0, "fl_y": 75.0, "cx": 16.0, "cy": 16.0, "near": 8.0, "far": 26.0,
              "identity": "7", "frames": [frame]}
    folder.mkdir(parents=True)
    (folder / "transforms.json").write_text(json.dumps(header))
    write_image(folder / "15_12.png", _disc_image(32))
    target = load_target(folder / "15_12.png", fit_size=64)
    assert target.kind == "synthetic" and target.info["identity"] == "7"
    torch.testing.assert_close(target.c2w, c2w)
    torch.testing.assert_close(target.landmarks_xy[:60], xy[:60], atol=1e-4, rtol=0)
    assert torch.isnan(target.landmarks_xy[60:]).all()
    with pytest.raises(FaceNerfError, match="no camera for view"):
        write_image(folder / "0_10.png", _disc_image(32))
        load_target(folder / "0_10.png")


def _fit_result() -> FitResult:
    return FitResult(shape=torch.randn(8), expression=torch.randn(6), texture=torch.randn(8),
                     rotation=torch.tensor([0.01, -0.02, 0.03]), translation=torch.tensor([0.1, 0.0, -0.1]),
                     initial_c2w=mofanerf_pose(0.0, 10.0), gain=torch.tensor([1.1, 0.9, 1.0]),
                     intrinsics=Intrinsics(32, 32, 75.0, 75.0, 16.0, 16.0), near=8.0, far=26.0, iteration=50,
                     iterations=100, history={"iteration": [10.0, 20.0], "loss": [0.3, 0.2]},
                     config={"num_iterations": 100}, optimizer_state={"state": {}, "param_groups": []})


def test_fit_file_round_trip_and_errors(tmp_path):
    result = _fit_result()
    path = result.save(tmp_path / "fit.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FIT_FORMAT and raw["version"] == 1 and raw["iteration"] == 50
    loaded = FitResult.load(path)
    for name in ("shape", "expression", "texture", "rotation", "translation", "gain"):
        torch.testing.assert_close(getattr(loaded, name), getattr(result, name))
    torch.testing.assert_close(loaded.c2w(), result.c2w())
    torch.testing.assert_close(raw["pose"]["c2w"], result.c2w())
    assert loaded.intrinsics == result.intrinsics and loaded.history == result.history
    raw["version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(FaceNerfError, match="version 99"):
        FitResult.load(tmp_path / "future.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(FaceNerfError, match="not a facenerf fit file"):
        FitResult.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(FaceNerfError, match="cannot read fit file"):
        FitResult.load(tmp_path / "junk.pt")
    with pytest.raises(FaceNerfError, match="fit file not found"):
        FitResult.load(tmp_path / "none.pt")


def test_code_statistics_compute_save_load_and_original_format(tmp_path):
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(multires=2, multires_views=1, netdepth=3, netwidth=8, netdepth_fine=0, netwidth_fine=0,
                         xyz_depth=1, skip=1, shape_dim=4, texture_dim=5, exp_dim=3, n_expressions=2, ism_width=8,
                         ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1)
    model = MoFaNeRF(cfg)
    shapes = torch.randn(3, 4)
    uvs = [torch.rand(1, 3, 8, 8) for _ in range(3)]
    stats = compute_code_statistics(model, shapes, uvs, step=7)
    alphas = torch.cat([model.texture_code(u) for u in uvs]).detach()
    torch.testing.assert_close(stats.shape_mean, shapes.mean(0))
    torch.testing.assert_close(stats.texture_mean, alphas.mean(0))
    torch.testing.assert_close(stats.shape_std, floored_std(shapes))
    loaded = CodeStatistics.load(stats.save(tmp_path / "code_stats.pt"))
    assert loaded.step == 7 and loaded.n_identities == 3
    torch.testing.assert_close(loaded.texture_std, stats.texture_std)
    with pytest.raises(FaceNerfError, match="at least 2 training identities"):
        compute_code_statistics(model, shapes[:1], uvs[:1])
    original = {"shape_mean": np.zeros((1, 4), np.float32), "shape_std": np.full((1, 4), 0.03, np.float32),
                "texture_mean": np.ones(5, np.float32), "texture_std": np.full(5, 0.2, np.float32)}
    np.save(tmp_path / "texShpDistribution.npy", original, allow_pickle=True)
    orig = CodeStatistics.load(tmp_path / "texShpDistribution.npy")
    assert orig.shape_std.shape == (4,) and float(orig.texture_mean[0]) == 1.0
    with pytest.raises(FaceNerfError, match="delete the file"):
        orig.check_sizes(50, 5, "x")
    draws_a = stats.sample(2, torch.Generator().manual_seed(1))
    draws_b = stats.sample(2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(draws_a[1], draws_b[1])


def test_floored_std_keeps_priors_finite():
    values = torch.tensor([[1.0, 5.0, 0.0], [1.0, 7.0, 2.0]])
    std = floored_std(values)
    assert float(std[0]) > 0 and float(std[1]) == pytest.approx(1.0)
