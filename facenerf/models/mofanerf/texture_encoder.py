"""Texture encoder: the identity's neutral UV texture -> its appearance code alpha.

A stack of 4x4 stride-2 convolutions (LeakyReLU 0.2) shrinks the square UV map
(``tex_size``, 512 in the released model) to a small grid, a fully connected layer
(LeakyReLU 0.2) and the "mu" head give a code that a short MLP (LeakyReLU 0.1) turns into
``alpha``. The encoder is deterministic (no sampling, no KL term) and trained end to end with
the NeRF; it is used only in training, fitting optimises ``alpha`` directly (reference §1.6).

The released model also stores an unused "logstd" head; with ``logstd_head=True`` it is kept
as a frozen parameter (``requires_grad=False``) so official checkpoints round-trip exactly, but
it never enters the forward pass or the optimiser.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.models.mofanerf.layers import RELU_GAIN

LEAKY_ENCODER = 0.2
LEAKY_DECODER = 0.1


def _leaky_gain(slope: float) -> float:
    return nn.init.calculate_gain("leaky_relu", slope)


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class TextureEncoder(nn.Module):
    """``uv [B, 3, S, S]`` in [0, 1] -> ``alpha [B, code_dim]``."""

    def __init__(self, code_dim: int = 256, tex_size: int = 512,
                 channels: tuple[int, ...] = (32, 32, 32, 32, 64, 128, 256),
                 hidden: int = 512, decoder_depth: int = 3, logstd_head: bool = True):
        super().__init__()
        self.tex_size = tex_size
        gain = _leaky_gain(LEAKY_ENCODER)
        convs, previous = [], 3
        for ch in channels:
            convs.append(_init(nn.Conv2d(previous, ch, kernel_size=4, stride=2, padding=1), gain))
            previous = ch
        self.convs = nn.ModuleList(convs)
        grid = tex_size >> len(channels)
        self.fc = _init(nn.Linear(previous * grid * grid, hidden), gain)
        self.mu = _init(nn.Linear(hidden, code_dim), 1.0)
        self.logstd = None
        if logstd_head:
            self.logstd = _init(nn.Linear(hidden, code_dim), 1.0)
            self.logstd.requires_grad_(False)
        self.decoder = nn.ModuleList(
            [_init(nn.Linear(code_dim, code_dim), RELU_GAIN) for _ in range(decoder_depth)])

    def forward(self, uv: Tensor) -> Tensor:
        """
        Args:
            uv: ``[B, 3, S, S]`` float in [0, 1]; resized (area) when S differs from tex_size.
        Returns:
            ``[B, code_dim]`` appearance codes.
        """
        if uv.dim() != 4 or uv.shape[1] != 3:
            raise ValueError(f"expected a [B, 3, S, S] UV map, got {tuple(uv.shape)}")
        if uv.shape[-2:] != (self.tex_size, self.tex_size):
            uv = resize_uv(uv, self.tex_size)
        h = uv
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAKY_ENCODER)
        h = F.leaky_relu(self.fc(h.flatten(1)), LEAKY_ENCODER)
        code = self.mu(h)
        for layer in self.decoder:
            code = F.leaky_relu(layer(code), LEAKY_DECODER)
        return code

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def resize_uv(uv: Tensor, size: int) -> Tensor:
    """``[B, 3, H, W]`` -> ``[B, 3, size, size]``: area filter when shrinking, bilinear otherwise."""
    if uv.shape[-1] >= size and uv.shape[-2] >= size:
        return F.interpolate(uv, size=(size, size), mode="area")
    return F.interpolate(uv, size=(size, size), mode="bilinear", align_corners=False)


def uv_to_tensor(uv: np.ndarray, size: int) -> Tensor:
    """``float [H, W, 3]`` or ``uint8`` UV map -> ``float32 [1, 3, size, size]`` in [0, 1]."""
    t = torch.as_tensor(uv)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float().permute(2, 0, 1)[None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = resize_uv(t, size)
    return t.contiguous()

