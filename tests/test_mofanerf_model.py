"""MoFaNeRF networks: sizes of the released model, layer maths, fields and a training step."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from devices import DEVICES

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import pixel_rays
from facenerf.core.renderer import RenderSettings
from facenerf.engine.trainer import move_to
from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.layers import SkipTrunk, split_linear
from facenerf.models.mofanerf.model import MoFaNeRF, count_parameters
from facenerf.preprocess.training.rig import mofanerf_pose

TINY = dict(multires=4, multires_views=2, netdepth=4, netwidth=32, netdepth_fine=4, netwidth_fine=32,
            xyz_depth=2, skip=2, shape_dim=8, texture_dim=8, exp_dim=6, n_expressions=5, ism_width=16,
            ism_depth=2, tex_size=32, tex_channels=(8, 8, 16), tex_hidden=32, tex_decoder_depth=1)


def tiny_model(**kw) -> MoFaNeRF:
    torch.manual_seed(0)
    settings = RenderSettings(n_samples=8, n_importance=8, perturb=False)
    return MoFaNeRF(MoFaNeRFConfig(**{**TINY, **kw}), lrate=5e-3, train_settings=settings)


def test_full_size_parameter_counts_match_the_released_model():
    with torch.device("meta"):  # construct only: no memory, no compute
        model = MoFaNeRF(MoFaNeRFConfig())
    assert count_parameters(model.coarse) == 1_598_852
    assert count_parameters(model.fine) == 27_502_084
    assert count_parameters(model.texture_encoder) == 3_297_088
    assert count_parameters(model.ism) == 225_852
    assert tuple(model.expression_codes.shape) == (20, 30)
    sd = model.state_dict()
    expected = {
        "coarse.xyz_encoder.block1.0.weight": (256, 93),
        "coarse.density_trunk.block1.0.weight": (256, 306),
        "coarse.density_trunk.block2.0.weight": (256, 562),
        "coarse.colour_trunk.block2.0.weight": (256, 768),
        "coarse.view_layer.weight": (128, 283),
        "fine.density_trunk.block2.0.weight": (1024, 2098),
        "fine.colour_trunk.block1.0.weight": (1024, 1280),
        "fine.colour_trunk.block2.0.weight": (1024, 2304),
        "fine.view_layer.weight": (512, 1051),
        "fine.rgb_head.weight": (3, 512),
        "texture_encoder.fc.weight": (512, 4096),
        "texture_encoder.convs.6.weight": (256, 128, 4, 4),
        "ism.scale.weight": (30, 256),
    }
    for name, shape in expected.items():
        assert tuple(sd[name].shape) == shape, name
    n_linear = lambda net: sum(isinstance(m, torch.nn.Linear) for m in net.modules())  # noqa: E731
    assert n_linear(model.coarse) == 23 and n_linear(model.fine) == 27


def test_logstd_head_is_kept_frozen_and_out_of_the_optimiser():
    model = tiny_model()
    assert model.texture_encoder.logstd is not None
    assert not model.texture_encoder.logstd.weight.requires_grad
    trained = {id(p) for g in model.param_groups()["main"] for p in g["params"]}
    assert id(model.texture_encoder.logstd.weight) not in trained
    assert id(model.expression_codes) in trained
    assert len(trained) == sum(1 for p in model.parameters() if p.requires_grad)


def test_split_linear_equals_concatenation_with_shared_and_per_row_codes():
    torch.manual_seed(1)
    layer = torch.nn.Linear(5 + 7 + 3, 11)
    code = torch.randn(1, 5, requires_grad=True)
    feat = torch.randn(9, 7, requires_grad=True)
    rows = torch.randn(9, 3)
    ours = split_linear(layer, [code, feat, rows])
    ref = layer(torch.cat([code.expand(9, 5), feat, rows], -1))
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours.square().sum(), [code, feat, layer.weight])
    g_ref = torch.autograd.grad(ref.square().sum(), [code, feat, layer.weight])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


def test_skip_trunk_matches_the_concatenating_reference():
    torch.manual_seed(2)
    trunk = SkipTrunk(code_dim=4, feature_dim=6, width=8, depth=5, skip=3)
    assert len(trunk.block1) == 3 and len(trunk.block2) == 2
    assert trunk.block2[0].in_features == 4 + 6 + 8
    code, feat = torch.randn(1, 4), torch.randn(10, 6)
    x = torch.cat([code.expand(10, 4), feat], -1)
    h = x
    for layer in trunk.block1:
        h = F.relu(layer(h))
    h = torch.cat([x, h], -1)
    for layer in trunk.block2:
        h = F.relu(layer(h))
    torch.testing.assert_close(trunk(feat, code), h)


def test_ism_scales_and_shifts_the_expression_code():
    model = tiny_model()
    beta = torch.randn(1, 8)
    eps = torch.rand(1, 6)
    scale, shift = model.ism.scale_shift(beta)
    torch.testing.assert_close(model.ism(beta, eps), scale * eps + shift)
    other = model.ism(torch.randn(1, 8), eps)
    assert not torch.allclose(other, model.ism(beta, eps))


def test_field_outputs_and_dependence_on_codes():
    model = tiny_model()
    uv = torch.rand(1, 3, 64, 64)  # resized to tex_size inside the encoder
    beta = torch.randn(8)
    codes0 = model.face_codes(beta, expression_index=0, uv=uv)
    codes1 = model.face_codes(beta, expression_index=3, uv=uv)
    assert codes0.texture.shape == (1, 8) and codes0.expression.shape == (1, 6)
    coarse, fine = model.fields(codes0)
    pts, dirs = torch.randn(50, 3), F.normalize(torch.randn(50, 3), dim=-1)
    density, rgb = fine(pts, dirs)
    assert density.shape == (50,) and rgb.shape == (50, 3)
    assert (density >= 0).all() and ((rgb > 0) & (rgb < 1)).all()
    d1, _ = model.fields(codes1)[1](pts, dirs)
    d0c, _ = coarse(pts, dirs)
    assert not torch.allclose(density, d1)
    assert not torch.allclose(density, d0c)


def _batch(model: MoFaNeRF, n_rays: int = 32, device: str = "cpu") -> dict:
    K = Intrinsics(16, 16, 30.0, 30.0, 8.0, 8.0)
    gen = torch.Generator().manual_seed(3)
    xy = torch.randint(0, 16, (n_rays, 2), generator=gen).float()
    rays = pixel_rays(K, mofanerf_pose(0.0, 0.0), xy, near=8.0, far=26.0)
    batch = {"rays": rays, "rgb": torch.rand(n_rays, 3, generator=gen), "shape": torch.randn(1, 8, generator=gen),
             "uv": torch.rand(1, 3, 32, 32, generator=gen), "expression": torch.tensor([2])}
    return move_to(batch, torch.device(device))


@pytest.mark.parametrize("device", DEVICES)
def test_loss_decreases_on_a_repeated_batch(device):
    model = tiny_model().to(device)
    batch = _batch(model, device=device)
    opt = torch.optim.Adam([p for g in model.param_groups()["main"] for p in g["params"]], lr=5e-3)
    first = None
    for step in range(25):
        losses, scalars = model.training_step(batch, step)
        opt.zero_grad()
        losses["main"].backward()
        opt.step()
        first = scalars["loss"] if first is None else first
    assert set(scalars) >= {"psnr", "psnr_coarse", "loss", "mse"}
    assert scalars["loss"] < 0.5 * first
    assert model.expression_codes.grad[2].abs().sum() > 0  # the batch's code is trained
    assert model.expression_codes.grad[0].abs().sum() == 0  # the others are not



@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_training_step_and_fast_render_under_autocast(dtype, device):
    """bf16/fp16 autocast (on the CPU, its dtypes stand in for CUDA's): the loss and every gradient
    are finite and the renders come back in fp32."""
    from dataclasses import replace

    from facenerf.core.rays import image_rays

    model = tiny_model().to(device)
    model.train_settings = replace(model.train_settings, perturb=True)
    with torch.autocast(device, dtype=dtype):
        losses, scalars = model.training_step({**_batch(model, device=device), "seed": 1}, 0)
    losses["main"].backward()
    assert losses["main"].dtype == torch.float32 and torch.isfinite(losses["main"])
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    codes = model.face_codes((torch.randn(8) * 0.1).to(device), expression_index=1,
                             uv=torch.rand(1, 3, 32, 32, device=device))
    rays = image_rays(Intrinsics(12, 12, 30.0, 30.0, 6.0, 6.0), mofanerf_pose(10.0, 20.0), 8.0, 26.0).to(device)
    for fast in (True, False):
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            out = model.render_image(rays, codes, 12, 12, fast=fast)
        assert out["rgb"].dtype == torch.float32 and torch.isfinite(out["rgb"]).all()


def test_config_rejects_impossible_sizes():
    with pytest.raises(FaceNerfError, match="skip"):
        MoFaNeRFConfig(**{**TINY, "netdepth": 2})
    with pytest.raises(FaceNerfError, match="tex_size"):
        MoFaNeRFConfig(**{**TINY, "tex_size": 36})
    cfg = MoFaNeRFConfig(**TINY)
    assert MoFaNeRFConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("device", DEVICES)
def test_fast_render_agrees_with_the_reference_within_its_thresholds(device):
    from dataclasses import replace

    from facenerf.core.rays import image_rays

    model = tiny_model().to(device).eval()
    with torch.no_grad():  # a dense field, so every cell is occupied and rays terminate early
        model.coarse.density_head.bias.fill_(2.0)
        model.fine.density_head.bias.fill_(2.0)
    model.skip_settings = replace(model.skip_settings, bound=30.0, resolution=4, min_weight=0.02, samples_per_round=2,
                                  early_stop_eps=1e-4, colour_stride=1, fill_colour=False)  # the bounded drops alone
    K = Intrinsics(12, 12, 30.0, 30.0, 6.0, 6.0)
    rays = image_rays(K, mofanerf_pose(10.0, 20.0), 8.0, 26.0).to(device)
    codes = model.face_codes((torch.randn(8) * 0.1).to(device), expression_index=1,
                             uv=torch.rand(1, 3, 32, 32, device=device))
    dense = model.render_image(rays, codes, 12, 12, fast=False)
    fast = model.render_image(rays, codes, 12, 12)
    assert all(g.occupied().all() for g in model.occupancy_grids(codes))
    assert fast["skipped_weight"].max() > 0  # the colour threshold did skip samples
    error = (fast["rgb"] - dense["rgb"]).abs().amax(-1)
    # dropped: weights below min_weight (colour only) and the light behind termination (< 1e-4)
    assert (error <= fast["skipped_weight"] + 1e-4 + 1e-5).all()
    assert float(fast["n_evaluated"].mean()) < float(dense["n_evaluated"].mean())
    assert model.grid_cache.builds == 1
    model.render_image(rays, codes, 12, 12)
    assert model.grid_cache.builds == 1  # the grid of a code set is reused
    model.render_image(rays, model.face_codes(torch.randn(8, device=device), expression_index=2,
                                              texture=codes.texture), 12, 12)
    assert model.grid_cache.builds == 2  # new density codes: a new grid


def test_visible_sample_render_of_empty_space_returns_the_background():
    from facenerf.core.rays import image_rays

    model = tiny_model(netwidth_fine=0).eval()  # coarse only
    model.eval_settings = RenderSettings(n_samples=8, n_importance=0, background=(0.2, 0.4, 0.6))
    with torch.no_grad():
        model.coarse.density_head.bias.fill_(-1e3)  # density 0 everywhere: no visible sample
    rays = image_rays(Intrinsics(6, 6, 20.0, 20.0, 3.0, 3.0), mofanerf_pose(0.0, 0.0), 8.0, 26.0)
    codes = model.face_codes(torch.zeros(8), expression_index=0, texture=torch.zeros(1, 8))
    out = model.render_image(rays, codes, 6, 6)
    torch.testing.assert_close(out["rgb"], torch.tensor([0.2, 0.4, 0.6]).expand(6, 6, 3))
    assert float(out["opacity"].abs().max()) == 0.0
    assert not model.occupancy_grids(codes)[0].occupied().any()
    assert float(out["n_evaluated"].max()) == 0.0  # background rays cost no network call


def test_shape_codes_are_standardised_to_facescape_spread_and_scale_free():
    from facenerf.models.mofanerf.model import SHAPE_CODE_SPREAD

    cfg = MoFaNeRFConfig(netdepth=3, netwidth=16, netdepth_fine=3, netwidth_fine=16, skip=2, xyz_depth=2,
                         multires=4, multires_views=2, shape_dim=6, texture_dim=4, exp_dim=3, n_expressions=2,
                         ism_width=8, ism_depth=2, tex_size=16, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1)
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(5, 6, generator=gen) * torch.tensor([0.03, 0.08, 0.5, 0.2, 0.04, 0.06]) + 4.0
    one, other = MoFaNeRF(cfg), MoFaNeRF(cfg)
    one.set_shape_statistics(codes)
    other.set_shape_statistics(codes * 25.0)
    seen = one.standardise_shape(codes)
    torch.testing.assert_close(seen.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(seen.std(0, unbiased=False), torch.full((6,), SHAPE_CODE_SPREAD), rtol=1e-4, atol=0)
    torch.testing.assert_close(other.standardise_shape(codes * 25.0), seen, rtol=1e-4, atol=1e-6)
    flat = codes.clone()
    flat[:, 3] = 1.0 + 1e-6 * torch.arange(5.0)            # a dimension that barely varies is not blown up
    one.set_shape_statistics(flat)
    floor = 0.1 * flat.std(0, unbiased=False).median()
    torch.testing.assert_close(one.shape_code_scale[3], SHAPE_CODE_SPREAD / floor, rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="at least 2 identities"):
        one.set_shape_statistics(codes[:1])
    old = {k: v for k, v in one.state_dict().items() if not k.startswith("shape_code_")}
    upgraded = MoFaNeRF.upgrade_state_dict(old)                     # checkpoints from before: no change
    assert torch.equal(upgraded["shape_code_scale"], torch.ones(6)) and torch.equal(upgraded["shape_code_mean"],
                                                                                     torch.zeros(6))


def test_collapse_monitor_warns_once_and_only_after_a_lasting_collapse():
    from facenerf.models.mofanerf.collapse import CollapseMonitor

    monitor = CollapseMonitor(patience=50, warmup=10)
    healthy = [monitor.update(s, 24.0, 22.0, 0.2, 0.22) for s in range(300)]
    assert not any(healthy)
    blips = [monitor.update(300 + s, 9.0 if s % 40 else 22.0, 22.0, 0.2, 0.22) for s in range(201)]
    assert not any(blips)                                           # never 50 bad steps in a row
    messages = [monitor.update(501 + s, 9.0, 22.0, 0.0, 0.22) for s in range(200)]
    said = [m for m in messages if m]
    assert len(said) == 1 and messages.index(said[0]) == 49
    assert "13.0 dB below the coarse" in said[0] and "standardise_codes" in said[0]
    flat = CollapseMonitor(patience=20, warmup=0)
    said = [m for m in (flat.update(s, 15.0, None, 0.001, 0.2) for s in range(40)) if m]
    assert len(said) == 1 and "constant images" in said[0]
    dark = CollapseMonitor(patience=20, warmup=0)                   # a black target is not a collapse
    assert not any(dark.update(s, 40.0, None, 0.0, 0.0) for s in range(40))


def test_skip_grid_box_holds_a_real_size_head_with_margin():
    """The fast path drops density outside its grid box: the box must hold the real-size mean head
    (anthropometric size, see facenerf.data.synthetic) with the meshing margin on every side."""
    from facenerf.fitting.meshing import head_box
    from facenerf.models.mofanerf.acceleration import SkipSettings

    bound = SkipSettings().bound
    lo, hi = head_box()  # the mean head's box grown by 15% of its size per side, scene units
    assert max(abs(v) for v in lo + hi) < bound


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own import
def test_compiled_networks_match_eager_in_training_and_fast_rendering(device):
    from facenerf.core.rays import image_rays

    from torch._dynamo.utils import counters

    if device == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    # cuDNN may run fp32 convolutions in TF32 on a GPU, and eager and compiled code pick their own
    tol = dict(rtol=1e-4, atol=1e-6) if device == "cpu" else dict(rtol=2e-3, atol=1e-5)
    eager, compiled = tiny_model().to(device), tiny_model().to(device)
    compiled.compile_networks()
    counters.clear()
    assert set(compiled.state_dict()) == set(eager.state_dict())  # checkpoints stay interchangeable
    batch = _batch(eager, device=device)
    grads = []
    for model in (eager, compiled):
        torch.manual_seed(5)
        losses, _ = model.training_step(batch, 0)
        losses["main"].backward()
        grads.append((float(losses["main"].detach()), model.fine.density_head.weight.grad.clone(), model.expression_codes.grad[2].clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=tol["rtol"] / 10)
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, **tol)
    K = Intrinsics(12, 12, 30.0, 30.0, 6.0, 6.0)
    rays = image_rays(K, mofanerf_pose(10.0, 20.0), 8.0, 26.0).to(device)
    with torch.no_grad():
        renders = [m.eval().render_image(rays, m.face_codes(torch.zeros(8, device=device), expression_index=1,
                                                            uv=batch["uv"]), 12, 12)
                   for m in (eager, compiled)]
    torch.testing.assert_close(renders[0]["rgb"], renders[1]["rgb"], rtol=tol["rtol"], atol=10 * tol["atol"])
    if device == "cpu":  # on a GPU a last-bit difference may move a sample across a threshold
        assert torch.equal(renders[0]["n_evaluated"], renders[1]["n_evaluated"])
    assert counters["stats"]["unique_graphs"] >= 2  # the compiled entries did run
