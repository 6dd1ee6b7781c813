"""The 2-D torso net of NeRFBlendShape's torso mode (the RAD-NeRF design), in pure PyTorch.

The torso is an image-space model, not a NeRF: every pixel's normalised coordinate
(:func:`pixel_coords`), shrunk by ``shrink``, is deformed by a small MLP conditioned on the
head pose (:func:`pose_vector`, frequency-encoded) and a learned per-frame code, looked up in a
2-D multiresolution grid and decoded to an alpha and a colour. The torso is composited between
the head and the background (:func:`composite`); training compares the torso-over-background
colour with the torso RGBA target over the same background (:func:`torso_loss`). A 2-D
occupancy grid of torso alpha (:class:`TorsoOccupancy`) lets :meth:`TorsoNet.render` skip the
pixels where no torso has been seen.

Conventions:

* **Pixel coordinates** are ``(u, v)`` = (column, row), the project's ``(x, y)`` order, in
  row-major pixel order (index ``r * W + c``, as :func:`facenerf.core.rays.image_pixels`). The
  image's outer pixel *edges* map to -1 and 1: pixel index ``i`` (whose pixel spans index
  coordinates ``[i - 0.5, i + 0.5)``) has centre ``(2 i + 1) / W - 1``. This is independent
  of the images' ``pixel_center`` (the torso is learned in image space, through no camera),
  and a resized image keeps the coordinate of every point, as
  :func:`facenerf.core.rays.scale_pixel_coordinates` does. (RAD-NeRF's ``get_bg_coords`` uses
  (row, column) with the first and last pixel centres at -1 and 1; the order and the
  half-pixel offset are immaterial to a learned image-space model.)
* **Frequency encoding** is :class:`facenerf.core.encodings.FrequencyEncoding`:
  ``[x, sin(2^k x), cos(2^k x)]_{k < n}``, no pi factor, as the reference's encoder.
* **The 2-D grid** is :class:`facenerf.core.encodings.HashGridEncoding` with ``in_dim = 2`` and
  the reference's sizes. Levels whose dense grid fits ``2^log2_table_size`` rows are stored
  densely, as in the reference's "tiled" grid; finer levels are hashed with the instant-ngp
  hash, where the tiled grid wraps the dense index modulo the table size instead. Both share
  rows between distant vertices at fine levels; the parameter count is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.config import option
from facenerf.core.encodings import FrequencyEncoding, HashGridEncoding
from facenerf.core.cameras import Intrinsics
from facenerf.core.mlp import MLP
from facenerf.core.rays import image_pixels
from facenerf.errors import FaceNerfError

AlphaFn = Callable[[Tensor], Tensor]  # coords [M, 2] in [-1, 1] -> alpha [M, 1]


@dataclass(frozen=True)
class TorsoConfig:
    """Sizes of the torso net, its occupancy grid and its learning rates (reference §1.6)."""

    shrink: float = option(0.8, "pixel coordinates are multiplied by this before the torso net",
                           key="torso_shrink")
    pose_freqs: int = option(4, "frequencies of the 6-number head-pose encoding", key="torso_pose_freqs")
    coord_freqs: int = option(10, "frequencies of the 2-D coordinate encoding", key="torso_coord_freqs")
    code_dim: int = option(8, "size of the learned per-frame torso code", key="ind_dim_torso")
    deform_layers: int = option(3, "linear layers of the deformation MLP", key="torso_deform_layers")
    deform_width: int = option(64, "width of the deformation MLP", key="torso_deform_width")
    grid_levels: int = option(16, "levels of the 2-D torso grid", key="torso_grid_levels")
    grid_features: int = option(2, "features per level of the 2-D torso grid", key="torso_grid_features")
    grid_base: int = option(16, "coarsest resolution of the 2-D torso grid", key="torso_grid_base")
    grid_finest: int = option(2048, "finest resolution of the 2-D torso grid", key="torso_grid_finest")
    grid_log2_table: int = option(16, "log2 of the rows per level of the 2-D torso grid",
                                  key="torso_grid_log2_table")
    grid_implementation: str = option("auto", "2-D grid lookup (see core.backends)", key="torso_grid_impl",
                                      choices=("auto", "torch", "triton"))
    color_layers: int = option(3, "linear layers of the alpha/colour MLP", key="torso_color_layers")
    color_width: int = option(32, "width of the alpha/colour MLP", key="torso_color_width")
    occupancy_resolution: int = option(128, "side of the 2-D torso occupancy grid", key="torso_grid_size")
    occupancy_dilation: int = option(5, "max-pool window that dilates fresh occupancy (odd)",
                                     key="torso_occupancy_dilation")
    occupancy_decay: float = option(0.95, "EMA decay of the torso occupancy", key="torso_occupancy_decay")
    alpha_threshold: float = option(0.01, "pixels whose occupancy is at most min(this, mean) skip the net",
                                    key="density_thresh_torso")
    lr_grid: float = option(5e-3, "learning rate of the 2-D torso grid", key="torso_lr_grid")
    lr_net: float = option(5e-4, "learning rate of the torso MLPs and codes", key="torso_lr_net")
    entropy_weight: float = option(1e-4, "weight of the binary-entropy penalty on torso alpha",
                                   key="torso_entropy_weight")

    def __post_init__(self):
        if self.occupancy_dilation < 1 or self.occupancy_dilation % 2 == 0:
            raise FaceNerfError(f"torso occupancy dilation must be an odd window >= 1, got "
                                f"{self.occupancy_dilation}: use 5 (the reference) or another odd size")
        if self.deform_layers < 1 or self.color_layers < 1 or self.code_dim < 0:
            raise FaceNerfError("torso MLPs need at least one layer and a code size >= 0: check the torso config")


# ----------------------------------------------------------------------------- pose and pixels

def euler_xyz_matrix(angles: Tensor) -> Tensor:
    """Rotation ``R = Rx(a) @ Ry(b) @ Rz(c)`` of angles [..., 3] = (a, b, c) radians -> [..., 3, 3]."""
    a, b, c = angles.unbind(-1)
    one, zero = torch.ones_like(a), torch.zeros_like(a)

    def rot(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = rot([(one, zero, zero), (zero, a.cos(), -a.sin()), (zero, a.sin(), a.cos())])
    ry = rot([(b.cos(), zero, b.sin()), (zero, one, zero), (-b.sin(), zero, b.cos())])
    rz = rot([(c.cos(), -c.sin(), zero), (c.sin(), c.cos(), zero), (zero, zero, one)])
    return rx @ ry @ rz


def pose_vector(c2w: Tensor) -> Tensor:
    """Head-pose conditioning of the torso: c2w [4, 4] or [B, 4, 4] (or [.., 3, 4]) -> [.., 6].

    ``(a, b, c, tx, ty, tz)``: the XYZ Euler angles of the rotation, ``R = Rx(a) Ry(b) Rz(c)``
    with ``b`` in [-pi/2, pi/2] and ``a, c`` in (-pi, pi], then the translation. Inverse of
    :func:`euler_xyz_matrix` away from gimbal lock (``|b| = pi/2``, where ``a`` and ``c`` are
    not unique and the returned pair is one of many that give ``R``).
    """
    if c2w.dim() < 2 or c2w.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"pose_vector takes c2w [..., 4, 4] or [..., 3, 4], got {tuple(c2w.shape)}")
    rot = c2w[..., :3, :3]
    b = torch.asin(rot[..., 0, 2].clamp(-1.0, 1.0))
    a = torch.atan2(-rot[..., 1, 2], rot[..., 2, 2])
    c = torch.atan2(-rot[..., 0, 1], rot[..., 0, 0])
    return torch.cat([torch.stack([a, b, c], -1), c2w[..., :3, 3]], dim=-1)


def normalized_pixels(xy: Tensor, height: int, width: int) -> Tensor:
    """Pixel coordinates xy [N, 2] = (column, row), pixel centres at integers -> [N, 2] in [-1, 1]
    with the image's outer pixel edges at -1 and 1 (see the module docstring)."""
    size = torch.tensor([width, height], dtype=xy.dtype, device=xy.device)
    return (2.0 * xy + 1.0) / size - 1.0


def pixel_coords(height: int, width: int, device=None) -> Tensor:
    """Normalised (column, row) coordinates of every pixel, row-major -> [H*W, 2] in [-1, 1].

    Pixel (r, c) is row ``r * W + c`` with value ``((2c + 1) / W - 1, (2r + 1) / H - 1)``.
    """
    xy = image_pixels(Intrinsics(width, height, 1.0, 1.0, 0.0, 0.0), device)  # [H*W, 2] (x, y)
    return normalized_pixels(xy, height, width)


# ----------------------------------------------------------------------------- occupancy

class TorsoOccupancy(nn.Module):
    """A ``resolution``^2 grid of torso alpha over the normalised image [-1, 1]^2.

    Cells follow the pixel convention of :func:`pixel_coords` (cell (r, c) is the pixel of a
    ``resolution``^2 image). A fresh grid marks every cell occupied; :meth:`update` evaluates
    the alpha at every cell centre, dilates it by a ``dilation``^2 max-pool, and keeps
    ``max(decay * old, new)`` (the first update just takes ``new``). A cell is occupied when
    its value exceeds ``min(threshold, mean)``.
    """

    def __init__(self, resolution: int = 128, dilation: int = 5, decay: float = 0.95, threshold: float = 0.01):
        super().__init__()
        self.resolution, self.dilation, self.decay, self.threshold = resolution, dilation, decay, threshold
        self.register_buffer("alpha", torch.zeros(resolution, resolution))  # [R, R] rows, columns
        self.register_buffer("occupied", torch.ones(resolution, resolution, dtype=torch.bool))  # [R, R]
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, alpha_fn: AlphaFn) -> None:
        """Refresh the grid from ``alpha_fn(coords [R*R, 2]) -> alpha [R*R, 1]`` (one pose)."""
        res = self.resolution
        coords = pixel_coords(res, res, self.alpha.device)
        fresh = alpha_fn(coords).reshape(1, 1, res, res).float()
        pad = self.dilation // 2
        fresh = F.max_pool2d(fresh, self.dilation, stride=1, padding=pad)[0, 0]  # [R, R]
        if int(self.n_updates) == 0:
            self.alpha.copy_(fresh)
        else:
            self.alpha.copy_(torch.maximum(self.alpha * self.decay, fresh))
        self.n_updates += 1
        cut = min(self.threshold, float(self.alpha.mean()))
        self.occupied.copy_(self.alpha > cut)

    def mask(self, coords: Tensor) -> Tensor:
        """Whether the net should evaluate each pixel: coords [N, 2] in [-1, 1] -> bool [N]
        (the occupancy of the nearest cell)."""
        res = self.resolution
        cells = ((coords + 1.0) * 0.5 * res).floor().long().clamp(0, res - 1)  # [N, 2] (col, row)
        return self.occupied[cells[:, 1], cells[:, 0]]


# ----------------------------------------------------------------------------- the net

class TorsoNet(nn.Module):
    """Pose- and frame-conditioned 2-D torso: coords -> (alpha, rgb); see the module docstring.

    Parameters: ``grid`` (the 2-D encoding), ``deform`` and ``color`` MLPs (no biases) and
    ``codes`` [n_frames, code_dim] (init ``randn * 0.1``). Buffers: ``occupancy``.
    """

    def __init__(self, config: TorsoConfig = TorsoConfig(), n_frames: int = 1):
        super().__init__()
        if n_frames < 1:
            raise FaceNerfError(f"the torso net needs at least one frame code, got n_frames={n_frames}")
        self.config, self.n_frames = config, n_frames
        self.coord_enc = FrequencyEncoding(2, config.coord_freqs)
        self.pose_enc = FrequencyEncoding(6, config.pose_freqs)
        cond_dim = self.coord_enc.out_dim + self.pose_enc.out_dim + config.code_dim
        self.deform = MLP(cond_dim, config.deform_width, config.deform_layers - 1, 2, bias=False, init="default")
        self.grid = HashGridEncoding(2, config.grid_levels, config.grid_features, config.grid_log2_table,
                                     config.grid_base, config.grid_finest,
                                     implementation=config.grid_implementation)
        self.color = MLP(self.grid.out_dim + cond_dim, config.color_width, config.color_layers - 1, 4,
                         bias=False, init="default")
        self.codes = nn.Parameter(torch.randn(n_frames, config.code_dim) * 0.1)  # [n_frames, code_dim]
        self.occupancy = TorsoOccupancy(config.occupancy_resolution, config.occupancy_dilation,
                                        config.occupancy_decay, config.alpha_threshold)

    def frame_code(self, frame: int | None) -> Tensor:
        """The code of ``frame`` [code_dim]; None gives frame 0's code (the test-time choice)."""
        index = 0 if frame is None else int(frame)
        if not 0 <= index < self.n_frames:
            raise FaceNerfError(f"torso frame {index} is outside the {self.n_frames} frame codes of this model: "
                                "use a training frame index or None")
        return self.codes[index]

    def forward(self, coords: Tensor, pose: Tensor, frame: int | None = None) -> tuple[Tensor, Tensor]:
        """coords [N, 2] in [-1, 1] (:func:`pixel_coords`), pose [6] (:func:`pose_vector`),
        frame index or None -> alpha [N, 1] in (0, 1), rgb [N, 3] in (0, 1)."""
        if coords.dim() != 2 or coords.shape[1] != 2 or pose.shape != (6,):
            raise ValueError(f"torso net takes coords [N, 2] and pose [6], got {tuple(coords.shape)}, "
                             f"{tuple(pose.shape)}")
        n = coords.shape[0]
        x = coords * self.config.shrink  # [N, 2]
        pose_code = torch.cat([self.pose_enc(pose[None].to(x.dtype)), self.frame_code(frame)[None].to(x.dtype)], -1)
        cond = torch.cat([self.coord_enc(x), pose_code.expand(n, -1)], dim=-1)  # [N, cond_dim]
        x = (x + self.deform(cond)).clamp(-1.0, 1.0)  # [N, 2] deformed
        out = self.color(torch.cat([self.grid((x + 1.0) * 0.5), cond], dim=-1))  # [N, 4]
        out = torch.sigmoid(out)
        return out[:, :1], out[:, 1:]

    def render(self, coords: Tensor, pose: Tensor, frame: int | None = None,
               use_occupancy: bool = True) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on the occupied pixels only; skipped pixels get alpha 0 and rgb 0
        (they show the background). Same shapes as :meth:`forward`."""
        if not use_occupancy:
            return self(coords, pose, frame)
        keep = torch.nonzero(self.occupancy.mask(coords)).squeeze(1)  # [M]
        alpha_k, rgb_k = self(coords.index_select(0, keep), pose, frame)
        alpha = coords.new_zeros(coords.shape[0], 1, dtype=alpha_k.dtype).index_copy(0, keep, alpha_k)
        rgb = coords.new_zeros(coords.shape[0], 3, dtype=rgb_k.dtype).index_copy(0, keep, rgb_k)
        return alpha, rgb

    def update_occupancy(self, pose: Tensor, frame: int | None = None) -> None:
        """Refresh :attr:`occupancy` from the alpha at ``pose`` [6] (a random training pose)."""
        self.occupancy.update(lambda coords: self(coords, pose, frame)[0])

    def param_groups(self) -> list[dict]:
        """Adam groups with the reference's learning rates: the grid, then MLPs and codes."""
        grid = list(self.grid.parameters())
        rest = [p for name, p in self.named_parameters() if not name.startswith("grid.")]
        return [{"params": grid, "lr": self.config.lr_grid, "name": "torso_grid"},
                {"params": rest, "lr": self.config.lr_net, "name": "torso_net"}]


# ----------------------------------------------------------------------------- compositing and loss

def torso_over_background(torso_rgb: Tensor, torso_alpha: Tensor, background: Tensor) -> Tensor:
    """``torso_rgb * alpha + background * (1 - alpha)``: rgb [N, 3], alpha [N, 1], background
    [N, 3] or [3] -> [N, 3]."""
    return torso_rgb * torso_alpha + background * (1.0 - torso_alpha)


def composite(head_rgb: Tensor, head_weight_sum: Tensor, torso_rgb: Tensor, torso_alpha: Tensor,
              background: Tensor) -> Tensor:
    """Final pixel colour with the torso between head and background -> [N, 3].

    head_rgb [N, 3] (the head's composited colour, no background), head_weight_sum [N, 1]
    (its accumulated opacity), torso_rgb [N, 3], torso_alpha [N, 1], background [N, 3] or [3]:
    ``head_rgb + (1 - head_weight_sum) * (torso_rgb * alpha + background * (1 - alpha))``.
    """
    return head_rgb + (1.0 - head_weight_sum) * torso_over_background(torso_rgb, torso_alpha, background)


def torso_loss(torso_rgb: Tensor, torso_alpha: Tensor, target_rgba: Tensor, background: Tensor,
               entropy_weight: float = TorsoConfig.entropy_weight) -> dict[str, Tensor]:
    """Torso training loss -> {"loss", "l1", "entropy"} (scalars; "loss" = l1 + weight * entropy).

    torso_rgb [N, 3], torso_alpha [N, 1] (the net's outputs), target_rgba [N, 4] (the torso
    image, straight alpha in [0, 1]), background [N, 3] or [3]. ``l1`` is the mean absolute
    difference between the torso over the background and the target over the same background;
    ``entropy`` is the mean binary entropy (bits) of alpha clamped to [1e-5, 1 - 1e-5], which
    pushes alpha toward 0 or 1. The entropy is computed in fp32: in fp16 (autocast) the clamp's
    upper end rounds to 1 and a saturated alpha gives ``0 * log2(0)``, NaN.
    """
    target = torso_over_background(target_rgba[:, :3], target_rgba[:, 3:], background)
    l1 = (torso_over_background(torso_rgb, torso_alpha, background) - target).abs().mean()
    a = torso_alpha.float().clamp(1e-5, 1.0 - 1e-5)
    entropy = -(a * torch.log2(a) + (1.0 - a) * torch.log2(1.0 - a)).mean()
    return {"loss": l1 + entropy_weight * entropy, "l1": l1, "entropy": entropy}
