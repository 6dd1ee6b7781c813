"""Tests of the talking-head dataset parser (facenerf.data.video): both layouts, tensors, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facenerf.data.video import load_split, parse_video_dataset, read_head_mask, read_landmarks
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import gl

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None
needs_gl = pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    """A tiny generated talking head: 10 frames at 48 px, the last 2 held out."""
    if PLATFORM is None:
        pytest.skip("no headless OpenGL platform")
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, generate_talking_head

    out = tmp_path_factory.mktemp("video") / "talk"
    generate_talking_head(TalkingHeadSettings(out=out, frames=10, size=48, test_num=2, texture_size=128,
                                              n_vertices=2500, progress=False))
    return out


def write_official(root: Path, n: int = 6, size: int = 32, dims: int = 52, ranges: int = 46) -> np.ndarray:
    """A NeRFBlendShape-release dataset: transforms.json (exp_ori), max/min_46.txt, head_imgs, parsing, bc.jpg.

    Returns the per-frame coefficients ``[n, dims]``.
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    coeffs = rng.uniform(0, 1, (n, dims))
    frames = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, 3] = [0.01 * i, 0.0, 0.35]
        frames.append({"img_id": i, "transform_matrix": c2w.tolist(), "exp_ori": coeffs[i].tolist()})
    header = {"h": size, "w": size, "fx": 40.0, "fy": 41.0, "cx": size / 2, "cy": size / 2}
    (root / "head_imgs").mkdir(parents=True)
    (root / "parsing").mkdir()
    (root / "transforms.json").write_text(json.dumps(dict(header, frames=frames[::-1])))  # any order
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "head_imgs" / f"{i}.jpg")
        parsing = np.full((size, size, 3), 255, np.uint8)
        parsing[4:4 + i + 2, 8:20] = [0, 0, 255]                       # head = pure blue
        parsing[28:, :] = [255, 0, 0]                                  # torso
        Image.fromarray(parsing).save(root / "parsing" / f"{i}.png")
    Image.fromarray(np.full((size, size, 3), 200, np.uint8)).save(root / "bc.jpg")
    train = coeffs[: n - 2, :ranges]
    np.savetxt(root / f"max_{ranges}.txt", train.max(0))
    np.savetxt(root / f"min_{ranges}.txt", train.min(0))
    return coeffs


@needs_gl
def test_generated_layout_reads_back_as_written(talk):
    gt = talk / "ground_truth"
    coeffs, c2w = np.load(gt / "coefficients.npy"), np.load(gt / "camera_to_head.npy")
    train = parse_video_dataset(talk, "train")
    assert train.layout == "radnerf" and len(train) == 8 and train.expr_dim == coeffs.shape[1]
    assert [f.img_id for f in train.frames] == list(range(8))
    assert train.expression_names[0] == "jaw_open" and train.notes == []
    K = train.intrinsics
    assert (K.width, K.height, K.fx, K.cx) == (48, 48, 72.0, 24.0)
    for frame in train.frames:
        np.testing.assert_allclose(frame.c2w, c2w[frame.img_id], atol=1e-6)
        np.testing.assert_allclose(frame.expression, coeffs[frame.img_id], atol=1e-6)
        assert frame.image_path.name == f"{frame.img_id}.jpg" and frame.mask_path.parent.name == "head_masks"
        assert frame.face_rect is not None and frame.lip_rect[2] > 0
    np.testing.assert_allclose(train.expr_max, coeffs[:8].max(0), atol=1e-6)
    np.testing.assert_allclose(train.expr_min, coeffs[:8].min(0), atol=1e-6)
    val = parse_video_dataset(talk, "val")
    assert [f.img_id for f in val.frames] == [8, 9] and {f.split for f in val.frames} == {"val"}
    assert len(parse_video_dataset(talk, "all")) == 10
    resplit = parse_video_dataset(talk, "val", test_num=4)
    assert [f.img_id for f in resplit.frames] == [6, 7, 8, 9]
    np.testing.assert_allclose(read_landmarks(train.frames[3].landmarks_path),
                               np.load(gt / "landmarks_2d.npy")[3], atol=0.01)
    assert train.near < np.linalg.norm(c2w[0, :3, 3]) < train.far and train.aabb.shape == (6,)


@needs_gl
def test_load_split_gives_training_tensors_with_optional_downscale(talk):
    from facenerf.io import read_image

    data = parse_video_dataset(talk, "train")
    full = load_split(data, torso=True)
    assert full.images.shape == (8, 48, 48, 3) and full.images.dtype == torch.float32
    assert full.masks.shape == (8, 48, 48) and full.torso.shape == (8, 48, 48, 4)
    assert full.coefficients.shape == (8, data.expr_dim) and full.poses.shape == (8, 4, 4)
    np.testing.assert_allclose(full.images[2].numpy(), read_image(talk / "head_imgs" / "2.jpg"))
    labels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(talk / "ground_truth" / "labels" / "2.png"))
    np.testing.assert_array_equal(full.masks[2].numpy() > 0.5, labels == 1)
    assert full.background.shape == (48, 48, 3)
    half = load_split(data, downscale=2, image="frame", masks=True, dtype=torch.float16)
    assert half.images.shape == (8, 24, 24, 3) and half.images.dtype == torch.float16
    assert half.intrinsics.fx == 36.0 and half.intrinsics.width == 24
    frame = torch.from_numpy(read_image(talk / "ori_imgs" / "2.jpg"))
    pooled = frame.reshape(24, 2, 24, 2, 3).mean((1, 3))
    assert (half.images[2].float() - pooled).abs().mean() < 0.01
    with pytest.raises(FaceNerfError, match="downscale"):
        load_split(data, downscale=0.5)


@needs_gl
def test_preloading_more_than_the_memory_holds_stops_with_one_line(talk, monkeypatch):
    """8 frames of 48 x 48 with masks and torso layers: 8 * 48 * 48 * 8 * 4 bytes = 576 KiB; with
    600 KiB available (80% of it allowed) they are refused before anything is allocated."""
    import facenerf.runtime as runtime

    data = parse_video_dataset(talk, "train")
    monkeypatch.setattr(runtime, "available_memory", lambda device="cpu": 600 * 1024)
    with pytest.raises(FaceNerfError, match=r"preloading 8 train frames at 48x48 needs 576 KiB of CPU memory but "
                                            r"600 KiB is available: use --preload 0"):
        load_split(data, torso=True)
    assert load_split(data, masks=False).images.shape == (8, 48, 48, 3)  # 216 KiB fits


@needs_gl
def test_preloaded_frames_are_kept_in_8_bits_and_read_back_exactly(talk):
    """At their own size the frames, masks and torso layers are held as uint8 (4x less memory than
    fp32) and read back bit for bit as read from disk; a downscaled split stays in fp32."""
    from facenerf.models.blendshape.data import FrameStore

    data = parse_video_dataset(talk, "train")
    cpu = torch.device("cpu")
    disk = FrameStore(data, 1.0, 0, cpu, torso=True)
    held = FrameStore(data, 1.0, 1, cpu, torso=True)
    assert held.tensors.images.dtype == held.tensors.masks.dtype == held.tensors.torso.dtype == torch.uint8
    for i in (0, 3, 7):
        for read in ("image", "mask", "torso"):
            ours, truth = getattr(held, read)(i), getattr(disk, read)(i)
            assert ours.dtype == torch.float32 and torch.equal(ours, truth), (read, i)
    assert FrameStore(data, 2.0, 1, cpu).tensors.images.dtype == torch.float32


def test_available_memory_is_read_from_the_kernel():
    from facenerf.runtime import available_memory

    free = available_memory("cpu")
    assert free is None or 2 ** 20 < free < 2 ** 50


def test_official_layout_reads_exp_ori_ranges_and_parsing_masks(tmp_path):
    coeffs = write_official(tmp_path)
    train = parse_video_dataset(tmp_path, "train", test_num=2)
    assert train.layout == "official" and [f.img_id for f in train.frames] == [0, 1, 2, 3]
    assert train.expr_dim == 46                      # the length of max_46.txt
    np.testing.assert_allclose(train.frames[1].expression, coeffs[1, :46], atol=1e-6)
    np.testing.assert_allclose(train.expr_max, coeffs[:4, :46].max(0), atol=1e-6)
    assert (train.intrinsics.fx, train.intrinsics.fy, train.intrinsics.width) == (40.0, 41.0, 32)
    assert train.frames[2].c2w[0, 3] == pytest.approx(0.02)
    scaled = parse_video_dataset(tmp_path, "val", test_num=2, scale=0.33)
    assert [f.img_id for f in scaled.frames] == [4, 5] and scaled.frames[0].c2w[2, 3] == pytest.approx(0.35 * 0.33)
    mask = read_head_mask(train.frames[3].mask_path)
    assert mask.sum() == (3 + 2) * 12 and mask[28:].sum() == 0
    tensors = load_split(parse_video_dataset(tmp_path, "train", test_num=2, expr_dim=10))
    assert tensors.coefficients.shape == (4, 10) and tensors.expr_max.shape == (10,)
    assert tensors.masks[3].sum() == 60 and tensors.background.mean() == pytest.approx(200 / 255, abs=0.01)
    default = parse_video_dataset(tmp_path, "val")     # default: 500, at most half the frames
    assert len(default) == 3


def test_official_layout_without_range_files_uses_the_training_frames(tmp_path):
    coeffs = write_official(tmp_path)
    (tmp_path / "max_46.txt").unlink()
    (tmp_path / "min_46.txt").unlink()
    data = parse_video_dataset(tmp_path, "train", test_num=2)
    assert data.expr_dim == 52 and data.notes and "training frames" in data.notes[0]
    np.testing.assert_allclose(data.expr_max, coeffs[:4].max(0), atol=1e-6)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_official_data_gets_one_clear_line(tmp_path):
    write_official(tmp_path)
    with pytest.raises(FaceNerfError, match="--expr_dim 50 does not match") as err:
        parse_video_dataset(tmp_path, expr_dim=50, test_num=2)
    assert "pass --expr_dim 46" in _one_line(err)
    payload = json.loads((tmp_path / "transforms.json").read_text())
    payload["frames"][2]["exp_ori"] = payload["frames"][2]["exp_ori"][:40]
    (tmp_path / "transforms.json").write_text(json.dumps(payload))
    with pytest.raises(FaceNerfError, match="inconsistent expression dimensions"):
        parse_video_dataset(tmp_path, test_num=2)
    shutil.rmtree(tmp_path)
    write_official(tmp_path)
    (tmp_path / "head_imgs" / "1.jpg").unlink()
    (tmp_path / "head_imgs" / "3.jpg").unlink()
    with pytest.raises(FaceNerfError, match=r"2 of 4 frame images missing \(first: .*1.jpg\)"):
        parse_video_dataset(tmp_path, test_num=2)
    shutil.rmtree(tmp_path)
    write_official(tmp_path)
    (tmp_path / "parsing" / "0.png").unlink()
    with pytest.raises(FaceNerfError, match="1 of 4 head masks missing"):
        parse_video_dataset(tmp_path, test_num=2)
    assert len(parse_video_dataset(tmp_path, test_num=2, require_masks=False)) == 4
    with pytest.raises(FaceNerfError, match="leaves no training frames"):
        parse_video_dataset(tmp_path, test_num=6)
    with pytest.raises(FaceNerfError, match="unknown split"):
        parse_video_dataset(tmp_path, split="test")


def test_missing_or_foreign_folders_get_one_clear_line(tmp_path):
    with pytest.raises(FaceNerfError, match="dataset folder not found"):
        parse_video_dataset(tmp_path / "nowhere")
    with pytest.raises(FaceNerfError, match="no transforms file"):
        parse_video_dataset(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(FaceNerfError, match="not valid JSON"):
        parse_video_dataset(tmp_path)


@needs_gl
def test_bad_generated_data_gets_one_clear_line(talk, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(talk, root)
    with pytest.raises(FaceNerfError, match="--expr_dim 12 does not match the data: expr.npy holds 10"):
        parse_video_dataset(root, expr_dim=12)
    np.save(root / "expr.npy", np.load(talk / "expr.npy")[:7])
    with pytest.raises(FaceNerfError, match="has 7 rows but img_id 9 needs 10"):
        parse_video_dataset(root)
    np.save(root / "expr.npy", np.load(talk / "expr.npy")[:, :9])
    with pytest.raises(FaceNerfError, match="expr_max.npy holds 11 values but the frames have 9"):
        parse_video_dataset(root)
    shutil.copy(talk / "expr.npy", root / "expr.npy")
    (root / "head_masks" / "4.png").unlink()
    assert parse_video_dataset(root).frames[4].mask_path.parent.name == "parsing"   # falls back to parsing/
    (root / "parsing" / "4.png").unlink()
    with pytest.raises(FaceNerfError, match="1 of 8 head masks missing"):
        parse_video_dataset(root)
    shutil.rmtree(root / "torso_imgs")
    with pytest.raises(FaceNerfError, match="torso images missing"):
        parse_video_dataset(root, require_masks=False, require_torso=True)
    from PIL import Image

    Image.new("RGB", (40, 40)).save(root / "head_imgs" / "0.jpg")
    with pytest.raises(FaceNerfError, match="is 40x40 but the transforms file says 48x48"):
        parse_video_dataset(root, require_masks=False)
    (root / "expr.npy").unlink()
    with pytest.raises(FaceNerfError, match="expression file missing"):
        parse_video_dataset(root)
