"""Identity-specific modulation (ISM): the shape code rescales and shifts the expression code.

``eps' = s(beta) * eps + b(beta)``: an MLP of ``depth`` Linear+ReLU layers reads the shape code
``beta`` and two linear heads give the per-dimension scale ``s`` and shift ``b``. The same
expression code therefore deforms each identity in its own way (reference §1.3).
"""

from __future__ import annotations

from torch import Tensor, nn

from facenerf.models.mofanerf.layers import xavier_linear


class IdentityModulation(nn.Module):
    """``(shape [B, shape_dim], expression [B, exp_dim]) -> modulated expression [B, exp_dim]``."""

    def __init__(self, shape_dim: int = 50, exp_dim: int = 30, width: int = 256, depth: int = 4):
        super().__init__()
        self.mlp = nn.ModuleList([xavier_linear(shape_dim, width)] +
                                 [xavier_linear(width, width) for _ in range(depth - 1)])
        self.scale = xavier_linear(width, exp_dim)
        self.shift = xavier_linear(width, exp_dim)

    def scale_shift(self, shape: Tensor) -> tuple[Tensor, Tensor]:
        """``shape [B, shape_dim]`` -> ``(scale [B, exp_dim], shift [B, exp_dim])``."""
        h = shape
        for layer in self.mlp:
            h = layer(h).relu()
        return self.scale(h), self.shift(h)

    def forward(self, shape: Tensor, expression: Tensor) -> Tensor:
        """Modulate ``expression [B, exp_dim]`` by ``shape [B, shape_dim]`` (B may broadcast)."""
        scale, shift = self.scale_shift(shape)
        return scale * expression + shift
