"""The fit objective and loop on a random tiny MoFaNeRF: fast render = full render, priors,
recovery of self-rendered codes, fast path, determinism and exact resume."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from devices import DEVICES

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import image_rays, pixel_rays
from facenerf.core.renderer import RenderSettings
from facenerf.data.ray_batches import LandmarkSampling
from facenerf.fitting.fitter import Fitter, FitSettings
from facenerf.fitting.inputs import FitTarget
from facenerf.fitting.objective import gaussian_prior, nearest_code_distance
from facenerf.fitting.result import FitResult
from facenerf.fitting.schedule import FitSchedule
from facenerf.fitting.stats import CodeStatistics
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.preprocess.training.rig import mofanerf_pose
from facenerf.runtime import RunSettings

TINY = dict(multires=4, multires_views=2, netdepth=4, netwidth=32, netdepth_fine=4, netwidth_fine=32,
            xyz_depth=2, skip=2, shape_dim=8, texture_dim=8, exp_dim=6, n_expressions=3, ism_width=16,
            ism_depth=2, tex_size=16, tex_channels=(8, 8), tex_hidden=16, tex_decoder_depth=1,
            tex_logstd_head=False)
SETTINGS = RenderSettings(n_samples=8, n_importance=8, perturb=False)
K = Intrinsics(12, 12, 28.0, 28.0, 6.0, 6.0)


def tiny_model(fine: bool = True) -> MoFaNeRF:
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(**{**TINY, **({} if fine else {"netwidth_fine": 0})})
    model = MoFaNeRF(cfg, eval_settings=SETTINGS if fine else RenderSettings(n_samples=12, n_importance=0))
    with torch.no_grad():  # a visible, coloured blob: positive density bias near the origin
        model.coarse.density_head.bias.fill_(2.0)
        if model.fine is not None:
            model.fine.density_head.bias.fill_(2.0)
    return model


def stats() -> CodeStatistics:
    return CodeStatistics(torch.zeros(8), torch.ones(8), torch.zeros(8), torch.ones(8), n_identities=4)


def test_fast_fit_render_equals_the_full_render_in_value_and_gradient():
    model = tiny_model()
    shape = torch.randn(1, 8, requires_grad=True)
    texture = torch.randn(1, 8, requires_grad=True)
    eps = torch.randn(1, 6, requires_grad=True)
    rot = torch.zeros(3, requires_grad=True)
    c2w = mofanerf_pose(5.0, 10.0)
    xy = torch.tensor([[6.0, 6.0], [3.0, 8.0], [9.0, 2.0], [0.0, 11.0]])
    outputs, grads = [], []
    for fast in (True, False):
        from facenerf.fitting.pose import apply_correction, axis_angle_to_matrix

        pose = apply_correction(c2w, axis_angle_to_matrix(rot), torch.zeros(3))
        rays = pixel_rays(K, pose, xy, 8.0, 26.0)
        codes = model.face_codes(shape, expression=eps, texture=texture)
        settings = replace(SETTINGS, coarse_colour=not fast)  # density-only, gradient-free coarse pass
        rgb = model.render_rays(rays, codes, settings)["rgb"]
        outputs.append(rgb)
        grads.append(torch.autograd.grad(rgb.square().sum(), [shape, texture, eps, rot]))
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert grads[0][1].abs().sum() > 0 and grads[0][3].abs().sum() > 0


def test_priors_vanish_at_their_centres():
    mean, std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    assert float(gaussian_prior(mean, mean, std)) == 0.0
    assert float(gaussian_prior(mean + std, mean, std)) == 0.5
    learned = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    assert float(nearest_code_distance(learned[1], learned)) == 0.0
    assert float(nearest_code_distance(torch.tensor([1.0, 0.9]), learned)) > 0.0


def _self_target(model: MoFaNeRF) -> tuple[FitTarget, torch.Tensor]:
    """An image the model renders with known codes (texture far from the mean)."""
    gen = torch.Generator().manual_seed(5)
    texture = torch.randn(8, generator=gen) * 4.0
    codes = model.face_codes(torch.zeros(1, 8), expression_index=0, texture=texture[None])
    c2w = mofanerf_pose(0.0, 0.0)
    image = model.render_image(image_rays(K, c2w, 8.0, 26.0), codes, 12, 12)["rgb"].clamp(0, 1)
    mask = torch.ones(12, 12, dtype=torch.bool)
    return FitTarget("self", __import__("pathlib").Path("self.png"), image, mask, None, c2w, K, 8.0, 26.0,
                     "synthetic"), texture


RUN = RunSettings(progress=False, seed=3)


def _settings(iterations: int) -> FitSettings:
    schedule = FitSchedule(iterations, (0.5, 1.0), (0.0, 0.3), lr_shape=0.02, lr_expression=0.02, lr_texture=0.05,
                           lr_rotation=1e-3, lr_translation=1e-3, lr_gain=1e-3)
    return FitSettings(schedule=schedule, n_rays=64, landmarks=LandmarkSampling(lm_share=0.0), log_every=1)


@pytest.mark.parametrize("device", DEVICES)
def test_fit_recovers_a_self_rendered_texture_deterministically(device):
    model = tiny_model()
    target, texture = _self_target(model)
    runs = []
    for amp in ("none", "none") + (("bf16",) if device == "cuda" else ()):
        fitter = Fitter(model, target, stats(), _settings(40), SETTINGS, device, run=replace(RUN, amp=amp))
        start = float(((fitter.render() - target.image) ** 2).mean())
        fitter.run()
        runs.append(fitter)
    for fitter in runs:
        end = float(((fitter.render() - target.image) ** 2).mean())
        assert end < 0.4 * start
        assert float((fitter.variables.texture.detach().cpu() - texture).norm()) < float(texture.norm())
    assert not any(p.requires_grad for p in model.parameters())  # the network stays frozen
    torch.testing.assert_close(runs[0].variables.texture, runs[1].variables.texture)  # deterministic
    assert runs[0].history["iteration"][-1] == 40


def test_resume_from_a_fit_file_continues_exactly(tmp_path):
    model = tiny_model(fine=False)
    target, _ = _self_target(tiny_model())
    straight = Fitter(model, target, stats(), _settings(12), model.eval_settings, run=RUN)
    straight.run()
    first = Fitter(model, target, stats(), _settings(12), model.eval_settings, run=RUN)
    first.run(stop_at=5)
    path = first.result().save(tmp_path / "fit.pt")
    partial = FitResult.load(path)
    assert partial.iteration == 5 and partial.iterations == 12 and not partial.complete
    second = Fitter(model, target, stats(), _settings(12), model.eval_settings, run=RUN)
    second.resume(partial)
    second.run()
    assert second.iteration == 12
    for name in ("shape", "texture", "expression", "log_gain"):
        torch.testing.assert_close(getattr(second.variables, name), getattr(straight.variables, name))
    torch.testing.assert_close(second.variables.pose(), straight.variables.pose())
