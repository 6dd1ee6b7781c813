"""The 2-D torso net: pose vector, pixel coordinates, compositing, loss, occupancy and a tiny fit."""

import math

import pytest
import torch

from facenerf.core.rays import image_pixels, scale_pixel_coordinates
from facenerf.core.cameras import Intrinsics
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.torso import (
    TorsoConfig, TorsoNet, TorsoOccupancy, composite, euler_xyz_matrix, normalized_pixels, pixel_coords,
    pose_vector, torso_loss, torso_over_background,
)

FIT_SIZE = 32
FIT_STEPS = 150
FIT_LR_SCALE = 4.0  # the reference's learning rates x 4: a single image needs no caution
FIT_MIN_PSNR = 35.0  # measured ~47 dB after 150 steps


def _psnr(a, b):
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


def _ellipse_rgba(size):
    """A torso-like RGBA image [H*W, 4] (row-major): a coloured ellipse over transparency."""
    coords = pixel_coords(size, size)
    inside = ((coords[:, 0] / 0.7) ** 2 + ((coords[:, 1] - 0.4) / 0.5) ** 2 <= 1.0).float()[:, None]
    rgb = torch.stack([0.2 + 0.3 * (coords[:, 0] + 1), torch.full_like(coords[:, 0], 0.3),
                       0.8 - 0.25 * (coords[:, 1] + 1)], dim=-1)
    return coords, torch.cat([rgb * inside, inside], dim=-1)


@pytest.fixture(scope="module")
def fitted():
    """The default-size torso net fitted to the ellipse for one pose and frame 0."""
    torch.manual_seed(0)
    coords, target = _ellipse_rgba(FIT_SIZE)
    background = torch.ones(3)
    pose = pose_vector(torch.eye(4))
    net = TorsoNet(TorsoConfig(occupancy_resolution=FIT_SIZE, grid_implementation="torch"), n_frames=2)
    groups = [dict(g, lr=g["lr"] * FIT_LR_SCALE) for g in net.param_groups()]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    with torch.no_grad():
        alpha, rgb = net(coords, pose, 0)
        start = _psnr(torso_over_background(rgb, alpha, background),
                      torso_over_background(target[:, :3], target[:, 3:], background))
    for _ in range(FIT_STEPS):
        alpha, rgb = net(coords, pose, 0)
        loss = torso_loss(rgb, alpha, target, background)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, coords, target, background, pose, start


# ----------------------------------------------------------------------------- compositing and loss

def test_composite_matches_hand_computation():
    head = torch.tensor([[0.2, 0.1, 0.0]] * 3)
    weight = torch.tensor([[0.6], [0.6], [0.6]])
    torso = torch.tensor([[0.5, 0.5, 0.5]] * 3)
    alpha = torch.tensor([[0.0], [1.0], [0.25]])
    background = torch.tensor([1.0, 0.0, 1.0])  # [3], broadcast over pixels
    out = composite(head, weight, torso, alpha, background)
    # alpha 0: the background shows through the head's transparency; alpha 1: the torso does.
    assert torch.allclose(out[0], torch.tensor([0.2 + 0.4, 0.1, 0.4]))
    assert torch.allclose(out[1], torch.tensor([0.2 + 0.2, 0.1 + 0.2, 0.2]))
    # alpha 0.25: 0.2 + 0.4 * (0.5 * 0.25 + 1 * 0.75) = 0.55 (red); 0.1 + 0.4 * 0.125 (green).
    assert torch.allclose(out[2], torch.tensor([0.55, 0.15, 0.35]))
    # An opaque head hides torso and background.
    opaque = composite(head, torch.ones(3, 1), torso, alpha, background)
    assert torch.allclose(opaque, head)


def test_torso_loss_hand_values_and_gradient():
    target = torch.tensor([[0.2, 0.4, 0.6, 1.0], [0.9, 0.9, 0.9, 0.0]])  # opaque, transparent
    background = torch.ones(2, 3)
    rgb = torch.tensor([[0.3, 0.4, 0.6], [0.0, 0.0, 0.0]], requires_grad=True)
    alpha = torch.tensor([[1.0], [0.5]], requires_grad=True)
    parts = torso_loss(rgb, alpha, target, background)
    # Pixel 0: |0.3 - 0.2| on one channel; pixel 1: target = background 1, prediction 0.5.
    l1 = (0.1 + 3 * 0.5) / 6
    assert float(parts["l1"].detach()) == pytest.approx(l1, rel=1e-5)
    entropy = (0.0 + 1.0) / 2  # ~0 bits at alpha 1 (clamped), 1 bit at alpha 0.5
    assert float(parts["entropy"].detach()) == pytest.approx(entropy, abs=1e-3)
    assert float(parts["loss"].detach()) == pytest.approx(l1 + 1e-4 * float(parts["entropy"].detach()), rel=1e-6)
    parts["loss"].backward()
    assert rgb.grad.abs().sum() > 0 and alpha.grad.abs().sum() > 0



def test_torso_loss_stays_finite_for_a_saturated_fp16_alpha():
    """Under fp16 autocast a confident pixel's alpha is exactly 1 (sigmoid(9) rounds up) and fp16 rounds
    the entropy's clamp 1 - 1e-5 up to 1 too: the entropy is taken in fp32, so loss and gradient stay finite."""
    logits = torch.tensor([[9.0], [0.0], [-20.0]], requires_grad=True)
    alpha = torch.sigmoid(logits.half())  # [3, 1] fp16, as the torso net's output under autocast
    assert float(alpha[0].detach()) == 1.0
    target = torch.tensor([[0.2, 0.4, 0.6, 1.0], [0.9, 0.9, 0.9, 0.5], [0.5, 0.5, 0.5, 0.0]])
    parts = torso_loss(torch.full((3, 3), 0.5, dtype=torch.float16), alpha, target, torch.ones(3))
    assert all(bool(torch.isfinite(parts[k])) for k in ("loss", "l1", "entropy"))
    assert float(parts["entropy"].detach()) == pytest.approx(1.0 / 3.0, abs=1e-3)  # 1 bit at alpha 0.5, ~0 elsewhere
    parts["loss"].backward()
    assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- pose and pixels

def _pose(rot, t=(0.0, 0.0, 0.0)):
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor(rot, dtype=torch.float64)
    c2w[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return c2w


def test_pose_vector_of_hand_built_rotations():
    c, s = math.cos(0.3), math.sin(0.3)
    rx = [[1, 0, 0], [0, c, -s], [0, s, c]]
    ry = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    rz = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    for rot, expected in ((rx, (0.3, 0, 0)), (ry, (0, 0.3, 0)), (rz, (0, 0, 0.3))):
        vec = pose_vector(_pose(rot, (1.0, -2.0, 3.0)))
        assert torch.allclose(vec, torch.tensor([*expected, 1.0, -2.0, 3.0], dtype=torch.float64), atol=1e-12)
    # X then Y then Z in the product Rx(a) Ry(b) Rz(c), built by hand.
    a, b, cz = 0.4, -0.7, 2.5
    ra = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=torch.float64)
    rb = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]], dtype=torch.float64)
    rc = torch.tensor([[math.cos(cz), -math.sin(cz), 0], [math.sin(cz), math.cos(cz), 0], [0, 0, 1]],
                      dtype=torch.float64)
    prod = ra @ rb @ rc
    vec = pose_vector(_pose(prod.tolist()))
    assert torch.allclose(vec[:3], torch.tensor([a, b, cz], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(euler_xyz_matrix(vec[:3]), prod, atol=1e-12)


def test_pose_vector_round_trips_in_batches():
    gen = torch.Generator().manual_seed(3)
    q, r = torch.linalg.qr(torch.randn(16, 3, 3, generator=gen, dtype=torch.float64))
    rot = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    rot = rot * torch.det(rot)[:, None, None]  # proper rotations (det +1)
    c2w = torch.eye(4, dtype=torch.float64).repeat(16, 1, 1)
    c2w[:, :3, :3] = rot
    c2w[:, :3, 3] = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    vec = pose_vector(c2w)
    assert vec.shape == (16, 6)
    assert torch.allclose(euler_xyz_matrix(vec[:, :3]), rot, atol=1e-10)
    assert torch.allclose(vec[:, 3:], c2w[:, :3, 3])
    angles = torch.rand(16, 3, generator=gen, dtype=torch.float64) * 2 - 1  # |b| < pi/2
    assert torch.allclose(pose_vector(_pose(euler_xyz_matrix(angles[0]).tolist()))[:3], angles[0], atol=1e-12)
    back = pose_vector(torch.cat([euler_xyz_matrix(angles), torch.zeros(16, 3, 1, dtype=torch.float64)], -1))
    assert torch.allclose(back[:, :3], angles, atol=1e-12)
    # Gimbal lock (b = pi/2): the angles are not unique, but they rebuild the same rotation.
    locked = euler_xyz_matrix(torch.tensor([0.3, math.pi / 2, 0.2], dtype=torch.float64))
    assert torch.allclose(euler_xyz_matrix(pose_vector(_pose(locked.tolist()))[:3]), locked, atol=1e-7)
    with pytest.raises(ValueError):
        pose_vector(torch.eye(3))


def test_pixel_coords_corners_order_and_resizing():
    height, width = 4, 6
    coords = pixel_coords(height, width)
    assert coords.shape == (height * width, 2)
    # (column, row), row-major, outer pixel edges at -1 and 1.
    assert torch.allclose(coords[0], torch.tensor([-1 + 1 / width, -1 + 1 / height]))
    assert torch.allclose(coords[width - 1], torch.tensor([1 - 1 / width, -1 + 1 / height]))
    assert torch.allclose(coords[-width], torch.tensor([-1 + 1 / width, 1 - 1 / height]))
    assert torch.allclose(coords[-1], torch.tensor([1 - 1 / width, 1 - 1 / height]))
    assert coords.abs().max() < 1
    # Same order as the core's image pixels; a point keeps its coordinate when the image is resized.
    xy = image_pixels(Intrinsics(width, height, 1.0, 1.0, 0.0, 0.0))
    assert torch.allclose(normalized_pixels(xy, height, width), coords)
    half = scale_pixel_coordinates(xy, 0.5)
    assert torch.allclose(normalized_pixels(half, height // 2, width // 2), coords, atol=1e-6)


# ----------------------------------------------------------------------------- the net

def test_frame_codes_and_bad_frames():
    torch.manual_seed(1)
    net = TorsoNet(TorsoConfig(grid_levels=4, grid_finest=64, grid_log2_table=10), n_frames=3)
    assert net.codes.shape == (3, 8)
    assert 0.03 < float(net.codes.detach().std()) < 0.3  # randn * 0.1
    coords, pose = pixel_coords(5, 4), torch.tensor([0.1, -0.2, 0.3, 0.0, 0.1, 2.0])
    alpha, rgb = net(coords, pose, None)
    assert alpha.shape == (20, 1) and rgb.shape == (20, 3)
    assert ((alpha > 0) & (alpha < 1)).all() and ((rgb > 0) & (rgb < 1)).all()
    assert torch.equal(net(coords, pose, 0)[1], rgb)  # None = the code of frame 0
    assert not torch.allclose(net(coords, pose, 2)[1], rgb)
    assert not torch.allclose(net(coords, pose * 2, 0)[1], rgb)
    with pytest.raises(FaceNerfError, match="frame 3"):
        net(coords, pose, 3)
    with pytest.raises(FaceNerfError):
        TorsoNet(TorsoConfig(), n_frames=0)
    with pytest.raises(FaceNerfError):
        TorsoConfig(occupancy_dilation=4)


def test_param_groups_cover_every_parameter_once():
    net = TorsoNet(TorsoConfig(grid_levels=4, grid_finest=64, grid_log2_table=10), n_frames=2)
    groups = net.param_groups()
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in net.parameters()) and len(set(seen)) == len(seen)
    assert [g["lr"] for g in groups] == [5e-3, 5e-4]
    assert groups[0]["params"] == [net.grid.embeddings]
    names = {n for n, _ in net.named_parameters()}
    assert "codes" in names and not any("bias" in n for n in names)  # bias-free MLPs


def test_tiny_fit_learns_a_torso_silhouette(fitted):
    net, coords, target, background, pose, start = fitted
    with torch.no_grad():
        alpha, rgb = net(coords, pose, 0)
    pred = torso_over_background(rgb, alpha, background)
    gt = torso_over_background(target[:, :3], target[:, 3:], background)
    psnr = _psnr(pred, gt)
    assert start < 15.0 and psnr > FIT_MIN_PSNR, (start, psnr)
    assert float(((alpha > 0.5).float() == target[:, 3:]).float().mean()) > 0.99


# ----------------------------------------------------------------------------- occupancy

def test_occupancy_grid_update_dilation_and_decay():
    occ = TorsoOccupancy(resolution=16, dilation=5, decay=0.95, threshold=0.01)
    coords = pixel_coords(16, 16)
    assert occ.mask(coords).all()  # fresh grid: nothing skipped

    def disk(points):  # alpha 1 in the 2 x 2 central cells, else 0
        return (points.abs().max(dim=-1).values < 0.125).float()[:, None]

    occ.update(disk)
    grid = occ.occupied
    assert grid[5:11, 5:11].all()  # the 2 x 2 cells dilated by two cells on each side
    assert int(grid.sum()) == 36
    assert torch.equal(occ.mask(coords), grid.reshape(-1))  # cell (r, c) is pixel r * 16 + c
    occ.update(lambda points: torch.zeros(points.shape[0], 1))
    assert torch.allclose(occ.alpha[5:11, 5:11], torch.full((6, 6), 0.95))  # EMA keeps the memory
    assert int(occ.occupied.sum()) == 36
    for _ in range(100):  # the threshold min(0.01, mean) follows a fading torso ...
        occ.update(lambda points: torch.zeros(points.shape[0], 1))
    assert int(occ.occupied.sum()) == 36 and float(occ.alpha.max()) < 0.01
    occ.update(lambda points: (points[:, :1] < -0.75).float())  # ... until a torso shows elsewhere
    assert occ.occupied[:, :4].all() and int(occ.occupied.sum()) == 16 * 4


def test_occupancy_skips_empty_pixels_without_changing_the_image(fitted):
    net, coords, target, background, pose, _ = fitted
    net.update_occupancy(pose, 0)
    keep = net.occupancy.mask(coords)
    assert 0 < int(keep.sum()) < 0.8 * len(keep)  # the ellipse, dilated, not the whole image
    seen = []
    hook = net.color.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            alpha_fast, rgb_fast = net.render(coords, pose, 0)
            alpha_full, rgb_full = net.render(coords, pose, 0, use_occupancy=False)
    finally:
        hook.remove()
    assert seen == [int(keep.sum()), len(keep)]  # skipped pixels never reach the net
    cut = min(net.config.alpha_threshold, float(net.occupancy.alpha.mean()))
    assert float(alpha_full[~keep].max()) <= cut  # what was skipped was (near) transparent
    assert torch.equal(alpha_fast[keep], alpha_full[keep]) and torch.equal(rgb_fast[keep], rgb_full[keep])
    head, weight = torch.zeros(len(keep), 3), torch.zeros(len(keep), 1)
    fast = composite(head, weight, rgb_fast, alpha_fast, background)
    full = composite(head, weight, rgb_full, alpha_full, background)
    assert float((fast - full).abs().max()) <= cut
