"""Rays: MoFaNeRF pixel-to-ray convention, row-major image rays, bundle operations."""

import torch

from facenerf.core.cameras import Intrinsics, orbit_pose
from facenerf.core.rays import RayBundle, image_rays, pixel_rays

K = Intrinsics(6, 4, 5.0, 4.0, 3.0, 2.0)


def test_image_rays_identity_pose_convention():
    rays = image_rays(K, torch.eye(4), near=8.0, far=26.0)
    assert len(rays) == 24
    for row in range(K.height):
        for col in range(K.width):
            expected = torch.tensor([(col - K.cx) / K.fx, -(row - K.cy) / K.fy, -1.0])
            assert torch.allclose(rays.directions[row * K.width + col], expected)
    assert torch.equal(rays.origins, torch.zeros(24, 3))
    assert torch.equal(rays.near, torch.full((24, 1), 8.0))
    assert torch.equal(rays.far, torch.full((24, 1), 26.0))


def test_directions_are_rotated_not_normalised():
    c2w = orbit_pose(-30.0, 45.0, 16.0)
    rays = image_rays(K, c2w, 8.0, 26.0)
    forward = -c2w[:3, 2]
    # the camera-space z component stays -1: every direction has unit depth along the view axis
    assert torch.allclose(rays.directions @ forward, torch.ones(len(rays)), atol=1e-6)
    assert (rays.directions.norm(dim=-1) > 1.0).any()
    assert torch.allclose(rays.origins, c2w[:3, 3].expand(len(rays), 3))


def test_pixel_center_offset():
    xy = torch.tensor([[1.0, 2.0], [5.0, 0.0]])
    shifted = pixel_rays(K, torch.eye(4), xy, 1.0, 2.0, pixel_center=0.5)
    plain = pixel_rays(K, torch.eye(4), xy + 0.5, 1.0, 2.0)
    assert torch.allclose(shifted.directions, plain.directions)
    assert torch.allclose(shifted.directions[0], torch.tensor([(1.5 - 3.0) / 5.0, -(2.5 - 2.0) / 4.0, -1.0]))


def test_per_ray_poses_match_single_pose():
    poses = torch.stack([orbit_pose(0, 10, 16.0), orbit_pose(15, -20, 16.0)])
    xy = torch.tensor([[0.0, 1.0], [4.0, 3.0]])
    both = pixel_rays(K, poses, xy, 1.0, 3.0)
    for i in range(2):
        single = pixel_rays(K, poses[i], xy[i : i + 1], 1.0, 3.0)
        assert torch.allclose(both.directions[i], single.directions[0])
        assert torch.allclose(both.origins[i], single.origins[0])


def test_ray_bundle_indexing_cat_and_to():
    rays = image_rays(K, torch.eye(4), 1.0, 2.0)
    assert len(rays[3:7]) == 4
    assert len(rays[5]) == 1 and torch.equal(rays[5].directions[0], rays.directions[5])
    assert torch.equal(rays[-1].directions[0], rays.directions[-1])
    mask = rays.directions[:, 0] > 0
    assert len(rays[mask]) == int(mask.sum())
    joined = RayBundle.cat([rays[:10], rays[10:]])
    assert torch.equal(joined.directions, rays.directions) and torch.equal(joined.far, rays.far)
    assert rays.to("cpu").device.type == "cpu"


def test_pixel_centre_conventions_survive_resizing():
    from facenerf.core.rays import scale_pixel_coordinates, scaled_pixel_center

    K = Intrinsics(64, 64, 150.0, 150.0, 32.0, 32.0)
    pose = torch.eye(4)
    for centre in (0.0, 0.5):
        full = pixel_rays(K, pose, torch.stack([torch.arange(64.0), torch.zeros(64)], -1), 8.0, 26.0, centre)
        half_centre = scaled_pixel_center(centre, 0.5)
        half = pixel_rays(K.scaled(0.5), pose, torch.stack([torch.arange(32.0), torch.zeros(32)], -1), 8.0, 26.0,
                          half_centre)
        # a half-size pixel averages two full-size ones: its ray is the mean of theirs (x is linear)
        torch.testing.assert_close(half.directions[:, 0], full.directions[:, 0].reshape(32, 2).mean(-1))
    assert scaled_pixel_center(0.5, 0.25) == 0.5 and scaled_pixel_center(0.0, 0.5) == 0.25
    xy = torch.tensor([[0.0, 63.0], [10.0, 20.0]])
    torch.testing.assert_close(scale_pixel_coordinates(xy, 0.5), torch.tensor([[-0.25, 31.25], [4.75, 9.75]]))
