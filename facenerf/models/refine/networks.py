"""pix2pixHD-style RefineNet networks: global generator, local enhancer, multi-scale PatchGAN.

All images here are ``[B, C, H, W]`` tensors in [-1, 1]. Normalisation is instance norm without
affine parameters, so it contributes nothing to a ``state_dict``.

At the reference defaults (``ngf=32, n_downsampling=4, n_blocks=9``; ``ndf=64, n_layers=3,
num_D=2``) the generator has 45,620,867 parameters and the discriminator 5,535,618, with the
same ``state_dict`` key layout as the original's checkpoints (``model.1``, ``model.16.conv_block.1``,
``scale0_layer0.0`` ...).

Sizes: the generator halves the resolution ``n_downsampling`` times. Inputs whose height or
width is not a multiple of ``2 ** n_downsampling`` (or smaller than twice that) are padded
(edge-replicated, centred) before the network and cropped back afterwards, so any ``H, W >= 1``
works and the output always has the input's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


def init_weights(module: nn.Module) -> None:
    """pix2pixHD initialisation: conv weights ~ N(0, 0.02), conv biases 0, BN weights ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x) at constant width ``channels``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, h, w] -> [B, C, h, w]
        return x + self.conv_block(x)


def _downsample(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _norm(c_out), nn.ReLU(True)]


def _upsample(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
            _norm(c_out), nn.ReLU(True)]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Edge-pad ``x [B, C, H, W]`` (centred) so H and W are multiples of ``multiple`` and >= 2*multiple.

    Returns the padded tensor and the ``(left, right, top, bottom)`` padding to crop off later.
    """
    height, width = x.shape[-2:]

    def target(n: int) -> int:
        return max(-(-n // multiple) * multiple, 2 * multiple)

    extra_h, extra_w = target(height) - height, target(width) - width
    pad = (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)
    if extra_h == 0 and extra_w == 0:
        return x, pad
    return F.pad(x, pad, mode="replicate"), pad


def crop_padding(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on ``x [B, C, H', W']``."""
    left, right, top, bottom = pad
    height, width = x.shape[-2:]
    return x[..., top:height - bottom, left:width - right]


def _zero_output_conv(head: nn.Sequential) -> None:
    """Zero the last convolution before the tanh so a residual generator starts as the identity."""
    conv = head[-2]
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


def _add_residual(x: torch.Tensor, out: torch.Tensor, residual: bool) -> torch.Tensor:
    """``clamp(x + out, -1, 1)`` in residual mode (first ``out`` channels of ``x``), else ``out``."""
    if not residual:
        return out
    return (x[:, :out.shape[1]] + out).clamp(-1.0, 1.0)


class GlobalGenerator(nn.Module):
    """The pix2pixHD global generator: c7s1-ngf, n downsamplings, residual blocks, n upsamplings, c7s1-3, tanh.

    ``forward(x [B, input_nc, H, W] in [-1, 1]) -> [B, output_nc, H, W] in [-1, 1]`` for any H, W.

    ``residual=False`` is the original network. With ``residual=True`` (same parameters) the
    tanh output is a correction added to the input, ``clamp(x + G(x), -1, 1)``, and the last
    convolution starts at zero, so training starts from the identity: a refinement network
    then only has to learn what to fix. Instance normalisation discards each channel's mean,
    so the original must re-learn absolute colours from scratch, which costs many steps.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 32,
                 n_downsampling: int = 4, n_blocks: int = 9, residual: bool = False):
        super().__init__()
        self.n_downsampling = n_downsampling
        self.residual = residual
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(n_downsampling):
            layers += _downsample(ngf * 2 ** i, ngf * 2 ** (i + 1))
        width = ngf * 2 ** n_downsampling
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            layers += _upsample(ngf * 2 ** i, ngf * 2 ** (i - 1))
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.apply(init_weights)
        if residual:
            _zero_output_conv(self.model)

    @property
    def size_multiple(self) -> int:
        """Input sides are padded internally to a multiple of this."""
        return 2 ** self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, pad = pad_to_multiple(x, self.size_multiple)
        return crop_padding(_add_residual(padded, self.model(padded), self.residual), pad)


class LocalEnhancer(nn.Module):
    """pix2pixHD coarse-to-fine generator: a global generator at 1/2^k resolution plus k enhancers.

    The global generator (``ngf * 2**k`` base filters, output head removed) sees the input
    average-pooled k times. Enhancer ``n`` (``n = 1`` coarsest ... ``n = k`` at full resolution)
    adds features of the input at its own resolution to the coarser result and upsamples it. Attribute names:
    ``model`` (global trunk), ``model{i}_1`` (enhancer down branch), ``model{i}_2`` (up branch).
    ``forward(x [B, input_nc, H, W]) -> [B, output_nc, H, W]`` in [-1, 1] for any H, W.
    ``residual`` as in :class:`GlobalGenerator`.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 32,
                 n_downsample_global: int = 4, n_blocks_global: int = 9,
                 n_local_enhancers: int = 1, n_blocks_local: int = 3, residual: bool = False):
        super().__init__()
        if n_local_enhancers < 1:
            raise ValueError("LocalEnhancer needs n_local_enhancers >= 1; use GlobalGenerator otherwise")
        self.n_local_enhancers = n_local_enhancers
        self.n_downsample_global = n_downsample_global
        self.residual = residual
        trunk = GlobalGenerator(input_nc, output_nc, ngf * 2 ** n_local_enhancers,
                                n_downsample_global, n_blocks_global)
        self.model = nn.Sequential(*list(trunk.model.children())[:-3])  # drop pad, conv7, tanh
        for n in range(1, n_local_enhancers + 1):
            width = ngf * 2 ** (n_local_enhancers - n)
            down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, width, 7), _norm(width), nn.ReLU(True),
                    *_downsample(width, width * 2)]
            up = [ResnetBlock(width * 2) for _ in range(n_blocks_local)] + _upsample(width * 2, width)
            if n == n_local_enhancers:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*down))
            setattr(self, f"model{n}_2", nn.Sequential(*up))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.apply(init_weights)
        if residual:
            _zero_output_conv(getattr(self, f"model{n_local_enhancers}_2"))

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.n_downsample_global + self.n_local_enhancers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, pad = pad_to_multiple(x, self.size_multiple)
        pyramid = [padded]  # pyramid[k]: input at 1/2^k resolution
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        features = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            level = pyramid[self.n_local_enhancers - n]
            down = getattr(self, f"model{n}_1")(level)
            features = getattr(self, f"model{n}_2")(down + features)
        return crop_padding(_add_residual(padded, features, self.residual), pad)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv4 s2 (no norm) + (n_layers-1) conv4 s2 IN + conv4 s1 IN + conv4 s1 -> 1 channel.

    ``forward(x [B, input_nc, H, W]) -> list`` of every layer's output (the last is the
    ``[B, 1, h, w]`` patch map), so the generator can match intermediate features.
    Layers are attributes ``layer0 ... layer{n_layers+1}``.
    """

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kernel, pad = 4, 2
        self.n_outputs = n_layers + 2
        layers = [[nn.Conv2d(input_nc, ndf, kernel, 2, pad), nn.LeakyReLU(0.2, True)]]
        width = ndf
        for n in range(1, n_layers + 1):
            prev, width = width, min(width * 2, 512)
            stride = 2 if n < n_layers else 1
            layers.append([nn.Conv2d(prev, width, kernel, stride, pad), _norm(width), nn.LeakyReLU(0.2, True)])
        layers.append([nn.Conv2d(width, 1, kernel, 1, pad)])
        for i, block in enumerate(layers):
            setattr(self, f"layer{i}", nn.Sequential(*block))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i in range(self.n_outputs):
            x = getattr(self, f"layer{i}")(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs; scale ``i`` sees the input average-pooled (3x3, stride 2) ``i`` times.

    ``forward(x [B, input_nc, H, W]) -> list[list[Tensor]]``: for each scale (full resolution
    first) the list of layer outputs; ``[-1]`` of each is that scale's patch map ``[B, 1, h, w]``.
    Parameters are registered as ``scale{i}_layer{j}`` like the original's checkpoints.
    """

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, num_D: int = 2):
        super().__init__()
        self.num_D, self.n_layers = num_D, n_layers
        for i in range(num_D):
            single = NLayerDiscriminator(input_nc, ndf, n_layers)
            for j in range(single.n_outputs):
                setattr(self, f"scale{i}_layer{j}", getattr(single, f"layer{j}"))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i in range(self.num_D):
            outputs, h = [], x
            for j in range(self.n_layers + 2):
                h = getattr(self, f"scale{i}_layer{j}")(h)
                outputs.append(h)
            results.append(outputs)
            if i + 1 < self.num_D:
                x = self.downsample(x)
        return results


def build_generator(net: str = "global", input_nc: int = 3, output_nc: int = 3, ngf: int = 32,
                    n_downsample_global: int = 4, n_blocks_global: int = 9,
                    n_local_enhancers: int = 1, n_blocks_local: int = 3, residual: bool = False) -> nn.Module:
    """``net="global"`` -> :class:`GlobalGenerator`; ``"local"`` -> :class:`LocalEnhancer`."""
    if net == "global":
        return GlobalGenerator(input_nc, output_nc, ngf, n_downsample_global, n_blocks_global, residual)
    if net == "local":
        return LocalEnhancer(input_nc, output_nc, ngf, n_downsample_global, n_blocks_global,
                             n_local_enhancers, n_blocks_local, residual)
    raise ValueError(f"unknown generator {net!r}: use 'global' or 'local'")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
