"""Tests of the synthetic talking-head generator: trajectories, rendering, files, command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facenerf.core.cameras import project_points
from facenerf.data.synthetic import blendshapes as bs
from facenerf.data.synthetic import speech
from facenerf.data.synthetic import talking_head as th
from facenerf.data.synthetic import talking_scene as ts
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import gl

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None
needs_gl = pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")
ROOT = Path(__file__).resolve().parents[1]
K_JAW, K_BLINK = bs.BLENDSHAPES.index("jaw_open"), bs.BLENDSHAPES.index("eye_blink")


def _peaks(x: np.ndarray, above: float) -> np.ndarray:
    """Indices of strict local maxima above a level."""
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > above)
    return np.flatnonzero(inner) + 1


def test_expression_trajectories_are_bounded_smooth_and_speech_like():
    fps, n = 25.0, 1500                                     # one minute
    coeffs, spans = speech.expression_track(n, np.random.default_rng(5))
    assert coeffs.shape == (n, len(bs.BLENDSHAPES))
    assert coeffs.min() >= 0.0 and coeffs.max() < 1.0
    assert (coeffs.std(0) > 0.02).all(), "every blendshape moves"
    # jaw: at most half its range in one frame, one pulse per syllable at a speaking rate
    jaw = coeffs[:, K_JAW]
    assert np.abs(np.diff(jaw)).max() < 0.5
    speaking = sum(end - start for start, end in spans)
    rate = len(_peaks(jaw, 0.1)) / speaking
    assert 2.5 < rate < 7.0, f"{rate:.1f} jaw pulses per second of speech"
    # pauses: between phrases the mouth rests (closed) for at least 0.3 s
    t = np.arange(n) / fps
    for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
        gap = (t > end + 0.12) & (t < start - 0.12)
        if gap.any():
            assert jaw[gap].max() < 0.05
    pauses = sum(start - end for (_, end), (start, _) in zip(spans[:-1], spans[1:]))
    assert 0.1 * speaking < pauses < 0.6 * speaking
    # blinks: brief full closures every few seconds
    blinks = _peaks(coeffs[:, K_BLINK], 0.7)
    assert 60 / 5.3 <= len(blinks) <= 60 / 2.0
    assert ((coeffs[:, K_BLINK] > 0.5).sum() / len(blinks)) < 0.3 * fps
    # slow channels (smile, brows) change slowly
    slow = [bs.BLENDSHAPES.index(name) for name in ("mouth_smile", "mouth_frown", "brow_down")]
    assert np.abs(np.diff(coeffs[:, slow], axis=0)).max() < 0.2


def test_head_motion_is_small_smooth_and_deterministic():
    rng = np.random.default_rng(3)
    _, spans = speech.expression_track(750, rng)
    euler, shift = speech.head_motion(750, rng, spans)
    s = speech.SpeechSettings()
    assert (np.abs(euler).max(0) <= [s.pitch_deg + 1e-9, s.yaw_deg + 1e-9, s.roll_deg + 1e-9]).all()
    assert np.abs(euler[:, 1]).max() > 0.9 * s.yaw_deg
    assert np.abs(np.diff(euler, axis=0)).max() < 1.0          # degrees per frame at 25 fps
    assert (np.abs(shift).max(0) <= np.array(s.translation_mm) + 1e-9).all()
    a, b = th.perform(50, 25, seed=9), th.perform(50, 25, seed=9)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    np.testing.assert_array_equal(a.head_pose, b.head_pose)
    assert np.abs(th.perform(50, 25, seed=10).coefficients - a.coefficients).max() > 0.1


def test_head_pose_rotates_about_the_pivot_and_the_torso_follows_a_third():
    euler = np.array([4.0, -7.0, 2.0])
    head = ts.head_pose(euler, np.zeros(3))
    np.testing.assert_allclose(head[:3, :3] @ head[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(ts.transform(ts.HEAD_PIVOT[None], head)[0], ts.HEAD_PIVOT, atol=1e-12)
    angle = np.degrees(np.arccos((np.trace(head[:3, :3]) - 1) / 2))
    torso = ts.torso_pose(euler, np.array([5.0, 0.0, 0.0]))
    torso_angle = np.degrees(np.arccos((np.trace(torso[:3, :3]) - 1) / 2))
    assert torso_angle == pytest.approx(angle / 3, rel=0.05)
    np.testing.assert_allclose(ts.transform(ts.TORSO_CENTRE[None], torso)[0], ts.TORSO_CENTRE + [0.1, 0, 0])


def test_blendshape_basis_is_the_landmark_displacement_of_each_shape():
    from facenerf.data.synthetic import identity as syn

    topology = syn.head_topology(1500)
    neutral, deltas = bs.landmark_basis(topology)
    assert deltas.shape == (len(bs.BLENDSHAPES), 68, 3)
    jaw = deltas[K_JAW]
    assert jaw[8, 1] < -5.0 and abs(jaw[19, 1]) < 1e-9      # the chin drops, the brows stay
    assert np.abs(deltas[K_BLINK][[37, 38, 43, 44], 1]).min() > 2.0   # upper lids move
    mean_shape = bs.sh.ShapeParams.from_z(np.zeros(bs.sh.N_SHAPE_PARAMS))
    half = bs.head_vertices(topology, mean_shape, 0.5 * np.eye(len(bs.BLENDSHAPES))[K_JAW])
    moved = half[syn.landmark_indices(1500)] - neutral
    # the jaw rotates, so half a blendshape moves the chin by about (not exactly) half the chord
    assert np.linalg.norm(moved[8] - 0.5 * jaw[8]) < 0.15 * np.linalg.norm(jaw[8])


def _mouth_box(landmarks_2d: np.ndarray, pad: float) -> tuple[slice, slice]:
    mouth = landmarks_2d[48:68]
    x0, y0 = mouth.min(0) - pad
    x1, y1 = mouth.max(0) + pad
    return slice(int(y0), int(np.ceil(y1)) + 1), slice(int(x0), int(np.ceil(x1)) + 1)


@needs_gl
@pytest.mark.parametrize("size", [64, 96])
def test_opening_the_jaw_darkens_the_mouth_in_the_image(size):
    cfg = th.TalkingHeadSettings(out=Path("."), size=size, texture_size=256, n_vertices=3000)
    subject = th._Subject.make(cfg)
    K, camera = ts.webcam(size)
    renderer = ts.TalkingHeadRenderer(K, camera, subject.topology, subject.texture, subject.neck, subject.torso)
    torso = ts.transform(subject.torso.vertices / ts.MM_PER_UNIT + ts.TORSO_CENTRE, np.eye(4))
    background = np.full((size, size, 3), 0.5, np.float32)
    frames, lms = [], None
    for jaw in (0.0, 1.0):
        coeffs = np.zeros(len(bs.BLENDSHAPES))
        coeffs[K_JAW] = jaw
        vertices = bs.head_vertices(subject.topology, subject.shape, coeffs, subject.chart)
        world = vertices / ts.MM_PER_UNIT
        frames.append(renderer.render(world, ts.shading(vertices, subject.topology.faces()), torso).composite(background))
        if lms is None:
            lms = th.project(world[subject.landmark_index], camera, K)
    renderer.close()
    closed, opened = frames
    rows, cols = _mouth_box(lms, pad=0.04 * size)
    diff = np.abs(opened - closed).mean(-1)
    mouth_change = diff[rows, cols].mean()
    brow_rows = slice(int(lms[19, 1]) - 3, int(lms[19, 1]) + 2)
    brow_change = diff[brow_rows, int(lms[17, 0]):int(lms[26, 0])].mean()
    print(f"{size}px: mouth-region change {mouth_change:.3f}, brow-region change {brow_change:.4f}")
    assert mouth_change > 0.06 and brow_change < 0.01
    # a dark mouth interior appears between the lips
    luminance = lambda im: im[rows, cols] @ np.array([0.299, 0.587, 0.114])
    dark = lambda im: (luminance(im) < 0.6 * np.median(luminance(closed))).sum()
    assert dark(opened) >= max(4, 3 * dark(closed)), (dark(opened), dark(closed))


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "facenerf.tools.talking_head", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


@needs_gl
def test_cli_writes_video_dataset_and_consistent_ground_truth(tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "talk"
    done = _run(["--out", str(out), "--frames", "12", "--size", "64", "--test_num", "3", "--texture_size", "128",
                 "--vertices", "2500", "--progress", "false"], ROOT)
    assert done.returncode == 0, done.stderr
    assert "12 frames" in done.stdout
    video = iio.imread(out / "talk.mp4")
    assert video.shape[:3] == (12, 64, 64)
    for folder, suffix in (("ori_imgs", "jpg"), ("ori_imgs", "lms"), ("gt_imgs", "jpg"), ("head_imgs", "jpg"),
                           ("head_masks", "png"), ("torso_imgs", "png"), ("parsing", "png")):
        assert len(list((out / folder).glob(f"*.{suffix}"))) == 12, folder
    train = json.loads((out / "transforms_train.json").read_text())
    val = json.loads((out / "transforms_val.json").read_text())
    assert [f["img_id"] for f in val["frames"]] == [9, 10, 11] and len(train["frames"]) == 9
    assert train["focal_len"] == 64 * ts.FOCAL and train["cx"] == 32 and train["h"] == 64
    gt = out / "ground_truth"
    coeffs = np.load(gt / "coefficients.npy")
    np.testing.assert_allclose(np.load(out / "expr.npy"), coeffs)
    expr_max = np.load(out / "expr_max.npy")
    assert expr_max.shape == (len(bs.BLENDSHAPES) + 1,) and expr_max[0] == 1.0
    np.testing.assert_allclose(expr_max[1:], coeffs[:9].max(0))
    # the stored cameras reproject the 3D landmarks (head frame) onto the 2D landmarks
    from facenerf.core.cameras import Intrinsics
    import torch

    K = Intrinsics(64, 64, 64.0 * ts.FOCAL, 64.0 * ts.FOCAL, 32.0, 32.0)
    lm3, lm2 = np.load(gt / "landmarks_3d.npy"), np.load(gt / "landmarks_2d.npy")
    for frame in train["frames"][::4] + val["frames"]:
        c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
        xy = project_points(torch.from_numpy(lm3[frame["img_id"]]), c2w, K).numpy()
        np.testing.assert_allclose(xy, lm2[frame["img_id"]], atol=1e-3)
        lms = np.loadtxt(out / "ori_imgs" / f"{frame['img_id']}.lms")
        np.testing.assert_allclose(lms, lm2[frame["img_id"]], atol=0.01)
    # masks agree with the true labels, and the head image shows the background elsewhere
    labels = iio.imread(gt / "labels" / "5.png")
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels == 1).sum() > 200 and (labels == 3).sum() > 100
    np.testing.assert_array_equal(iio.imread(out / "head_masks" / "5.png") > 127, labels == 1)
    parsing = iio.imread(out / "parsing" / "5.png")
    np.testing.assert_array_equal((parsing == [0, 0, 255]).all(-1), labels == 1)
    np.testing.assert_array_equal((parsing == [255, 0, 0]).all(-1), labels == 3)
    head = iio.imread(out / "head_imgs" / "5.jpg").astype(float)
    background = iio.imread(out / "bc.jpg").astype(float)
    away = labels == 0
    assert np.abs(head[away] - background[away]).mean() < 4.0
    torso = iio.imread(out / "torso_imgs" / "5.png")
    assert torso.shape[-1] == 4 and (torso[..., 3][labels == 3] > 0).mean() > 0.99
    assert (torso[..., 3][labels == 1] == 0).mean() > 0.5      # most of the head is not in the torso layer


def test_cli_rejects_bad_settings_with_one_line(tmp_path):
    for args, message in ((["--frames", "1"], "--frames"), (["--frames", "10", "--test_num", "10"], "--test_num"),
                          (["--size", "8"], "--size"), (["--background", str(tmp_path / "none.png")], "none.png")):
        done = _run(["--out", str(tmp_path / "x"), *args, "--progress", "false"], ROOT)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "x").exists()


def test_a_photo_background_is_centre_cropped_and_resized(tmp_path):
    """``--background``: the photo's central square, area-resized to the frame, is the room."""
    import cv2
    import imageio.v3 as iio
    from skimage.data import astronaut

    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, room

    photo = astronaut()[:, 40:452]                                     # 512 x 412: taller than wide
    iio.imwrite(tmp_path / "room.png", photo)
    got = room(TalkingHeadSettings(out=tmp_path / "x", size=64, background=tmp_path / "room.png"))
    square = photo[50:462].astype(np.float32) / 255.0                   # the central 412 x 412
    expected = cv2.resize(square, (64, 64), interpolation=cv2.INTER_AREA)
    assert got.shape == (64, 64, 3) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5
    procedural = room(TalkingHeadSettings(out=tmp_path / "x", size=64, seed=3))
    np.testing.assert_array_equal(procedural, room(TalkingHeadSettings(out=tmp_path / "x", size=64, seed=3)))
    assert np.abs(procedural - expected).mean() > 0.05
