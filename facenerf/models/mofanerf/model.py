"""The morphable face NeRF: networks, learned expression codes, ISM and texture encoder.

A face is described by three codes (:class:`FaceCodes`): the shape code ``beta`` (fixed per
identity, from the FaceScape bilinear model), the appearance code ``alpha`` (the texture
encoder's output on the identity's neutral UV map in training, a free variable in fitting)
and the expression code ``eps`` (one of ``n_expressions`` learned vectors, or a free
variable), which the identity-specific modulation rescales by ``beta`` before use.

:meth:`MoFaNeRF.fields` binds the codes of one face and returns two
:class:`NetworkField` objects (coarse and fine) that follow the core field protocol
(:mod:`facenerf.core.fields`: a density entry returning the density trunk's feature, and a
colour entry on that feature); the fields never see rays. :meth:`MoFaNeRF.training_step` implements the engine's model
interface: photometric MSE on the coarse and the fine colour, as in the released model.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from facenerf.core.encodings import FrequencyEncoding
from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.rays import RayBundle
from facenerf.core.renderer import RenderSettings, auto_chunk_rays, render_image, render_rays
from facenerf.models.mofanerf.acceleration import GridCache, SkipSettings
from facenerf.models.mofanerf.collapse import CollapseMonitor
from facenerf.models.mofanerf.config import MoFaNeRFConfig, MoFaNeRFRenderConfig, MoFaNeRFTrainSettings
from facenerf.models.mofanerf.ism import IdentityModulation
from facenerf.models.mofanerf.network import MoFaNeRFNetwork
from facenerf.models.mofanerf.texture_encoder import TextureEncoder

MODEL_NAME = "mofanerf"
SHAPE_CODE_SPREAD = 1.0 / 847 ** 0.5  # per-dimension std of FaceScape's identity factors (847 subjects)


@dataclass
class FaceCodes:
    """The codes of one face, each with a leading batch dimension of 1."""

    shape: Tensor  # [1, shape_dim] beta as the networks see it: standardised, (beta - mean) * scale
    texture: Tensor  # [1, texture_dim] alpha
    expression: Tensor  # [1, exp_dim] eps' = ISM(beta) applied to eps


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB of images in [0, 1] from their mean squared error."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


class MoFaNeRF(nn.Module):
    """MoFaNeRF with sizes from ``cfg``; ``lrate`` and the render settings are training options.

    Args:
        cfg: architecture sizes (:class:`MoFaNeRFConfig`).
        lrate: learning rate of the single "main" Adam parameter group (default: the run config's).
        train_settings: renderer settings for training (stratified jitter on); default: those of
            :class:`MoFaNeRFRenderConfig` (no fine samples without a fine network).
        eval_settings: renderer settings for validation/test renders (deterministic).
    """

    def __init__(self, cfg: MoFaNeRFConfig, lrate: float | None = None,
                 train_settings: RenderSettings | None = None, eval_settings: RenderSettings | None = None):
        super().__init__()
        self.cfg = cfg
        self.lrate = float(MoFaNeRFTrainSettings().lrate if lrate is None else lrate)
        self.train_settings = train_settings or MoFaNeRFRenderConfig().for_model(cfg).settings(training=True)
        self.eval_settings = eval_settings or replace(self.train_settings, perturb=False)
        self.pe_xyz = FrequencyEncoding(3, cfg.multires)
        self.pe_dir = FrequencyEncoding(3, cfg.multires_views)
        self.coarse = self._network(cfg.netwidth, cfg.netdepth)
        self.fine = self._network(cfg.netwidth_fine, cfg.netdepth_fine) if cfg.has_fine else None
        self.ism = IdentityModulation(cfg.shape_dim, cfg.exp_dim, cfg.ism_width, cfg.ism_depth)
        self.texture_encoder = TextureEncoder(cfg.texture_dim, cfg.tex_size, cfg.tex_channels, cfg.tex_hidden,
                                              cfg.tex_decoder_depth, cfg.tex_logstd_head)
        # [n_expressions, exp_dim] learned codes shared by all identities, uniform [0, 1) init
        self.expression_codes = nn.Parameter(torch.rand(cfg.n_expressions, cfg.exp_dim))
        # The networks see the shape code standardised by the training identities' statistics and
        # brought to the spread of FaceScape's identity factors, (beta - mean) * scale (see
        # set_shape_statistics), so codes of any scale train alike; mean 0, scale 1 (no change)
        # until set, and for models imported from the original code.
        self.register_buffer("shape_code_mean", torch.zeros(cfg.shape_dim))  # [shape_dim]
        self.register_buffer("shape_code_scale", torch.ones(cfg.shape_dim))  # [shape_dim]
        self._compiled: dict[str, Callable] = {}  # plain dict: compiled entries stay out of state_dict
        self.skip_settings = SkipSettings()  # the fast render path's options
        self.grid_cache = GridCache()
        self.collapse_monitor = CollapseMonitor()

    def compile_networks(self, **compile_kwargs) -> None:
        """Use ``torch.compile``d density and colour entries of the coarse and fine networks from
        now on (``dynamic=True`` by default: the fast path's sample counts vary per chunk).

        The compiled functions are kept outside the module tree, so ``state_dict`` keys do not change.
        """
        compile_kwargs.setdefault("dynamic", True)
        self._compiled = {"density": torch.compile(_density_entry, **compile_kwargs),
                          "colour": torch.compile(_colour_entry, **compile_kwargs)}

    def _network(self, width: int, depth: int) -> MoFaNeRFNetwork:
        cfg = self.cfg
        return MoFaNeRFNetwork(self.pe_xyz.out_dim, self.pe_dir.out_dim, cfg.shape_dim, cfg.texture_dim,
                               cfg.exp_dim, width, depth, cfg.skip, cfg.xyz_depth)

    # ----------------------------------------------------------------- codes and fields
    @torch.no_grad()
    def set_shape_statistics(self, shape_codes: Tensor) -> None:
        """Standardise shape codes by the mean and std of ``shape_codes [N, shape_dim]`` (N >= 2).

        Each dimension is centred and scaled to the spread of FaceScape's identity factors,
        :data:`SHAPE_CODE_SPREAD` = 1/sqrt(847) (the codes the released model was trained with),
        which keeps identities small perturbations of one shared head at the start of training;
        unit-variance codes made every identity start as a different random network and trained
        markedly slower. The std is floored at 10% of its median over the dimensions, so a
        dimension that barely varies over the training identities is not blown up.
        """
        codes = torch.as_tensor(shape_codes, dtype=torch.float32).reshape(-1, self.cfg.shape_dim)
        if codes.shape[0] < 2:
            raise ValueError(f"shape statistics need at least 2 identities, got {codes.shape[0]}")
        std = codes.std(dim=0, unbiased=False)
        std = torch.maximum(std, 0.1 * std.median() + 1e-12)
        self.shape_code_mean.copy_(codes.mean(dim=0))
        self.shape_code_scale.copy_(SHAPE_CODE_SPREAD / std)

    def standardise_shape(self, shape: Tensor) -> Tensor:
        """``beta [B, shape_dim]`` -> ``(beta - mean) * scale`` (what the networks and the ISM read)."""
        return (shape - self.shape_code_mean) * self.shape_code_scale

    @staticmethod
    def upgrade_state_dict(state: dict) -> dict:
        """Fill in entries that checkpoints written before shape-code standardisation lack (no change)."""
        if "shape_code_mean" not in state and "ism.mlp.0.weight" in state:
            dim = state["ism.mlp.0.weight"].shape[1]
            state = {**state, "shape_code_mean": torch.zeros(dim), "shape_code_scale": torch.ones(dim)}
        return state

    def texture_code(self, uv: Tensor) -> Tensor:
        """``uv [B, 3, S, S]`` in [0, 1] -> ``alpha [B, texture_dim]``."""
        return self.texture_encoder(uv)

    def face_codes(self, shape: Tensor, *, expression: Tensor | None = None,
                   expression_index: int | Tensor | None = None, texture: Tensor | None = None,
                   uv: Tensor | None = None) -> FaceCodes:
        """Assemble one face's codes.

        Args:
            shape: ``[shape_dim]`` or ``[1, shape_dim]`` beta, as in the shape-code file (it is
                standardised here).
            expression: ``[1, exp_dim]`` raw (pre-ISM) code, or ``expression_index`` into the
                learned codes (int or 0-d/1-element tensor).
            texture: ``[1, texture_dim]`` alpha, or ``uv [1, 3, S, S]`` to encode.
        """
        shape = self.standardise_shape(shape.reshape(1, -1))
        if expression is None:
            if expression_index is None:
                raise ValueError("give an expression code or an expression index")
            index = torch.as_tensor(expression_index, device=self.expression_codes.device).reshape(1).long()
            expression = self.expression_codes.index_select(0, index)  # [1, exp_dim]
        if texture is None:
            if uv is None:
                raise ValueError("give a texture code or a UV map")
            texture = self.texture_code(uv)
        return FaceCodes(shape=shape, texture=texture.reshape(1, -1),
                         expression=self.ism(shape, expression.reshape(1, -1)))

    def field(self, codes: FaceCodes, network: MoFaNeRFNetwork) -> "NetworkField":
        """``network`` bound to one face's codes, as a core field (density and colour entries)."""
        return NetworkField(self, network, codes)

    def fields(self, codes: FaceCodes) -> tuple["NetworkField", "NetworkField | None"]:
        """The coarse and (when configured) fine fields of one face."""
        fine = self.field(codes, self.fine) if self.fine is not None else None
        return self.field(codes, self.coarse), fine

    def render_rays(self, rays: RayBundle, codes: FaceCodes, settings: RenderSettings | None = None,
                    generator: torch.Generator | None = None,
                    grids: tuple[OccupancyGrid, OccupancyGrid | None] | None = None) -> dict:
        """Render ``rays`` of one face with the shared hierarchical pass (core.renderer.render_rays);
        ``grids`` = (coarse grid, fine grid or None) skip empty space."""
        coarse, fine = self.fields(codes)
        grid, fine_grid = grids if grids is not None else (None, None)
        return render_rays(rays, coarse, fine, settings or self.eval_settings, generator=generator, grid=grid,
                           fine_grid=fine_grid)

    def occupancy_grids(self, codes: FaceCodes, skip: SkipSettings | None = None
                        ) -> tuple[OccupancyGrid, OccupancyGrid | None]:
        """The occupancy grids of ``codes`` (coarse density; fine density unless switched off),
        built once per code set and weights."""
        return self.grid_cache.grids(self, codes, skip or self.skip_settings)

    def render_image(self, rays: RayBundle, codes: FaceCodes, height: int, width: int,
                     settings: RenderSettings | None = None, progress: bool = False, fast: bool = True) -> dict:
        """Render an image's ``height * width`` rays (row-major) in chunks, without gradients.

        ``fast`` uses the empty-space-skipping path of :mod:`~facenerf.models.mofanerf.acceleration`
        (``self.skip_settings``); ``fast=False`` (or a perturbed ``settings``) runs the
        straightforward reference: every sample of both passes, colour included.
        Returns ``{"rgb": [H, W, 3], "depth": [H, W], "opacity": [H, W], "n_evaluated": [H, W], ...}``.
        """
        settings = settings or self.eval_settings
        if not fast or settings.perturb:
            coarse, fine = self.fields(codes)
            return render_image(rays, coarse, fine, settings, height, width, progress=progress)
        grid, fine_grid = self.occupancy_grids(codes)
        fast_settings = self.skip_settings.render_settings(settings)
        if fast_settings.chunk_rays <= 0:
            width_net = self.cfg.netwidth_fine if self.fine is not None else self.cfg.netwidth
            fast_settings = replace(fast_settings, chunk_rays=auto_chunk_rays(rays.device, 16, width_net))
        coarse, fine = self.fields(codes)
        return render_image(rays, coarse, fine, fast_settings, height, width, progress=progress, grid=grid,
                            fine_grid=fine_grid)

    # ----------------------------------------------------------------- engine interface
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter the optimiser updates (the frozen logstd head is excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self) -> dict[str, list[dict]]:
        return {"main": [{"params": self.trainable_parameters(), "lr": self.lrate, "name": "mofanerf"}]}

    def training_step(self, batch: dict, step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Photometric loss of one batch of rays from one frame.

        ``batch``: ``rays`` (RayBundle, N rays), ``rgb [N, 3]`` targets, ``shape [1, shape_dim]``,
        ``uv [1, 3, S, S]`` (or ``texture [1, texture_dim]``), ``expression`` (index tensor [1])
        and optionally ``seed`` (int) for the stratified jitter, making the step reproducible.
        The scalars are one-element tensors; the trainer copies them to the host together.
        """
        return self(batch)

    def on_step_end(self, step: int, scalars: Mapping[str, float] | None = None) -> None:
        """Watch the step's scalars for a collapse of training
        (:mod:`~facenerf.models.mofanerf.collapse`), reported once on stderr."""
        if not scalars:
            return
        warning = self.collapse_monitor.update(step, scalars["psnr"], scalars.get("psnr_coarse"),
                                               scalars["pred_std"], scalars["target_std"])
        if warning:
            from facenerf.engine.distributed import is_main_process

            if is_main_process():
                print(f"warning: {warning}", file=sys.stderr, flush=True)

    def forward(self, batch: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        codes = self.face_codes(batch["shape"], expression_index=batch["expression"],
                                texture=batch.get("texture"), uv=batch.get("uv"))
        generator = torch.Generator().manual_seed(int(batch["seed"])) if "seed" in batch else None
        out = self.render_rays(batch["rays"], codes, self.train_settings, generator)
        target = batch["rgb"]
        mse_fine = torch.mean((out["rgb"].float() - target) ** 2)
        loss = mse_fine
        scalars = {"mse": mse_fine.detach()}
        if "rgb_coarse" in out:
            mse_coarse = torch.mean((out["rgb_coarse"].float() - target) ** 2)
            loss = loss + mse_coarse
            scalars["psnr_coarse"] = psnr_from_mse(mse_coarse.detach())
        scalars["psnr"] = psnr_from_mse(mse_fine.detach())
        scalars["loss"] = loss.detach()
        scalars["pred_std"] = out["rgb"].detach().float().std(dim=0).mean()  # colour spread over the rays
        scalars["target_std"] = target.detach().float().std(dim=0).mean()
        return {"main": loss}, scalars


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameter values in ``module`` (trainable or frozen); 0 for None."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _density_entry(network: MoFaNeRFNetwork, pe_xyz: nn.Module, points: Tensor, expression: Tensor,
                   shape: Tensor) -> tuple[Tensor, Tensor]:
    """points [M, 3] -> (sigma [M] = ReLU(raw density), density feature [M, W])."""
    feature = network.density_feature(pe_xyz(points), expression, shape)
    return torch.relu(network.density_head(feature).squeeze(-1)), feature


def _colour_entry(network: MoFaNeRFNetwork, pe_dir: nn.Module, feature: Tensor, directions: Tensor,
                  texture: Tensor) -> Tensor:
    """density features [M, W], unit directions [M, 3] -> rgb [M, 3] = sigmoid(raw colour)."""
    return torch.sigmoid(network.raw_colour(feature, pe_dir(directions), texture))


class NetworkField:
    """One MoFaNeRF network bound to one face's codes, as a core field.

    ``density(points [M, 3]) -> (sigma [M], feature [M, W])``, ``colour(feature, unit dirs
    [M, 3]) -> rgb [M, 3]``; calling it, ``field(points, dirs)``, returns ``(sigma, rgb)``.
    """

    def __init__(self, model: MoFaNeRF, network: MoFaNeRFNetwork, codes: FaceCodes):
        self.model, self.network, self.codes = model, network, codes
        self._density = model._compiled.get("density", _density_entry)
        self._colour = model._compiled.get("colour", _colour_entry)

    def density(self, points: Tensor) -> tuple[Tensor, Tensor]:
        return self._density(self.network, self.model.pe_xyz, points, self.codes.expression, self.codes.shape)

    def colour(self, features: Tensor, directions: Tensor) -> Tensor:
        return self._colour(self.network, self.model.pe_dir, features, directions, self.codes.texture)

    def __call__(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        sigma, feature = self.density(points)
        return sigma, self.colour(feature, directions)
