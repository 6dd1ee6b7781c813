"""Optional learned relighting: the Deep Portrait Relighting (DPR) hourglass network of the original pipeline.

The default relighting (:mod:`.relight`) needs no weights. A user who has the original code's
relighting weights, ``trained_model_03.t7`` (in the original MoFaNeRF repository under
``tools/fit_data_pre/trained_model/``; it is DPR's released 512 px grey model), can pass it with
``--relight dpr --dpr_weights FILE``. The file is a plain state dict and is read with
``torch.load(..., weights_only=True)``; every key and shape is checked before use.

The network (reference section 7), written from its published description:

* input: the L channel of the CIE-Lab image scaled to [0, 1], ``[1, 1, H, W]`` (H, W multiples of 16);
* ``pre_conv`` 5x5 (1 -> 16) + BatchNorm + ReLU;
* four nested hourglass levels ``HG3 (16 -> 16)``, ``HG2 (16 -> 32)``, ``HG1 (32 -> 64)``,
  ``HG0 (64 -> 155)``. Each level keeps an ``upper`` branch at full resolution and sends a 2x
  max-pooled copy through ``low1``, the next level (``middle``) and ``low2``, then upsamples
  (nearest) and adds the upper branch. Every branch is a residual block of two bias-free 3x3
  convolutions with a 1x1 bias-free projection shortcut (used when the widths differ): batch
  norm in ``low1``, instance norm (no parameters) in ``upper`` and ``low2``;
* the innermost ``middle`` is the lighting net ``light``: the first 27 of HG0's 155 channels
  are averaged over the image, mapped 27 -> 128 (PReLU) -> 9 (the image's SH lighting), and are
  replaced by the target lighting mapped 9 -> 128 (PReLU) -> 27 (ReLU), broadcast over the image;
* ``conv_1`` 3x3, ``conv_2`` and ``conv_3`` 1x1 (16 channels, BatchNorm + ReLU each), ``output``
  1x1 (16 -> 1) and a sigmoid: the relit L channel.

The levels are registered the way the weights file stores them: ``HG1.middle`` *is* ``HG0``,
``HG2.middle`` is ``HG1`` and so on, and ``HG0.middle`` is ``light``, so one tensor appears under
several keys (``light.predict_FC1.weight`` = ``HG0.middle.predict_FC1.weight`` = ...): 250 keys,
690,736 learnable parameters, 1,208 buffer values.

The relit L replaces the image's L channel and the result is converted back to RGB (8-bit Lab,
as the original). The target lighting is the original's ``fcspLight.npy``
(:data:`facenerf.preprocess.fitting.sh.FCSP_LIGHT`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.errors import FaceNerfError
from facenerf.preprocess.fitting.sh import FCSP_LIGHT

BASE_FILTER = 16
LIGHT_CHANNELS = 27      # channels of HG0 that carry the lighting
SH_COEFFS = 9            # grey second-order SH
LIGHT_HIDDEN = 128
INPUT_SIZE = 512         # the released model's resolution
WEIGHTS_NAME = "trained_model_03.t7"


class ResidualBlock(nn.Module):
    """Two bias-free 3x3 convolutions with batch (``batch_norm``) or instance norm, plus a shortcut."""

    def __init__(self, cin: int, cout: int, batch_norm: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else nn.InstanceNorm2d
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.shortcuts = nn.Conv2d(cin, cout, 1, 1, bias=False)  # stored for every block, used when cin != cout
        self.project = cin != cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.shortcuts(x) if self.project else x))


class LightingNet(nn.Module):
    """Reads the image's SH lighting from the first ``channels`` features and writes the target's in."""

    def __init__(self, channels: int = LIGHT_CHANNELS, n_sh: int = SH_COEFFS, hidden: int = LIGHT_HIDDEN):
        super().__init__()
        self.channels = channels
        self.predict_FC1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.predict_relu1 = nn.PReLU()
        self.predict_FC2 = nn.Conv2d(hidden, n_sh, 1, bias=False)
        self.post_FC1 = nn.Conv2d(n_sh, hidden, 1, bias=False)
        self.post_relu1 = nn.PReLU()
        self.post_FC2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.post_relu2 = nn.ReLU()

    def forward(self, features: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``features [B, C, h, w]``, ``target [B, 9, 1, 1]`` -> (features with the target's lighting, the
        image's estimated SH ``[B, 9, 1, 1]``)."""
        light = features[:, :self.channels]
        estimated = self.predict_FC2(self.predict_relu1(self.predict_FC1(light.mean(dim=(2, 3), keepdim=True))))
        written = self.post_relu2(self.post_FC2(self.post_relu1(self.post_FC1(target))))
        written = written.expand(-1, -1, features.shape[2], features.shape[3])
        return torch.cat([written, features[:, self.channels:]], dim=1), estimated


class HourglassLevel(nn.Module):
    """One level: full-resolution ``upper`` branch + pooled ``low1 -> middle -> low2`` branch."""

    def __init__(self, channels: int, inner: int, middle: nn.Module):
        super().__init__()
        self.upper = ResidualBlock(channels, channels, batch_norm=False)
        self.low1 = ResidualBlock(channels, inner)
        self.middle = middle
        self.low2 = ResidualBlock(inner, channels, batch_norm=False)

    def forward(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        low = self.low1(F.max_pool2d(x, 2))
        low, estimated = self.middle(low, target)
        low = F.interpolate(self.low2(low), scale_factor=2, mode="nearest")
        return low + self.upper(x), estimated


class HourglassNet(nn.Module):
    """DPR's 512 px grey relighting network (see the module docstring); key layout of ``trained_model_03.t7``."""

    def __init__(self, base: int = BASE_FILTER):
        super().__init__()
        widths = (base, 2 * base, 4 * base, 8 * base + LIGHT_CHANNELS)   # HG3, HG2, HG1 inner widths; HG0 inner
        self.pre_conv = nn.Conv2d(1, base, 5, 1, 2)
        self.pre_bn = nn.BatchNorm2d(base)
        self.light = LightingNet()
        self.HG0 = HourglassLevel(widths[2], widths[3], self.light)
        self.HG1 = HourglassLevel(widths[1], widths[2], self.HG0)
        self.HG2 = HourglassLevel(widths[0], widths[1], self.HG1)
        self.HG3 = HourglassLevel(base, widths[0], self.HG2)
        self.conv_1 = nn.Conv2d(base, base, 3, 1, 1)
        self.bn_1 = nn.BatchNorm2d(base)
        self.conv_2 = nn.Conv2d(base, base, 1)
        self.bn_2 = nn.BatchNorm2d(base)
        self.conv_3 = nn.Conv2d(base, base, 1)
        self.bn_3 = nn.BatchNorm2d(base)
        self.output = nn.Conv2d(base, 1, 1)

    def forward(self, lightness: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``lightness [B, 1, H, W]`` in [0, 1], ``target [B, 9, 1, 1]`` -> (relit L ``[B, 1, H, W]`` in
        [0, 1], the input's estimated SH ``[B, 9, 1, 1]``)."""
        x = F.relu(self.pre_bn(self.pre_conv(lightness)))
        x, estimated = self.HG3(x, target)
        for conv, norm in ((self.conv_1, self.bn_1), (self.conv_2, self.bn_2), (self.conv_3, self.bn_3)):
            x = F.relu(norm(conv(x)))
        return torch.sigmoid(self.output(x)), estimated


class DPRRelighter:
    """Relights RGB images to the training lighting with a loaded :class:`HourglassNet`."""

    def __init__(self, network: HourglassNet, device: torch.device | str = "cpu",
                 target: np.ndarray = FCSP_LIGHT):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.target = torch.as_tensor(np.asarray(target, np.float32).reshape(1, SH_COEFFS, 1, 1), device=self.device)

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "DPRRelighter":
        """Load ``trained_model_03.t7`` (a plain state dict); one-line FaceNerfError if missing or mismatched."""
        from facenerf.engine.checkpoint import check_compatible
        from facenerf.io import load_weights_file

        file = Path(path).expanduser()
        if not file.is_file():
            raise FaceNerfError(f"DPR weights not found: {file} (check --dpr_weights: the original code's "
                                f"tools/fit_data_pre/trained_model/{WEIGHTS_NAME}; or use --relight sh)")
        state = load_weights_file(file, "DPR weights", fix=f"use the original {WEIGHTS_NAME}")
        if not isinstance(state, dict):
            raise FaceNerfError(f"DPR weights {file} hold no state dict; pass the original {WEIGHTS_NAME}")
        network = HourglassNet()
        check_compatible(network, state, f"DPR weights {file}")
        network.load_state_dict(state)
        return cls(network, device)

    @torch.no_grad()
    def relight(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image [H, W, 3]`` RGB float in [0, 1] -> (relit image ``[H, W, 3]`` float32, estimated SH ``[9]``).

        The L channel goes through the network at 512 x 512 (resized there and back when the image
        has another size).
        """
        import cv2

        rgb = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        h, w = lab.shape[:2]
        lightness = lab[..., 0].astype(np.float32) / 255.0
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            lightness = cv2.resize(lightness, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(lightness)[None, None].to(self.device)
        relit, estimated = self.network(x, self.target)
        out = relit[0, 0].float().cpu().numpy()
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        lab[..., 0] = np.clip(out * 255.0, 0, 255).astype(np.uint8)
        result = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / 255.0
        return result, estimated.reshape(SH_COEFFS).float().cpu().numpy()
