"""Ray bundles and pixel-to-ray conversion (MoFaNeRF / NeRF "blender" convention).

A pixel ``(x, y)`` of an OpenGL camera maps to the camera-space direction
``((x + c - cx) / fx, -(y + c - cy) / fy, -1)`` with ``c = pixel_center`` (0 by default, as in
MoFaNeRF), rotated into the world by ``c2w[:3, :3]`` and NOT normalised: the sample at
parameter ``t`` lies at camera depth ``t``. The origin is the camera centre ``c2w[:3, 3]``.

``pixel_center`` is the convention of the images the rays are compared with: images rendered by
OpenGL with the principal point ``(cx, cy)`` (the original MoFaNeRF ``render.py``) show at pixel
``(i, j)`` the ray through ``(i + 0.5, j + 0.5)``, so they need ``pixel_center = 0.5``; images
rendered with the principal point moved by half a pixel need 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics


@dataclass
class RayBundle:
    """A batch of rays; row ``i`` of every field belongs to ray ``i``."""

    origins: Tensor  # [N, 3] world units
    directions: Tensor  # [N, 3] NOT normalised (camera-space z = -1 rotated by c2w)
    near: Tensor  # [N, 1] ray parameter t where sampling starts
    far: Tensor  # [N, 1] ray parameter t where sampling ends

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def __getitem__(self, idx) -> "RayBundle":
        """Select rays by int, slice, index tensor or boolean mask (always keeps [N, ...])."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return RayBundle(self.origins[idx], self.directions[idx], self.near[idx], self.far[idx])

    def to(self, device) -> "RayBundle":
        """The same rays on ``device``."""
        return RayBundle(
            self.origins.to(device), self.directions.to(device), self.near.to(device), self.far.to(device)
        )

    @property
    def device(self) -> torch.device:
        return self.origins.device

    @staticmethod
    def cat(bundles: list["RayBundle"]) -> "RayBundle":
        """Concatenate bundles in order."""
        return RayBundle(
            torch.cat([b.origins for b in bundles]),
            torch.cat([b.directions for b in bundles]),
            torch.cat([b.near for b in bundles]),
            torch.cat([b.far for b in bundles]),
        )


def _as_pose(c2w: Tensor) -> Tensor:
    """c2w as a floating tensor [4, 4] or [N, 4, 4] (3x4 accepted)."""
    c2w = torch.as_tensor(c2w)
    if not c2w.is_floating_point():
        c2w = c2w.float()
    if c2w.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"c2w must be [..., 4, 4] or [..., 3, 4], got {tuple(c2w.shape)}")
    return c2w


def pixel_rays(
    K: Intrinsics,
    c2w: Tensor,
    xy: Tensor,
    near: float,
    far: float,
    pixel_center: float = 0.0,
) -> RayBundle:
    """Rays through pixel coordinates ``xy`` [N, 2] = (column, row).

    ``c2w`` is one pose [4, 4] shared by all rays or one pose per ray [N, 4, 4].
    """
    c2w = _as_pose(c2w)
    xy = torch.as_tensor(xy, device=c2w.device).to(c2w.dtype)
    x = xy[:, 0] + pixel_center
    y = xy[:, 1] + pixel_center
    dirs_cam = torch.stack(
        [(x - K.cx) / K.fx, -(y - K.cy) / K.fy, -torch.ones_like(x)], dim=-1
    )  # [N, 3] camera space
    if c2w.dim() == 2:
        directions = dirs_cam @ c2w[:3, :3].T  # [N, 3]
        origins = c2w[:3, 3].expand_as(directions).contiguous()  # [N, 3]
    else:
        directions = torch.einsum("nij,nj->ni", c2w[:, :3, :3], dirs_cam)
        origins = c2w[:, :3, 3].contiguous()
    n = xy.shape[0]
    near_t = torch.full((n, 1), float(near), dtype=c2w.dtype, device=c2w.device)
    far_t = torch.full((n, 1), float(far), dtype=c2w.dtype, device=c2w.device)
    return RayBundle(origins, directions, near_t, far_t)


def image_pixels(K: Intrinsics, device=None) -> Tensor:
    """Integer pixel coordinates (x, y) of the whole image in row-major order, [H*W, 2] float32."""
    ys, xs = torch.meshgrid(
        torch.arange(K.height, dtype=torch.float32, device=device),
        torch.arange(K.width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def image_rays(
    K: Intrinsics, c2w: Tensor, near: float, far: float, pixel_center: float = 0.0
) -> RayBundle:
    """One ray per pixel, ``H * W`` rays in row-major order (ray ``r * W + c`` = row r, column c)."""
    c2w = _as_pose(c2w)
    if c2w.dim() != 2:
        raise ValueError("image_rays takes a single pose [4, 4]")
    return pixel_rays(K, c2w, image_pixels(K, c2w.device), near, far, pixel_center)


def scaled_pixel_center(pixel_center: float, factor: float) -> float:
    """The pixel centre of an image resized by ``factor`` (with :meth:`Intrinsics.scaled`).

    Pixel ``i`` of an image with convention ``c`` covers ``[i + c - 0.5, i + c + 0.5)`` in
    projection coordinates; area resampling keeps pixel edges, so the resized image's convention
    is ``0.5 + factor * (c - 0.5)``: 0.5 is kept at every size, 0 becomes 0.25 at half size.
    """
    return 0.5 + float(factor) * (float(pixel_center) - 0.5)


def scale_pixel_coordinates(xy: Tensor, factor: float) -> Tensor:
    """Pixel coordinates ``[N, 2]`` (x, y) of the same points in the image resized by ``factor``.

    Pixel ``i`` spans index coordinates ``[i - 0.5, i + 0.5)`` whatever the convention, so
    ``x' = (x + 0.5) * factor - 0.5``.
    """
    return (xy + 0.5) * float(factor) - 0.5
