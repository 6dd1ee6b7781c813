"""One MoFaNeRF MLP (the coarse or the fine network).

Wiring (reference §1.1, §1.7):

    h     = XYZ([PE(x), eps'])              position encoder, ``xyz_depth`` layers, no skip
    f_s   = DensityTrunk([beta, h])          ``depth`` layers, skip after ``skip``
    sigma = DensityHead(f_s)                 W -> 1, raw (ReLU is applied by the field)
    f_c   = ColourTrunk([alpha, f_s])        ``depth`` layers, skip after ``skip``
    v     = ReLU(View([PE(d), f_c]))          -> W/2
    rgb   = RGBHead(v)                       W/2 -> 3, raw (sigmoid is applied by the field)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facenerf.models.mofanerf.layers import SkipTrunk, split_linear, xavier_linear


class MoFaNeRFNetwork(nn.Module):
    """Raw density and colour of sample points given the face's three codes.

    Args:
        pe_dim: width of the position encoding (63 for 10 frequencies).
        view_dim: width of the view-direction encoding (27 for 4 frequencies).
        shape_dim, texture_dim, exp_dim: code sizes.
        width, depth: trunk width and layer count; ``skip`` layers before each trunk's skip.
        xyz_depth: layers of the position encoder.
    """

    def __init__(self, pe_dim: int, view_dim: int, shape_dim: int, texture_dim: int, exp_dim: int,
                 width: int, depth: int, skip: int, xyz_depth: int = 4):
        super().__init__()
        self.width = width
        self.xyz_encoder = SkipTrunk(exp_dim, pe_dim, width, xyz_depth, skip=None, code_first=False)
        self.density_trunk = SkipTrunk(shape_dim, width, width, depth, skip)
        self.density_head = xavier_linear(width, 1)
        self.colour_trunk = SkipTrunk(texture_dim, width, width, depth, skip)
        self.view_layer = xavier_linear(view_dim + width, width // 2)
        self.rgb_head = xavier_linear(width // 2, 3)

    def density_feature(self, pe_x: Tensor, expression: Tensor, shape: Tensor) -> Tensor:
        """``pe_x [M, pe_dim]``, codes ``[1, *]`` -> density feature ``[M, W]``."""
        h = self.xyz_encoder(pe_x, expression)
        return self.density_trunk(h, shape)

    def forward(self, pe_x: Tensor, pe_d: Tensor, expression: Tensor, shape: Tensor,
                texture: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            pe_x: ``[M, pe_dim]`` encoded positions.
            pe_d: ``[M, view_dim]`` encoded unit view directions.
            expression: ``[1, exp_dim]`` modulated expression code (or ``[M, exp_dim]``).
            shape: ``[1, shape_dim]`` shape code; texture: ``[1, texture_dim]`` appearance code.
        Returns:
            ``(raw_density [M], raw_rgb [M, 3])`` before activations.
        """
        f_sigma = self.density_feature(pe_x, expression, shape)
        raw_density = self.density_head(f_sigma).squeeze(-1)
        return raw_density, self.raw_colour(f_sigma, pe_d, texture)

    def raw_colour(self, f_sigma: Tensor, pe_d: Tensor, texture: Tensor) -> Tensor:
        """Raw rgb ``[M, 3]`` from density features ``[M, W]``, encoded directions and alpha."""
        f_colour = self.colour_trunk(f_sigma, texture)
        view = torch.relu_(split_linear(self.view_layer, [pe_d, f_colour]))
        return self.rgb_head(view)

    def raw_density(self, pe_x: Tensor, expression: Tensor, shape: Tensor) -> Tensor:
        """Raw density ``[M]`` alone (skips the colour branch)."""
        return self.density_head(self.density_feature(pe_x, expression, shape)).squeeze(-1)
