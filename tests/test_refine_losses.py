"""RefineNet losses: analytic LSGAN / feature-matching values, VGG-19 loading and its errors."""

import pytest
import torch


from facenerf.errors import FaceNerfError
from facenerf.models.refine.losses import (VGG19Features, VGGLoss, feature_matching_loss,
                                           load_vgg19_features, lsgan_loss)
from facenerf.models.refine.model import RefineConfig, RefineModel


def _outputs(value: float, n_scales=2, n_layers=3):
    """Fake discriminator outputs: every feature map (and the patch map) filled with ``value``."""
    return [[torch.full((1, 2, 4, 4), value) for _ in range(n_layers + 1)] + [torch.full((1, 1, 3, 3), value)]
            for _ in range(n_scales)]


def test_lsgan_loss_values():
    preds = [[torch.zeros(1)] + [torch.full((1, 1, 2, 2), 0.5)], [torch.full((1, 1, 1, 1), 2.0)]]
    # real targets 1: (0.5 - 1)^2 + (2 - 1)^2 ; fake targets 0: 0.5^2 + 2^2
    assert lsgan_loss(preds, True).item() == pytest.approx(0.25 + 1.0)
    assert lsgan_loss(preds, False).item() == pytest.approx(0.25 + 4.0)


def test_feature_matching_weighting_and_detach():
    fake = [[t.requires_grad_() for t in scale] for scale in _outputs(1.0)]
    real = [[t.requires_grad_() for t in scale] for scale in _outputs(0.0)]
    loss = feature_matching_loss(fake, real, weight=10.0)
    # 2 scales x 4 intermediate layers, each |1 - 0| = 1, weighted 10 * 4/(3+1) / 2 = 5
    assert loss.item() == pytest.approx(2 * 4 * 5.0)
    loss.backward()
    assert real[0][0].grad is None  # the real branch is a fixed target
    assert fake[0][-1].grad is None  # the patch map is not matched
    assert fake[0][0].grad is not None


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A random VGG-19 state dict in torchvision's layout, saved once for this module."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in VGG19Features().state_dict().items():
        fan_in = value[0].numel() if value.ndim > 1 else 1e4  # He-scaled weights, small biases
        state[key] = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
    state["features.30.weight"] = torch.zeros(8, 8, 3, 3)  # deeper layers / classifier: ignored
    state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path, state


def test_vgg_loads_torchvision_layout_and_is_frozen(vgg_file):
    path, state = vgg_file
    vgg = load_vgg19_features(path)
    assert torch.equal(vgg.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    feats = vgg(x)
    assert [f.shape[1:] for f in feats] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (512, 1, 1)]
    loss = VGGLoss(vgg)
    assert loss(x, x).item() == 0.0
    assert loss(x, -x).item() > 0.0


def test_vgg_errors_are_one_line(tmp_path, vgg_file):
    with pytest.raises(FaceNerfError, match="VGG-19 weights not found"):
        load_vgg19_features(tmp_path / "missing.pth")
    state = dict(vgg_file[1])
    renamed = {("layer." + k if k == "features.10.weight" else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(FaceNerfError, match="lack 1 expected keys.*features.10.weight"):
        load_vgg19_features(tmp_path / "renamed.pth")
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(FaceNerfError, match=r"features.0.weight has shape \(64, 1, 3, 3\)"):
        load_vgg19_features(tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(FaceNerfError, match="cannot read VGG-19 weights"):
        load_vgg19_features(tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(FaceNerfError, match="not a VGG-19 state dict"):
        load_vgg19_features(tmp_path / "list.pth")


def test_model_with_vgg_adds_term_and_keeps_vgg_out_of_state(vgg_file):
    path, _ = vgg_file
    cfg = RefineConfig(ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4, vgg_weights=str(path))
    model = RefineModel(cfg)
    assert all(k.startswith(("netG.", "netD.")) for k in model.state_dict())
    batch = {"A": torch.rand(1, 3, 16, 16), "B": torch.rand(1, 3, 16, 16)}
    losses, scalars = model.training_step(batch, 0)
    assert scalars["g_vgg"] > 0
    losses["G"].backward(inputs=list(model.netG.parameters()))
    assert all(p.grad is not None for p in model.netG.parameters())
    plain = RefineModel(RefineConfig(ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4))
    assert "g_vgg" not in plain.training_step(batch, 0)[1]
