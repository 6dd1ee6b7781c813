"""The trainable RefineNet for the shared :class:`~facenerf.engine.trainer.Trainer`.

A conditional GAN: the generator maps a coarse render to a refined image; the multi-scale
discriminator judges ``concat[render, image]`` (6 channels). Generator loss =
``lambda_gan * LSGAN + feature matching (lambda_feat) + lambda_l1 * L1 + lambda_vgg * VGG``
(VGG only when a weights file is given); discriminator loss = ``0.5 * (LSGAN(fake) + LSGAN(real))``.
The L1 term is not in the original pix2pixHD recipe: it lets the default (no VGG weights,
which cannot be downloaded here) converge quickly and stably.

The discriminator runs once per step on real and generated pairs batched together; this is
exact only because every loss is back-propagated into its own optimiser's parameters (see
:meth:`RefineModel.training_step`), which the shared Trainer guarantees.

Batches are ``{"A": render [B, 3, H, W], "B": ground truth [B, 3, H, W]}`` in [0, 1]; the
networks work in [-1, 1]. The ``state_dict`` holds ``netG.*`` and ``netD.*`` only (the frozen
VGG is never saved), so inference needs only the generator's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facenerf.config import from_flat, option, to_dict
from facenerf.errors import FaceNerfError
from facenerf.models.refine.losses import VGGLoss, feature_matching_loss, load_vgg19_features, lsgan_loss
from facenerf.models.refine.networks import MultiscaleDiscriminator, build_generator

MODEL_NAME = "refine"


@dataclass(frozen=True)
class RefineConfig:
    """Network sizes and loss weights. Defaults are the reference's (MoFaNeRF's pix2pixHD options)
    except ``residual`` (same parameters, identity start) and the added ``lambda_l1`` term."""

    netG: str = option("global", "generator type", choices=("global", "local"))
    ngf: int = option(32, "generator base filters")
    n_downsample_global: int = option(4, "stride-2 convolutions of the global generator")
    n_blocks_global: int = option(9, "residual blocks of the global generator")
    n_local_enhancers: int = option(1, "local enhancers (netG local only)")
    n_blocks_local: int = option(3, "residual blocks per local enhancer (netG local only)")
    residual: bool = option(True, "G adds a correction to its input, starting as the identity "
                                  "(false = the original pix2pixHD)")
    ndf: int = option(64, "discriminator base filters")
    n_layers_D: int = option(3, "layers of each discriminator")
    num_D: int = option(2, "discriminator scales")
    lr: float = option(1e-4, "Adam learning rate of G and D")
    lambda_gan: float = option(1.0, "weight of the LSGAN generator term")
    lambda_feat: float = option(10.0, "discriminator feature matching; 0 = off")
    lambda_l1: float = option(10.0, "pixel L1 to the ground truth (not in the original recipe); 0 = off")
    lambda_vgg: float = option(10.0, "VGG-19 perceptual loss (needs --vgg_weights)")
    vgg_weights: str | None = option(None, "VGG-19 state dict (torchvision key layout) enabling the perceptual loss")

    def __post_init__(self) -> None:
        for key in ("ngf", "ndf", "num_D", "n_layers_D"):
            if getattr(self, key) < 1:
                raise FaceNerfError(f"--{key} must be at least 1 (got {getattr(self, key)})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RefineConfig":
        """Pick this dataclass's fields out of a (larger) config dict; unknown keys are ignored."""
        return from_flat(cls, values)

    def to_dict(self) -> dict:
        return to_dict(self)


def generator_from_config(cfg: RefineConfig) -> nn.Module:
    """The generator described by ``cfg`` (freshly initialised)."""
    return build_generator(cfg.netG, 3, 3, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global,
                           cfg.n_local_enhancers, cfg.n_blocks_local, cfg.residual)


class _Frozen:
    """Holds a module without registering it, so it stays out of ``state_dict`` and ``parameters``."""

    def __init__(self, module: nn.Module):
        self.module = module

    def on(self, device: torch.device) -> nn.Module:
        if next(self.module.buffers()).device != device:
            self.module.to(device)
        return self.module


class RefineModel(nn.Module):
    """Generator ``netG`` + multi-scale discriminator ``netD`` with pix2pixHD losses (+ L1)."""

    def __init__(self, cfg: RefineConfig):
        super().__init__()
        self.cfg = cfg
        self.netG = generator_from_config(cfg)
        self.netD = MultiscaleDiscriminator(6, cfg.ndf, cfg.n_layers_D, cfg.num_D)
        self._vgg = _Frozen(VGGLoss(load_vgg19_features(cfg.vgg_weights))) if cfg.vgg_weights else None

    def param_groups(self) -> dict[str, list[dict]]:
        """Separate Adam optimisers for the generator ("G") and the discriminator ("D")."""
        return {"G": [{"params": list(self.netG.parameters()), "lr": self.cfg.lr, "name": "G"}],
                "D": [{"params": list(self.netD.parameters()), "lr": self.cfg.lr, "name": "D"}]}

    def refine(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` renders in [0, 1] -> refined ``[B, 3, H, W]`` in [0, 1] (any H, W)."""
        return (self.netG(images * 2.0 - 1.0) + 1.0) * 0.5

    def generator_losses(self, real_b: torch.Tensor, fake_b: torch.Tensor, pred_fake: list,
                         pred_real: list) -> dict[str, torch.Tensor]:
        """Generator loss terms (weighted) for targets ``real_b`` and outputs ``fake_b`` ([B, 3, H, W] in [-1, 1]).

        ``pred_fake`` / ``pred_real``: discriminator outputs on (render, output) / (render, target).
        """
        cfg = self.cfg
        terms = {"g_gan": cfg.lambda_gan * lsgan_loss(pred_fake, True)}
        if cfg.lambda_feat > 0:
            terms["g_feat"] = feature_matching_loss(pred_fake, pred_real, cfg.lambda_feat)
        if cfg.lambda_l1 > 0:
            terms["g_l1"] = cfg.lambda_l1 * F.l1_loss(fake_b, real_b)
        if self._vgg is not None and cfg.lambda_vgg > 0:
            terms["g_vgg"] = cfg.lambda_vgg * self._vgg.on(fake_b.device)(fake_b, real_b)
        return terms

    def discriminate(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor) -> tuple[list, list]:
        """Discriminator outputs on (render, target) and (render, output) pairs, in ONE batched call.

        Instance norm works per sample, so this equals two separate calls. Returns
        ``(pred_real, pred_fake)``, each a list over scales of lists of layer outputs.
        """
        batch = real_a.shape[0]
        pairs = torch.cat([torch.cat([real_a, real_b], dim=1), torch.cat([real_a, fake_b], dim=1)], dim=0)
        outputs = self.netD(pairs)  # [2B, ...] per layer
        pred_real = [[f[:batch] for f in scale] for scale in outputs]
        pred_fake = [[f[batch:] for f in scale] for scale in outputs]
        return pred_real, pred_fake

    def training_step(self, batch: Mapping[str, Any], step: int
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One GAN step: losses {"G", "D"} and scalars to log.

        The discriminator runs once on real and generated pairs together (pix2pixHD runs it three
        times: real, detached fake, fake). That is exact because each loss is back-propagated into
        its own optimiser's parameters only (the Trainer's contract): "D" never reaches netG and
        "G" never updates netD, so no ``detach`` is needed.
        """
        device = next(self.netG.parameters()).device
        real_a = batch["A"].to(device) * 2.0 - 1.0  # [B, 3, H, W] render in [-1, 1]
        real_b = batch["B"].to(device) * 2.0 - 1.0  # [B, 3, H, W] ground truth in [-1, 1]
        fake_b = self.netG(real_a)                  # [B, 3, H, W] refined in [-1, 1]
        pred_real, pred_fake = self.discriminate(real_a, real_b, fake_b)
        d_real, d_fake = lsgan_loss(pred_real, True), lsgan_loss(pred_fake, False)
        terms = self.generator_losses(real_b, fake_b, pred_fake, pred_real)
        loss_g = sum(terms.values())
        loss_d = 0.5 * (d_real + d_fake)
        with torch.no_grad():
            mse = F.mse_loss((fake_b + 1) * 0.5, (real_b + 1) * 0.5).clamp_min(1e-10)
        scalars = {name: value.detach() for name, value in terms.items()}  # one-element tensors
        scalars.update(d_real=d_real.detach(), d_fake=d_fake.detach(), psnr=-10.0 * torch.log10(mse))
        return {"G": loss_g, "D": loss_d}, scalars


def generator_state(model_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``netG.*`` entries of a :class:`RefineModel` state dict, with the prefix removed."""
    prefix = "netG."
    return {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
