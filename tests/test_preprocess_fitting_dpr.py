"""The optional DPR relighting network (``--relight dpr --dpr_weights FILE``) on weights made here.

The weights file is written in the layout of the original ``trained_model_03.t7`` (a plain state
dict with the nested hourglass levels registered under every path); its key count and parameter
counts are the ones measured on the released file. The network's forward pass is checked against
a functional re-statement of the published architecture, and the CLI runs end to end on
scikit-image's astronaut photo.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facenerf.errors import FaceNerfError
from facenerf.preprocess.fitting.dpr import DPRRelighter, HourglassNet
from facenerf.preprocess.fitting.pipeline import PreprocessSettings, WildPreprocessor
from facenerf.preprocess.fitting.sh import FCSP_LIGHT

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent

# (key, shape) pairs of the released trained_model_03.t7 (reference section 7)
RELEASED_SHAPES = {
    "pre_conv.weight": (16, 1, 5, 5), "light.predict_FC1.weight": (128, 27, 1, 1),
    "light.predict_relu1.weight": (1,), "light.predict_FC2.weight": (9, 128, 1, 1),
    "light.post_FC1.weight": (128, 9, 1, 1), "light.post_FC2.weight": (27, 128, 1, 1),
    "HG0.low1.conv1.weight": (155, 64, 3, 3), "HG0.low2.conv1.weight": (64, 155, 3, 3),
    "HG1.low1.conv1.weight": (64, 32, 3, 3), "HG2.low1.conv1.weight": (32, 16, 3, 3),
    "HG3.low1.conv1.weight": (16, 16, 3, 3), "conv_1.weight": (16, 16, 3, 3), "conv_2.weight": (16, 16, 1, 1),
    "conv_3.weight": (16, 16, 1, 1), "output.weight": (1, 16, 1, 1),
}


def _random_network(seed: int = 0) -> HourglassNet:
    """Random weights with non-trivial batch-norm statistics (as trained weights have)."""
    torch.manual_seed(seed)
    net = HourglassNet()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, torch.nn.PReLU):
                module.weight.fill_(0.1)
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("dpr") / "trained_model_03.t7"
    torch.save(_random_network().state_dict(), path)
    return path


def test_state_dict_has_the_released_layout():
    net = HourglassNet()
    state = net.state_dict()
    assert len(state) == 250
    assert sum(v.numel() for v in state.values()) == 2_561_383       # nested levels counted under each path
    assert sum(p.numel() for p in net.parameters()) == 690_736       # unique learnable parameters
    assert sum(b.numel() for b in net.buffers()) == 1_208            # batch-norm statistics
    for key, shape in RELEASED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    # one tensor under several keys, as in the file
    assert state["light.predict_FC1.weight"].data_ptr() == state["HG1.middle.middle.predict_FC1.weight"].data_ptr()
    assert state["HG0.low1.conv1.weight"].data_ptr() == state["HG3.middle.middle.middle.low1.conv1.weight"].data_ptr()


# ----------------------------------------------------------------------------- functional re-statement

def _bn(x, s, prefix):
    return F.batch_norm(x, s[prefix + ".running_mean"], s[prefix + ".running_var"], s[prefix + ".weight"],
                        s[prefix + ".bias"], False, 0.0, 1e-5)


def _block(x, s, prefix, batch_norm):
    norm = (lambda y, p: _bn(y, s, p)) if batch_norm else (lambda y, p: F.instance_norm(y, eps=1e-5))
    out = F.relu(norm(F.conv2d(x, s[prefix + ".conv1.weight"], padding=1), prefix + ".bn1"))
    out = norm(F.conv2d(out, s[prefix + ".conv2.weight"], padding=1), prefix + ".bn2")
    shortcut = F.conv2d(x, s[prefix + ".shortcuts.weight"]) if x.shape[1] != out.shape[1] else x
    return F.relu(out + shortcut)


def _light(x, target, s):
    prelu = lambda y, key: torch.where(y >= 0, y, s[key] * y)  # noqa: E731
    feat = x[:, :27].mean(dim=(2, 3), keepdim=True)
    estimated = F.conv2d(prelu(F.conv2d(feat, s["light.predict_FC1.weight"]), "light.predict_relu1.weight"),
                         s["light.predict_FC2.weight"])
    up = F.relu(F.conv2d(prelu(F.conv2d(target, s["light.post_FC1.weight"]), "light.post_relu1.weight"),
                         s["light.post_FC2.weight"]))
    return torch.cat([up.repeat(1, 1, x.shape[2], x.shape[3]), x[:, 27:]], 1), estimated


def _level(x, target, s, k):
    upper = _block(x, s, f"HG{k}.upper", False)
    low = _block(F.max_pool2d(x, 2, 2), s, f"HG{k}.low1", True)
    low, estimated = _light(low, target, s) if k == 0 else _level(low, target, s, k - 1)
    low = F.interpolate(_block(low, s, f"HG{k}.low2", False), scale_factor=2, mode="nearest")
    return low + upper, estimated


def _reference_forward(s, lightness, target):
    x = F.relu(_bn(F.conv2d(lightness, s["pre_conv.weight"], s["pre_conv.bias"], padding=2), s, "pre_bn"))
    x, estimated = _level(x, target, s, 3)
    for k, pad in ((1, 1), (2, 0), (3, 0)):
        x = F.relu(_bn(F.conv2d(x, s[f"conv_{k}.weight"], s[f"conv_{k}.bias"], padding=pad), s, f"bn_{k}"))
    return torch.sigmoid(F.conv2d(x, s["output.weight"], s["output.bias"])), estimated


def test_forward_follows_the_published_architecture():
    net = _random_network(1)
    state = net.state_dict()
    generator = torch.Generator().manual_seed(0)
    lightness = torch.rand(1, 1, 64, 64, generator=generator)
    target = torch.as_tensor(FCSP_LIGHT, dtype=torch.float32).view(1, 9, 1, 1)
    with torch.no_grad():
        ours, estimated = net(lightness, target)
        ref, ref_estimated = _reference_forward(state, lightness, target)
        other, _ = net(lightness, -target)
    assert ours.shape == (1, 1, 64, 64)
    assert torch.allclose(ours, ref, atol=1e-5) and torch.allclose(estimated, ref_estimated, atol=1e-5)
    assert (ours - other).abs().max() > 1e-4  # the target lighting reaches the output


def test_relighter_loads_the_file_and_replaces_only_lightness(weights):
    relighter = DPRRelighter.from_file(weights)
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (32, 48, 3)).astype(np.float32)
    relit, sh = relighter.relight(image)
    assert relit.shape == image.shape and sh.shape == (9,) and np.isfinite(sh).all()
    import cv2

    lab_in = cv2.cvtColor((image * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(int)
    lab_out = cv2.cvtColor((relit * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(int)
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).mean() > 2          # lightness is the network's
    assert np.abs(lab_out[..., 1:] - lab_in[..., 1:]).mean() < 3         # colour (a, b) is kept


def test_bad_weights_and_settings_are_one_line_errors(weights, tmp_path):
    with pytest.raises(FaceNerfError, match="DPR weights not found.*trained_model_03.t7"):
        DPRRelighter.from_file(tmp_path / "missing.t7")
    wrong = tmp_path / "wrong.t7"
    torch.save({"pre_conv.weight": torch.zeros(8, 1, 5, 5)}, wrong)
    with pytest.raises(FaceNerfError, match="DPR weights .*missing"):
        DPRRelighter.from_file(wrong)
    with pytest.raises(FaceNerfError, match="--relight dpr needs --dpr_weights"):
        WildPreprocessor(PreprocessSettings(relight="dpr"))
    with pytest.raises(FaceNerfError, match="--dpr_weights is read only with --relight dpr"):
        WildPreprocessor(PreprocessSettings(relight="sh", dpr_weights=str(weights)))


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image's astronaut photo")
def test_cli_relights_with_dpr(weights, tmp_path, capsys):
    from skimage import data

    from commands import load_script
    from facenerf.io import read_image, write_image

    photos = tmp_path / "photos"
    write_image(photos / "astronaut.png", data.astronaut())
    out = tmp_path / "out"
    cli = load_script(ROOT / "fittingDataPreprocess" / "wildData_preprocess.py")
    assert cli.main(["--filePath", str(photos), "--out", str(out), "--relight", "dpr", "--dpr_weights", str(weights),
                     "--image_size", "128", "--no_contact_sheet", "--progress", "false"]) == 0
    segmented, relit = read_image(out / "segRes" / "astronaut.png"), read_image(out / "segRelRes" / "astronaut.png")
    keep = segmented.max(axis=-1) > 0
    expected, _ = DPRRelighter.from_file(weights).relight(segmented)
    assert np.abs(relit[keep] - expected[keep]).max() <= 2.5 / 255   # the network's output, 8-bit rounding apart
    assert np.abs(relit[keep] - segmented[keep]).mean() > 0.01      # and not the input
    assert (relit[~keep] == 0).all()
    assert "ok astronaut.png" in capsys.readouterr().out
