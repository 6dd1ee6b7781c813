"""PSNR closed forms, SSIM against scikit-image on a real photo, LPIPS availability and plumbing."""

import numpy as np
import pytest
import torch

from facenerf.errors import FaceNerfError
from facenerf.metrics import LPIPS, image_metrics, load_lpips, lpips_availability, psnr, ssim


def _astronaut_pair(noise=0.05, seed=0):
    from skimage import data

    image = data.astronaut()[120:184, 180:244].astype(np.float64) / 255.0  # [64, 64, 3] face region
    rng = np.random.default_rng(seed)
    distorted = np.clip(image + rng.normal(0.0, noise, image.shape), 0.0, 1.0)
    return image, distorted


def test_psnr_closed_form_constant_offset():
    target = torch.rand(16, 16, 3) * 0.5
    assert float(psnr(target + 0.1, target)) == pytest.approx(20.0, abs=1e-4)     # mse 1e-2
    assert float(psnr(target + 0.01, target)) == pytest.approx(40.0, abs=1e-3)    # mse 1e-4
    assert float(psnr(target + 0.2, target, max_val=2.0)) == pytest.approx(20.0, abs=1e-4)
    assert torch.isinf(psnr(target, target))


def test_psnr_batch_is_per_image():
    target = torch.rand(2, 3, 8, 8) * 0.5
    pred = target.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    per_image = psnr(pred, target, reduction="none")
    assert per_image.shape == (2,)
    assert torch.allclose(per_image, torch.tensor([20.0, 40.0]), atol=1e-3)
    assert float(psnr(pred, target)) == pytest.approx(30.0, abs=1e-3)


@pytest.mark.parametrize("noise", [0.02, 0.1])
def test_ssim_matches_skimage_reference(noise):
    from skimage.metrics import structural_similarity

    a, b = _astronaut_pair(noise)
    reference = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=2)
    ours64 = float(ssim(torch.from_numpy(a), torch.from_numpy(b)))
    ours32 = float(ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float()))
    assert ours64 == pytest.approx(reference, abs=1e-9)
    assert ours32 == pytest.approx(reference, abs=1e-5)
    assert 0.0 < reference < 1.0


def test_ssim_batch_layout_identity_and_gradient():
    a, b = _astronaut_pair(0.05)
    hwc_a, hwc_b = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    batch = torch.stack([hwc_a, hwc_b]).permute(0, 3, 1, 2)                  # [2, 3, 64, 64]
    other = torch.stack([hwc_b, hwc_b]).permute(0, 3, 1, 2)
    values = ssim(batch, other, reduction="none")
    assert values.shape == (2,)
    assert float(values[0]) == pytest.approx(float(ssim(hwc_a, hwc_b)), abs=1e-6)
    assert float(values[1]) == pytest.approx(1.0, abs=1e-6)
    pred = hwc_b.clone().requires_grad_(True)
    ssim(pred, hwc_a).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0



@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ssim_is_computed_in_full_precision_under_autocast(dtype):
    """The variances are differences of blurred squares: an autocast fp16/bf16 convolution would cancel them."""
    a, b = _astronaut_pair(0.02)
    a, b = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    exact = float(ssim(a, b))
    with torch.autocast("cpu", dtype=dtype):
        assert float(ssim(a, b)) == pytest.approx(exact, abs=1e-6)


def test_metric_input_errors():
    with pytest.raises(FaceNerfError, match="smaller than"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))
    with pytest.raises(FaceNerfError, match="sizes differ"):
        psnr(torch.rand(8, 8, 3), torch.rand(8, 9, 3))


def _fake_lpips_state(seed=0):
    torch.manual_seed(seed)
    state = LPIPS().state_dict()
    return {k: (v.abs() if k.startswith("lin") else v) for k, v in state.items()}


def test_lpips_unavailable_without_weights(tmp_path):
    ok, reason = lpips_availability(None)
    assert not ok and reason.startswith("unavailable")
    ok, reason = lpips_availability(tmp_path / "missing.pth")
    assert not ok and "not found" in reason
    with pytest.raises(FaceNerfError, match="not found"):
        load_lpips(tmp_path / "missing.pth")
    assert image_metrics(torch.rand(16, 16, 3), torch.rand(16, 16, 3))["lpips"] is None


def test_lpips_loads_combined_and_split_files(tmp_path):
    state = _fake_lpips_state()
    combined = tmp_path / "lpips_alex.pth"
    torch.save(state, combined)
    backbone = {k.replace("features.", "net.slice1."): v for k, v in state.items() if k.startswith("features.")}
    heads = {k: v for k, v in state.items() if k.startswith("lin")}
    torch.save(backbone, tmp_path / "backbone.pth")
    torch.save(heads, tmp_path / "heads.pth")
    model_a = load_lpips(combined)
    model_b = load_lpips([tmp_path / "backbone.pth", tmp_path / "heads.pth"])
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    d_a = float(model_a(x, y))
    assert d_a > 0 and d_a == pytest.approx(float(model_b(x, y)), rel=1e-6)
    assert float(model_a(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert image_metrics(x[0].permute(1, 2, 0), y[0].permute(1, 2, 0), model_a)["lpips"] == pytest.approx(d_a, rel=1e-5)
    torch.save(heads, tmp_path / "heads_only.pth")
    with pytest.raises(FaceNerfError, match="lack"):
        load_lpips(tmp_path / "heads_only.pth")
