"""Streaming MoFaNeRF data: per-step batches, reproducibility, landmark rays, UV caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import facenerf.data.mofanerf_dataset as mds
from facenerf.core.cameras import Intrinsics, project_points
from facenerf.data.mofanerf_dataset import FrameTable, IdentityData, MoFaNeRFData, StepBatches
from facenerf.data.ray_batches import LandmarkSampling, PixelSamplerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import write_image
from facenerf.preprocess.training.rig import FAR, NEAR, mofanerf_pose

SIZE = 16


def make_data(tmp_path: Path, n_ids=2, n_exp=3, lm_share=0.5, cache=True, **kw) -> MoFaNeRFData:
    rng = np.random.default_rng(0)
    K = Intrinsics(SIZE, SIZE, 37.5, 37.5, 8.0, 8.0)  # 1200 px at 512 scaled to 16
    views = [(0, 10), (15, 8), (-15, 12), (30, 10)]
    paths, ids, exps, poses, test = [], [], [], [], []
    for i in range(n_ids):
        for e in range(n_exp):
            for v, (pitch, yaw_index) in enumerate(views):
                path = tmp_path / "img" / f"{i}_{e}_{v}.png"
                write_image(path, rng.random((SIZE, SIZE, 3)).astype(np.float32))
                paths.append(path)
                ids.append(i), exps.append(e), test.append(v == 3)
                poses.append(mofanerf_pose(pitch, -90 + 9 * yaw_index).numpy())
    people = []
    for i in range(n_ids):
        uv = tmp_path / "uv" / f"{i + 1}" / "1_neutral.jpg"
        write_image(uv, rng.random((64, 64, 3)).astype(np.float32))
        landmarks = rng.normal(0.0, 0.5, (n_exp, 68, 3)).astype(np.float32)
        people.append(IdentityData(identity=str(i + 1), shape_code=rng.normal(size=50).astype(np.float32),
                                   uv_path=uv, landmarks=landmarks))
    frames = FrameTable(paths, np.array(ids), np.array(exps), np.stack(poses).astype(np.float32),
                        np.array(test), K)
    sampler = PixelSamplerConfig(n_rays=64, landmarks=LandmarkSampling(lm_share=lm_share, lm_sigma=0.0),
                                 precrop_iters=0)
    return MoFaNeRFData(frames, people, sampler, near=NEAR, far=FAR, tex_size=32,
                        uv_cache_dir=tmp_path / "cache" if cache else None, **kw)


def test_batch_contents_and_ray_geometry(tmp_path):
    data = make_data(tmp_path)
    batch = data.training_batch(step=5)
    assert len(batch["rays"]) == 64 and batch["rgb"].shape == (64, 3)
    assert batch["shape"].shape == (1, 50) and batch["uv"].shape == (1, 3, 32, 32)
    frame = int(batch["frame"])
    assert not data.frames.is_test[frame]
    assert int(batch["expression"]) == data.frames.expression[frame]
    # every ray passes through a pixel centre-free integer location whose colour is the target
    rays = batch["rays"]
    points = rays.origins + rays.directions * 12.0
    xy = project_points(points, data.pose(frame), data.K).round().long()
    image = data.image(frame)
    torch.testing.assert_close(image[xy[:, 1], xy[:, 0]], batch["rgb"])
    # the first half are landmark rays (sigma 0): exactly the rounded in-image projections
    lm = data.landmarks_xy(frame)
    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= SIZE - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= SIZE - 1)
    allowed = {tuple(p) for p in lm[inside].round().long().tolist()}
    if allowed:
        assert {tuple(p) for p in xy[:32].tolist()} <= allowed


def test_batches_depend_only_on_seed_rank_and_step(tmp_path):
    data = make_data(tmp_path)
    a, b = data.training_batch(7, rank=0), data.training_batch(7, rank=0)
    assert torch.equal(a["rgb"], b["rgb"]) and a["seed"] == b["seed"]
    frames = {int(data.training_batch(s, 0)["frame"]) for s in range(12)}
    assert len(frames) > 3  # random frames over steps
    assert data.training_batch(7, rank=1)["seed"] != a["seed"]


def test_one_image_is_read_per_batch_and_uv_maps_are_cached(tmp_path, monkeypatch):
    data = make_data(tmp_path)
    reads: list[str] = []
    real = mds.read_image
    monkeypatch.setattr(mds, "read_image", lambda p, size=None: reads.append(Path(p).name) or real(p, size))
    people = {int(data.training_batch(step)["identity"]) for step in range(8)}
    uv_reads = [r for r in reads if r == "1_neutral.jpg"]
    assert len(reads) - len(uv_reads) == 8  # streamed: one frame per step
    assert len(uv_reads) == len(people)  # each identity's UV map read once
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {f"uv_{i + 1}_32.npy" for i in people}
    # a new process (fresh data object) reuses the disk cache even when the JPEGs are gone
    for jpg in (tmp_path / "uv").rglob("*.jpg"):
        jpg.unlink()
    fresh = make_data_from(data)
    for i in people:
        cached = np.load(tmp_path / "cache" / f"uv_{i + 1}_32.npy")
        torch.testing.assert_close(fresh.uv(i), torch.from_numpy(cached).permute(2, 0, 1)[None].float() / 255)


def make_data_from(data: MoFaNeRFData) -> MoFaNeRFData:
    return MoFaNeRFData(data.frames, data.identities, data.sampler, near=NEAR, far=FAR, tex_size=data.tex_size,
                        uv_cache_dir=data.uv_cache_dir)


def test_step_batches_prefetch_in_workers_and_restart(tmp_path):
    data = make_data(tmp_path)
    batches = StepBatches(data, max_steps=10, num_workers=1, prefetch=2)
    for step in (0, 1, 2, 6, 7):  # 6 = a jump, as after a resume
        got = batches(step)
        want = data.training_batch(step)
        assert torch.equal(got["rgb"], want["rgb"]) and got["seed"] == want["seed"]


def test_validation_frames_and_errors(tmp_path):
    data = make_data(tmp_path)
    frames = data.validation_frames(3)
    assert len(frames) == 3 and all(data.frames.is_test[f] for f in frames)
    assert len({int(data.frames.identity[f]) for f in frames}) == 2
    only_test = data.frames
    only_test.is_test = np.ones_like(only_test.is_test)
    with pytest.raises(FaceNerfError, match="no training frames"):
        MoFaNeRFData(only_test, data.identities, data.sampler, near=NEAR, far=FAR, tex_size=32)


def test_separate_validation_views_are_held_out_and_used_for_validation(tmp_path):
    data = make_data(tmp_path)
    frames = data.frames
    frames.is_val = np.array([not t and i % 4 == 2 for i, t in enumerate(frames.is_test)])
    held = MoFaNeRFData(frames, data.identities, data.sampler, near=NEAR, far=FAR, tex_size=32)
    assert not set(held.train_indices) & set(np.flatnonzero(frames.is_val))
    assert not set(held.train_indices) & set(held.test_indices)
    picks = held.validation_frames(4)
    assert picks and all(frames.is_val[f] for f in picks)
