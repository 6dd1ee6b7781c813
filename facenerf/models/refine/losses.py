"""RefineNet losses: LSGAN, discriminator feature matching, L1 and an optional VGG-19 perceptual loss.

Discriminator outputs follow :class:`~facenerf.models.refine.networks.MultiscaleDiscriminator`:
a list over scales of lists of layer outputs, the last of which is the patch map.
Images are ``[B, 3, H, W]`` in [-1, 1].

The perceptual loss needs ImageNet VGG-19 weights, which cannot be downloaded here: it is built
only from a state-dict file the user supplies (:func:`load_vgg19_features`). Any file whose keys
follow torchvision's ``vgg19`` layout (``features.0.weight`` ... ``features.28.bias``; the
classifier and deeper layers are ignored) loads, as does a file saved from :class:`VGG19Features`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facenerf.errors import FaceNerfError
from facenerf.io import load_weights_file

DiscOutputs = list[list[torch.Tensor]]

# VGG-19 ("E") convolution widths up to conv5_1; "M" = 2x2 max-pool.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Slices of ``features`` ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def lsgan_loss(predictions: DiscOutputs, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss summed over scales: mean((D(x) - t)^2) with t = 1 (real) or 0 (fake)."""
    target = 1.0 if target_is_real else 0.0
    total = predictions[0][-1].new_zeros(())
    for scale in predictions:
        patch = scale[-1]
        total = total + F.mse_loss(patch, torch.full_like(patch, target))
    return total


def feature_matching_loss(fake: DiscOutputs, real: DiscOutputs, weight: float = 10.0) -> torch.Tensor:
    """L1 between the discriminator's intermediate features on fake and (detached) real pairs.

    Summed over every scale and every layer except the patch map, each term scaled by
    ``weight * 4 / (n_layers + 1) / num_D`` as in pix2pixHD.
    """
    num_d = len(fake)
    n_layers = len(fake[0]) - 2
    per_term = weight * (4.0 / (n_layers + 1)) / num_d
    total = fake[0][-1].new_zeros(())
    for fake_scale, real_scale in zip(fake, real):
        for fake_feat, real_feat in zip(fake_scale[:-1], real_scale[:-1]):
            total = total + per_term * F.l1_loss(fake_feat, real_feat.detach())
    return total


class VGG19Features(nn.Module):
    """VGG-19 convolutional trunk up to relu5_1, returning the five relu{1..5}_1 activations.

    ``forward(x [B, 3, H, W] in [-1, 1])`` maps the image to [0, 1], applies ImageNet mean/std
    and returns ``[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]``. Parameters are frozen.
    Keys: ``features.{i}.weight/bias`` with torchvision's indices.
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)  # 30 modules: index 29 is relu5_1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x + 1.0) * 0.5 - self.mean) / self.std
        outputs, start = [], 0
        for end in VGG_SLICE_ENDS:
            h = self.features[start:end](h)
            outputs.append(h)
            start = end
        return outputs


def _extract_state_dict(obj, path: Path) -> dict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FaceNerfError(f"{path} is not a VGG-19 state dict of tensors: save one with "
                            "torch.save(vgg19.state_dict(), PATH)")
    return {k.removeprefix("module.").removeprefix("vgg."): v for k, v in obj.items()}


def load_vgg19_features(path: str | Path) -> VGG19Features:
    """Build :class:`VGG19Features` from a VGG-19 state-dict file (``torch.load(weights_only=True)``).

    Raises :class:`FaceNerfError` if the file is missing or unreadable, or if the keys
    ``features.0`` ... ``features.28`` are absent or have the wrong shapes.
    """
    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"VGG-19 weights not found: {file} (pass --vgg_weights with an existing "
                            "file, or leave it unset to train without the perceptual loss)")
    raw = load_weights_file(file, "VGG-19 weights", fix="it must be a state dict saved with torch.save")
    state = _extract_state_dict(raw, file)
    with torch.device("meta"):  # skip the random initialisation: every weight is loaded below
        model = VGG19Features()
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise FaceNerfError(f"VGG-19 weights {file} lack {len(missing)} expected keys (first: "
                            f"{missing[0]}); use torchvision-style vgg19 keys features.N.weight/bias")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise FaceNerfError(f"VGG-19 weights {file}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                            f"expected {tuple(wanted[bad[0]].shape)}; the file is not a VGG-19")
    model.load_state_dict({k: state[k].float() for k in wanted}, assign=True)
    model.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    model.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return model.requires_grad_(False)


class VGGLoss(nn.Module):
    """Perceptual loss: sum_i w_i * L1(vgg_i(fake), vgg_i(real)) with w = 1/32, 1/16, 1/8, 1/4, 1."""

    def __init__(self, vgg: VGG19Features):
        super().__init__()
        self.vgg = vgg

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_feats, real_feats = self.vgg(fake), self.vgg(real)
        total = fake.new_zeros(())
        for weight, f, r in zip(VGG_LAYER_WEIGHTS, fake_feats, real_feats):
            total = total + weight * F.l1_loss(f, r.detach())
        return total
