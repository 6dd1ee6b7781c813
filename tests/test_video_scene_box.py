"""The scene box of a processed video: the procedural head's box, grown to the head masks' outline
(hair above or beside the head), measured in the head's coronal plane."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from facenerf.preprocess.video.tracking import head_box, scene_box, silhouette_extent

FOCAL, W, H = 400.0, 160, 200
RECT = (-1.5, -2.0, 1.2, 3.4)  # x0, y0, x1, y1 in the plane z = 0 (scene units)


def camera(yaw_deg: float, height: float = 0.5, distance: float = 17.0) -> np.ndarray:
    """Camera-to-head [4, 4] (OpenGL) on a circle around the y axis, looking at (0, height, 0)."""
    a = np.deg2rad(yaw_deg)
    c2w = np.eye(4)
    c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    c2w[:3, 3] = [distance * np.sin(a), height, distance * np.cos(a)]
    return c2w


def rectangle_mask(c2w: np.ndarray, rect=RECT) -> np.ndarray:
    """[H, W] pixels whose ray through the pixel centre meets the plane z = 0 inside ``rect``."""
    v, u = np.mgrid[0:H, 0:W]
    rays = np.stack([(u + 0.5 - W / 2) / FOCAL, -(v + 0.5 - H / 2) / FOCAL, -np.ones_like(u, float)], -1) @ c2w[:3, :3].T
    t = -c2w[2, 3] / rays[..., 2]
    x, y = c2w[0, 3] + t * rays[..., 0], c2w[1, 3] + t * rays[..., 1]
    return (x >= rect[0]) & (x <= rect[2]) & (y >= rect[1]) & (y <= rect[3])


def test_outline_of_a_plane_rectangle_is_recovered_from_any_frontal_view():
    poses = np.stack([camera(yaw) for yaw in (-25.0, 0.0, 10.0, 30.0)])
    outline = silhouette_extent((rectangle_mask(p) for p in poses), poses, FOCAL, W / 2, H / 2)
    pixel = 17.0 / FOCAL / np.cos(np.deg2rad(30.0))  # the widest pixel footprint in the plane
    np.testing.assert_allclose(outline, RECT, atol=pixel)
    side = camera(90.0)  # a profile view: its rays run along the plane and are left out
    assert silhouette_extent([rectangle_mask(side)], side[None], FOCAL, W / 2, H / 2) is None
    assert silhouette_extent([np.zeros((H, W), bool)], poses[:1], FOCAL, W / 2, H / 2) is None


def test_the_box_grows_only_where_the_masks_reach_beyond_it():
    box = head_box()
    assert np.array_equal(scene_box(box, None), box)
    inside = np.array([box[0] + 0.1, box[1] + 0.1, box[3] - 0.1, box[4] - 0.1])
    assert np.array_equal(scene_box(box, inside), box)
    tall = np.array([box[0] + 0.1, box[1] + 0.1, box[3] - 0.1, box[4] + 0.6])  # hair 30 mm above the box
    grown = scene_box(box, tall)
    assert grown[4] == pytest.approx(box[4] + 0.6) and np.array_equal(np.delete(grown, 4), np.delete(box, 4))


def test_transforms_hold_the_hair_the_masks_show(tmp_path):
    """write_head_transforms: masks of a head with tall hair widen the aabb (and near/far) and say so;
    masks inside the procedural box leave it as it was."""
    import imageio.v3 as iio

    from facenerf.preprocess.video.pipeline import write_head_transforms

    poses = np.stack([camera(yaw) for yaw in np.linspace(-10, 10, 6)])
    head = SimpleNamespace(focal=FOCAL, c2w=poses)
    landmarks = np.tile(np.linspace([60, 80], [100, 140], 68)[None], (6, 1, 1))
    box = head_box()
    for name, top in (("tall", box[4] + 0.8), ("short", box[4] - 0.3)):
        out = tmp_path / name
        (out / "head_masks").mkdir(parents=True)
        for i, pose in enumerate(poses):
            mask = rectangle_mask(pose, (-1.5, -2.0, 1.2, top))
            iio.imwrite(out / "head_masks" / f"{i}.png", mask.astype(np.uint8) * 255)
        notes = []
        write_head_transforms(out, head, landmarks, np.arange(6), 1, 25.0, W, H, say=notes.append)
        aabb = np.array(json.loads((out / "transforms_all.json").read_text())["aabb"])
        if name == "tall":
            assert aabb[4] == pytest.approx(top, abs=0.05) and aabb[4] > box[4] + 0.7
            assert len(notes) == 1 and "reach up to 4" in notes[0] and "grows to hold them" in notes[0]
        else:
            np.testing.assert_allclose(aabb, box, atol=1e-4)
            assert notes == []
