"""The NeRFBlendShape head field: expression-blended hash tables, density MLP, colour MLP.

The field holds ``K + 1`` hash-table sets ``tables [K+1, P, F]``: the mean (row 0) and one per
expression coefficient. A frame's coefficients ``e [K]`` get the mean's constant 1.0 in front
and are clamped element-wise into the training range ``[expr_min, expr_max]`` (both with 1.0
in front); nothing else normalises them. The frame's table is the linear blend
``H(e) = sum_k e_k H_k`` (:func:`facenerf.core.encodings.blend_tables`), and a point's features
are the multiresolution lookup in that table (:func:`facenerf.core.encodings.encode_hash_grid`).
Colour and density depend on the expression only through the table (reference §1.2-§1.3).

Like every core field the head knows nothing of rays: :meth:`BlendShapeField.bind` returns a
:class:`HeadField` for one frame with ``density(points) -> (sigma, features)`` and
``colour(features, directions) -> rgb``. :meth:`BlendShapeField.expression_density_fn` is the
density callback of the expression-aware occupancy-grid update (reference §2.2): the maximum
over the ``K + 1`` basis expressions ``(1, 0, .., max_k, .., 0)`` (clamped like any input).

Densities: the density MLP's first output through a softplus (the release; ``trunc_exp``, the
unofficial code's exponential, on request) is the *box-relative* density
(the release's units, where the box half-side is 0.06); world densities are that times
``REFERENCE_BOUND / bound`` (:attr:`BlendShapeSceneConfig.density_scale`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.core.encodings import SHEncoding, blend_tables, encode_hash_grid, make_hash_grid_meta
from facenerf.core.mlp import MLP, trunc_exp
from facenerf.core.scene_box import cube_aabb, to_unit_cube
from facenerf.models.blendshape.config import REFERENCE_BOUND, BlendShapeConfig

TABLE_INIT = 1e-4  # tables start uniform in [-TABLE_INIT, TABLE_INIT] (the release's)


class BlendShapeField(nn.Module):
    """The head field (see the module docstring).

    Args:
        cfg: sizes; ``cfg.expr_dim`` (K) must be resolved.
        bound: half-side of the head cube ``[-bound, bound]^3`` (dataset units).
        expr_max, expr_min: ``[K]`` training-set range of the coefficients (the clamp).
    """

    def __init__(self, cfg: BlendShapeConfig, bound: float, expr_max: Tensor, expr_min: Tensor):
        super().__init__()
        k = cfg.n_tables - 1
        if tuple(expr_max.shape) != (k,) or tuple(expr_min.shape) != (k,):
            raise ValueError(f"expression range must be [{k}], got {tuple(expr_max.shape)} / {tuple(expr_min.shape)}")
        self.cfg = cfg
        self.implementation = cfg.grid_impl
        self.meta = make_hash_grid_meta(3, cfg.num_levels, cfg.level_dim, cfg.log2_hashmap_size,
                                        cfg.base_resolution, cfg.desired_resolution)
        self.tables = nn.Parameter(torch.empty(cfg.n_tables, self.meta.table_rows, cfg.level_dim)
                                   .uniform_(-TABLE_INIT, TABLE_INIT))  # [K+1, P, F]
        one = torch.ones(1)
        self.register_buffer("aabb", cube_aabb(bound))                                  # [6]
        self.register_buffer("expr_max", torch.cat([one, expr_max.float().reshape(-1)]))  # [K+1]
        self.register_buffer("expr_min", torch.cat([one, expr_min.float().reshape(-1)]))  # [K+1]
        self.density_scale = REFERENCE_BOUND / float(bound)
        self.activation = F.softplus if cfg.density_activation == "softplus" else trunc_exp
        self.sigma_net = MLP(self.meta.out_dim, cfg.hidden_dim, cfg.num_layers, 1 + cfg.geo_feat_dim, bias=False)
        self.sh = SHEncoding(cfg.sh_degree)
        self.color_net = MLP(self.sh.out_dim + cfg.geo_feat_dim, cfg.hidden_dim_color, cfg.num_layers_color, 3,
                             bias=False, out_activation="sigmoid")

    @property
    def expr_dim(self) -> int:
        return self.tables.shape[0] - 1

    # ------------------------------------------------------------------ coefficients
    def coefficients(self, expression: Tensor) -> Tensor:
        """Raw coefficients ``[..., K]`` -> blend weights ``[..., K+1]``: 1.0 in front, clamped to the range."""
        if expression.shape[-1] != self.expr_dim:
            raise ValueError(f"expected {self.expr_dim} coefficients, got {expression.shape[-1]}")
        full = torch.cat([torch.ones_like(expression[..., :1]), expression], dim=-1).to(self.expr_max.dtype)
        return torch.minimum(torch.maximum(full, self.expr_min), self.expr_max)

    def basis_coefficients(self) -> Tensor:
        """``[K+1, K+1]`` blend weights of the basis expressions: row k has 1.0 first and ``max_k`` at k
        (row 0: the mean alone), every other entry 0; then clamped like any input."""
        n = self.expr_dim + 1
        rows = torch.zeros(n, n, device=self.expr_max.device)
        rows[:, 0] = 1.0
        rows[torch.arange(1, n), torch.arange(1, n)] = self.expr_max[1:]
        return torch.minimum(torch.maximum(rows, self.expr_min), self.expr_max)

    def expression_tables(self) -> Tensor:
        """The ``K`` expression table sets ``[K, P, F]`` (the sparsity regulariser's target)."""
        return self.tables[1:]

    # ------------------------------------------------------------------ networks
    def box_density(self, points: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
        """points [M, 3] (world), table [P, F] -> (box-relative density [M] >= 0, features [M, G])."""
        unit = to_unit_cube(points, self.aabb)
        feats = encode_hash_grid(unit, table, self.meta, implementation=self.implementation)  # [M, L*F]
        out = self.sigma_net(feats)  # [M, 1 + G]
        return self.activation(out[:, 0].float()), out[:, 1:]

    def colour(self, features: Tensor, directions: Tensor) -> Tensor:
        """features [M, G] from :meth:`box_density`, unit directions [M, 3] -> rgb [M, 3] in [0, 1]."""
        sh = self.sh(directions).to(features.dtype)
        return self.color_net(torch.cat([sh, features], dim=-1))

    def bind(self, expression: Tensor) -> "HeadField":
        """The field of one frame with raw coefficients ``expression [K]`` (blended once, differentiable)."""
        weights = self.coefficients(expression.reshape(1, -1))  # [1, K+1]
        return HeadField(self, blend_tables(self.tables, weights)[0])

    @torch.no_grad()
    def expression_density_fn(self) -> Callable[[Tensor], Tensor]:
        """The occupancy-grid callback: points [M, 3] -> max over the basis expressions of the
        box-relative density [M] (tables blended once per call of this method)."""
        basis = blend_tables(self.tables.detach(), self.basis_coefficients())  # [K+1, P, F]

        @torch.no_grad()
        def density(points: Tensor) -> Tensor:
            best = None
            for table in basis:
                sigma = self.box_density(points, table)[0]
                best = sigma if best is None else torch.maximum(best, sigma)
            return best

        return density


class HeadField:
    """One frame's head field (the core ``Field`` protocol): a blended table ``[P, F]`` bound to the
    shared networks. ``density`` returns world densities."""

    def __init__(self, head: BlendShapeField, table: Tensor):
        self.head, self.table = head, table

    def density(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points [M, 3] -> (sigma [M] world units, features [M, G])."""
        sigma, features = self.head.box_density(points, self.table)
        return sigma * self.head.density_scale, features

    def colour(self, features: Tensor, directions: Tensor) -> Tensor:
        """features [M, G], unit directions [M, 3] -> rgb [M, 3]."""
        return self.head.colour(features, directions)
