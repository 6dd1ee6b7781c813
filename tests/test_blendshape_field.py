"""NeRFBlendShape head field, occupancy-grid update and losses: tiny sizes, checkable answers."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from devices import DEVICES
from torch import nn

from facenerf.core.encodings import encode_hash_grid
from facenerf.core.scene_box import to_unit_cube
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.config import REFERENCE_BOUND, BlendShapeConfig, BlendShapeRunConfig, \
    BlendShapeSceneConfig
from facenerf.models.blendshape.field import BlendShapeField
from facenerf.models.blendshape.losses import PatchLoss, check_patch_size, image_gradients, sparsity_l1, \
    structure_loss
from facenerf.models.blendshape.model import NeRFBlendShape

TINY = BlendShapeConfig(expr_dim=3, num_levels=2, level_dim=2, base_resolution=4, desired_resolution=8,
                        log2_hashmap_size=10, num_layers=1, hidden_dim=8, geo_feat_dim=4, hidden_dim_color=8,
                        grid_impl="torch")
EXPR_MAX = torch.tensor([0.8, 0.5, 1.0])
EXPR_MIN = torch.tensor([0.0, 0.1, -1.0])


def tiny_field(bound: float = 1.0, seed: int = 0) -> BlendShapeField:
    torch.manual_seed(seed)
    field = BlendShapeField(TINY, bound, EXPR_MAX, EXPR_MIN)
    with torch.no_grad():
        field.tables.normal_(0.0, 0.5)  # well away from the near-zero initialisation
    return field


def test_coefficients_get_the_mean_weight_and_are_clamped_into_the_training_range():
    field = tiny_field()
    raw = torch.tensor([[0.3, 0.0, 2.0], [-1.0, 0.7, -3.0]])
    assert torch.allclose(field.coefficients(raw), torch.tensor([[1.0, 0.3, 0.1, 1.0], [1.0, 0.0, 0.5, -1.0]]))
    inside = torch.tensor([0.4, 0.2, 0.5])
    assert torch.allclose(field.coefficients(inside), torch.cat([torch.ones(1), inside]))
    with pytest.raises(ValueError, match="expected 3 coefficients"):
        field.coefficients(torch.zeros(4))


def test_bound_field_features_are_the_clamped_weighted_sum_of_the_per_table_lookups():
    field = tiny_field()
    points = torch.rand(50, 3) * 2 - 1
    unit = to_unit_cube(points, field.aabb)
    expression = torch.tensor([0.5, 0.9, -0.25])  # 0.9 is clamped to 0.5
    weights = torch.tensor([1.0, 0.5, 0.5, -0.25])
    table = field.bind(expression).table
    blended = encode_hash_grid(unit, table, field.meta, implementation="torch")
    separate = sum(w * encode_hash_grid(unit, field.tables[k], field.meta, implementation="torch")
                   for k, w in enumerate(weights))
    assert torch.allclose(blended, separate, atol=1e-6)
    # linear in the coefficients inside the range: f(a) + f(b) - f(0) = f(a + b)
    a, b = torch.tensor([0.2, 0.1, 0.3]), torch.tensor([0.3, 0.2, -0.5])
    enc = lambda e: encode_hash_grid(unit, field.bind(e).table, field.meta, implementation="torch")  # noqa: E731
    zero = torch.tensor([0.0, 0.1, 0.0])  # the lower end of the range: clamping leaves every vector unchanged
    assert torch.allclose(enc(a + b - zero), enc(a) + enc(b) - enc(zero), atol=1e-6)


def test_gradients_reach_every_table_with_its_coefficient():
    field = tiny_field()
    points = torch.rand(20, 3) * 2 - 1
    head = field.bind(torch.tensor([0.5, 0.3, 0.0]))
    sigma, features = head.density(points)
    (sigma.sum() + head.colour(features, torch.nn.functional.normalize(points, dim=-1)).sum()).backward()
    norms = field.tables.grad.flatten(1).norm(dim=1)
    assert norms[0] > 0 and norms[1] > 0 and norms[2] > 0
    assert norms[3] == 0  # weight 0 for the third coefficient: no gradient
    assert torch.allclose(field.tables.grad[1], 0.5 * field.tables.grad[0], atol=1e-7)


def test_world_density_is_box_relative_so_units_do_not_change_optical_depth():
    small, large = tiny_field(bound=1.0), tiny_field(bound=4.0)
    large.load_state_dict({k: v for k, v in small.state_dict().items() if k != "aabb"}, strict=False)
    points = torch.rand(30, 3) * 2 - 1
    e = torch.tensor([0.3, 0.2, 0.1])
    sigma_small = small.bind(e).density(points)[0]
    sigma_large = large.bind(e).density(points * 4.0)[0]
    assert torch.allclose(sigma_small, 4.0 * sigma_large, rtol=1e-5)          # same optical depth per box fraction
    assert small.density_scale == pytest.approx(REFERENCE_BOUND)


class _Feature0(nn.Module):
    """A density MLP stand-in: raw density = 200 x feature 0 - 20 (softplus ~ 0 where the feature is 0)."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        raw = 200.0 * feats[:, :1] - 20.0
        return torch.cat([raw, feats.new_zeros(feats.shape[0], TINY.geo_feat_dim)], dim=-1)


def _blob_field() -> BlendShapeField:
    """Tables: zero except table 2 (coefficient 2), which holds 1.0 in feature 0 at the coarse level's
    vertices 0 and 1 along x. Coefficient 2's range is [0.1, 0.5]."""
    field = tiny_field()
    with torch.no_grad():
        field.tables.zero_()
        res = field.meta.level_resolutions[0] + 1
        ii, jj, kk = torch.meshgrid(*(torch.arange(res),) * 3, indexing="ij")
        rows = (ii + jj * res + kk * res * res).reshape(-1)  # dense level 0, x-major
        left = ii.reshape(-1) < 2  # vertices 0 and 1: feature 1 up to x = -2/3, 0 from x = 0
        field.tables[2, rows[left], 0] = 1.0
    field.sigma_net = _Feature0()
    return field


def test_expression_aware_grid_update_marks_empty_space_empty_and_keeps_expression_only_matter():
    run = BlendShapeRunConfig(model=TINY, scene=BlendShapeSceneConfig(bound=1.0, grid_size=8, cuda_ray=True))
    model = NeRFBlendShape(run, EXPR_MAX, EXPR_MIN)
    model.field = _blob_field()
    model.update_grid(step=None)
    occupied = model.grid.occupied()  # [8, 8, 8] indexed (x, y, z)
    assert occupied[:2].all()           # x in [-1, -0.5]: matter of coefficient 2 at its maximum
    assert not occupied[5:].any()       # x > 0.25: empty for every basis expression
    # the mean expression alone sees nothing there (coefficient 2 at its minimum 0.1 gives a weak blob)
    mean_only = model.field.box_density(model.grid.cell_centers()[:64], model.field.bind(torch.zeros(3)).table)[0]
    basis = model.field.expression_density_fn()(model.grid.cell_centers()[:64])
    assert (basis >= mean_only - 1e-6).all() and basis.max() > 50 * mean_only.max()


@pytest.mark.parametrize("device", DEVICES)
def test_image_renders_take_whole_frames_per_call_on_a_gpu_and_cache_sized_chunks_on_a_cpu(device):
    """On a GPU every render call costs a few hundred launches, so a frame goes in as few calls as
    memory allows; the split changes no sample, so the image is the same."""
    from facenerf.core.cameras import Intrinsics, orbit_pose
    from facenerf.core.rays import image_rays
    from facenerf.core.renderer import DEFAULT_CHUNK_RAYS, render_image_marched

    run = BlendShapeRunConfig(model=TINY, scene=BlendShapeSceneConfig(bound=1.0, grid_size=8, cuda_ray=True))
    model = NeRFBlendShape(run, EXPR_MAX, EXPR_MIN)
    model.field = tiny_field()
    model.to(device).update_grid(step=None)
    settings = model.march_settings(training=False)
    assert model.march_settings(training=True).chunk_rays == DEFAULT_CHUNK_RAYS
    if device == "cpu":
        assert settings.chunk_rays == DEFAULT_CHUNK_RAYS
    else:  # a GPU with 20 GiB free holds a 512^2 frame of this tiny head in one call
        assert settings.chunk_rays >= 1 << 18
    rays = image_rays(Intrinsics(24, 24, 30.0, 30.0, 12.0, 12.0), orbit_pose(10.0, 20.0, 3.0), 1.0, 5.0).to(device)
    head = model.field.bind(torch.tensor([0.4, 0.3, 0.0], device=device))
    with torch.no_grad():
        whole = render_image_marched(rays, head, model.grid, settings, 24, 24)
        split = render_image_marched(rays, head, model.grid, replace(settings, chunk_rays=100), 24, 24)
    assert float(whole["opacity"].max()) > 0.05  # something in view
    torch.testing.assert_close(whole["rgb"], split["rgb"], rtol=0, atol=1e-6)


def test_without_cuda_ray_the_grid_stays_all_occupied():
    run = BlendShapeRunConfig(model=TINY, scene=BlendShapeSceneConfig(bound=1.0, grid_size=8, cuda_ray=False,
                                                                      update_extra_interval=1))
    model = NeRFBlendShape(run, EXPR_MAX, EXPR_MIN)
    model.field = _blob_field()
    model.on_step_end(0)
    assert model.grid.occupied().all()



@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_training_step_under_autocast_has_finite_losses_and_gradients(dtype, device):
    """--fp16 autocast (on the CPU, its dtypes stand in for CUDA's): the marched render and every loss
    (photometric, mask, patch, sparsity) give a finite fp32 loss and finite gradients. On CUDA the
    hash-grid lookup is the automatic choice (the Triton kernel where it is installed)."""
    from facenerf.core.rays import RayBundle
    from facenerf.engine.trainer import move_to

    cfg = TINY if device == "cpu" else replace(TINY, grid_impl="auto")
    run = BlendShapeRunConfig(model=cfg, scene=BlendShapeSceneConfig(bound=1.0, grid_size=8, cuda_ray=True))
    model = NeRFBlendShape(run, EXPR_MAX, EXPR_MIN, total_steps=10)
    torch.manual_seed(0)
    model.field = BlendShapeField(cfg, 1.0, EXPR_MAX, EXPR_MIN)
    with torch.no_grad():
        model.field.tables.normal_(0.0, 0.5)
    model.to(device)
    n, side = 32, 8  # random rays, then one 8 x 8 patch
    gen = torch.Generator().manual_seed(0)
    ends = torch.rand(n + side * side, 3, generator=gen) * 1.6 - 0.8  # [N, 3] points in the box
    origins = torch.tensor([0.0, 0.0, 3.0]).expand_as(ends).contiguous()
    rays = RayBundle(origins, ends - origins, torch.zeros(len(ends), 1), torch.full((len(ends), 1), 2.0))
    batch = {"rays": rays, "rgb": torch.rand(len(ends), 3, generator=gen), "background": torch.ones(len(ends), 3),
             "mask": torch.ones(len(ends)), "coefficients": torch.tensor([0.4, 0.3, 0.0]), "n_random": n,
             "patch": side}
    with torch.autocast(device, dtype=dtype):
        losses, scalars = model.training_step(move_to(batch, torch.device(device)), 0)
    losses["main"].backward()
    assert losses["main"].dtype == torch.float32 and torch.isfinite(losses["main"])
    assert {"psnr", "mask", "patch", "reg"} <= set(scalars) and scalars["samples_per_ray"] > 0
    assert all(torch.isfinite(p.grad).all() for p in model.field.parameters() if p.grad is not None)
    assert model.field.tables.grad.abs().sum() > 0


def test_weights_free_patch_loss_is_zero_for_equal_patches_and_sees_blur():
    torch.manual_seed(0)
    sharp = torch.zeros(2, 16, 16, 3)
    sharp[:, :, 8:] = 1.0                                     # a vertical edge
    blurred = sharp.clone()
    blurred[:, :, 6:10] = torch.linspace(0.2, 0.8, 4)[None, None, :, None]
    assert float(structure_loss(sharp, sharp)) == pytest.approx(0.0, abs=1e-6)
    loss = structure_loss(blurred.requires_grad_(), sharp)
    assert float(loss.detach()) > 0.05
    loss.backward()
    assert blurred.grad.abs().sum() > 0
    gx, gy = image_gradients(sharp)
    assert gx.shape == (2, 16, 15, 3) and gy.shape == (2, 15, 16, 3) and float(gy.abs().sum()) == 0
    assert PatchLoss().name.startswith("SSIM")
    assert float(PatchLoss()(sharp, sharp)) == pytest.approx(0.0, abs=1e-6)


def test_patch_loss_needs_no_download_and_names_a_missing_weights_file(tmp_path):
    with pytest.raises(FaceNerfError, match="--lpips_weights file not found"):
        PatchLoss(str(tmp_path / "alex.pth"))
    with pytest.raises(FaceNerfError, match="--patch_size 32 does not fit the 24x24"):
        check_patch_size(32, 24, 24)
    assert float(sparsity_l1(torch.tensor([[1.0, -3.0]]))) == 2.0


def test_lpips_is_the_patch_loss_when_its_weights_file_is_given(tmp_path):
    from facenerf.metrics import LPIPS

    torch.manual_seed(0)
    weights = tmp_path / "lpips_alex.pth"
    state = {k: (v.abs() if k.startswith("lin") else v) for k, v in LPIPS().state_dict().items()}  # heads >= 0
    torch.save(state, weights)
    loss = PatchLoss(str(weights))
    assert loss.name.startswith("LPIPS")
    a, b = torch.rand(2, 32, 32, 3), torch.rand(2, 32, 32, 3)
    assert float(loss(a, a).detach()) == pytest.approx(0.0, abs=1e-6) and float(loss(a, b).detach()) > 0
    with pytest.raises(FaceNerfError, match="LPIPS needs patches of at least 32 pixels"):
        check_patch_size(16, 64, 64, lpips=True)
