"""A procedurally generated scene of coloured spheres and boxes, rendered exactly by ray casting.

The scene gives ground truth for NeRF demos and tests without any data files: every pixel is
the first surface hit along the pixel's ray, shaded with a fixed world-space light (so colour
does not depend on the viewing direction, like a diffuse object under fixed lighting), on a
black background. World units; everything lies inside the sphere of radius
:attr:`Scene.bound` around the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import RayBundle, image_rays


@dataclass(frozen=True)
class Scene:
    """Primitive lists; colours are RGB in [0, 1]. Boxes are axis-aligned (min/max corners)."""

    sphere_centers: tuple[tuple[float, float, float], ...]
    sphere_radii: tuple[float, ...]
    sphere_colors: tuple[tuple[float, float, float], ...]
    box_mins: tuple[tuple[float, float, float], ...]
    box_maxs: tuple[tuple[float, float, float], ...]
    box_colors: tuple[tuple[float, float, float], ...]
    light_dir: tuple[float, float, float] = (0.4, 0.8, 0.45)   # towards the light
    ambient: float = 0.35
    checker_cells: float = 4.0          # checker squares per world unit on boxes (0 = plain)
    bound: float = 1.3                  # every primitive lies inside this radius
    background: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))


def default_scene() -> Scene:
    """Three spheres on two boxes: a red/green/blue arrangement with a checkered base."""
    return Scene(
        sphere_centers=((0.0, 0.25, 0.0), (-0.55, -0.05, 0.35), (0.5, 0.0, -0.35)),
        sphere_radii=(0.38, 0.25, 0.28),
        sphere_colors=((0.9, 0.2, 0.15), (0.15, 0.75, 0.25), (0.2, 0.35, 0.95)),
        box_mins=((-0.9, -0.6, -0.7), (0.15, -0.3, 0.2)),
        box_maxs=((0.9, -0.3, 0.7), (0.65, 0.15, 0.65)),
        box_colors=((0.95, 0.85, 0.3), (0.85, 0.4, 0.85)),
    )


def _sphere_hits(scene: Scene, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest positive hit per ray and sphere: t [N, S] (inf = miss), normals [N, S, 3], colours [S, 3]."""
    centers = torch.tensor(scene.sphere_centers, dtype=origins.dtype, device=origins.device)  # [S, 3]
    radii = torch.tensor(scene.sphere_radii, dtype=origins.dtype, device=origins.device)      # [S]
    oc = origins[:, None, :] - centers[None]                     # [N, S, 3]
    a = (dirs * dirs).sum(-1, keepdim=True)                      # [N, 1]
    b = 2.0 * (oc * dirs[:, None, :]).sum(-1)                    # [N, S]
    c = (oc * oc).sum(-1) - radii ** 2                           # [N, S]
    disc = b * b - 4.0 * a * c
    root = torch.sqrt(disc.clamp_min(0.0))
    t_near, t_far = (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)
    t = torch.where(t_near > 1e-6, t_near, t_far)
    t = torch.where((disc >= 0) & (t > 1e-6), t, torch.full_like(t, float("inf")))
    points = origins[:, None, :] + dirs[:, None, :] * t.nan_to_num(posinf=0.0)[..., None]
    normals = (points - centers[None]) / radii[None, :, None]
    colours = torch.tensor(scene.sphere_colors, dtype=origins.dtype, device=origins.device)
    return t, normals, colours


def _box_hits(scene: Scene, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab-method entry hits: t [N, B] (inf = miss), outward normals [N, B, 3], colours [B, 3]."""
    lo = torch.tensor(scene.box_mins, dtype=origins.dtype, device=origins.device)    # [B, 3]
    hi = torch.tensor(scene.box_maxs, dtype=origins.dtype, device=origins.device)    # [B, 3]
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)     # [N, 3]
    t0 = (lo[None] - origins[:, None, :]) / safe[:, None, :]                       # [N, B, 3]
    t1 = (hi[None] - origins[:, None, :]) / safe[:, None, :]
    t_enter_axes = torch.minimum(t0, t1)
    t_enter, axis = t_enter_axes.max(dim=-1)                                       # [N, B]
    t_exit = torch.maximum(t0, t1).min(dim=-1).values
    hit = (t_enter <= t_exit) & (t_enter > 1e-6)
    t = torch.where(hit, t_enter, torch.full_like(t_enter, float("inf")))
    normals = torch.zeros(*t.shape, 3, dtype=origins.dtype, device=origins.device)
    sign = -torch.sign(safe[:, None, :].expand_as(t0).gather(-1, axis[..., None]))  # faces the ray
    normals.scatter_(-1, axis[..., None], sign)
    colours = torch.tensor(scene.box_colors, dtype=origins.dtype, device=origins.device)
    return t, normals, colours


def cast_rays(scene: Scene, rays: RayBundle) -> dict[str, Tensor]:
    """Exact first-hit render of ``rays``: ``rgb`` [N, 3], ``depth`` [N] (ray parameter, inf = miss), ``hit`` [N]."""
    origins, dirs = rays.origins, rays.directions
    t_s, n_s, c_s = _sphere_hits(scene, origins, dirs)
    t_b, n_b, c_b = _box_hits(scene, origins, dirs)
    t_all = torch.cat([t_s, t_b], dim=1)                                   # [N, S + B]
    normals = torch.cat([n_s, n_b], dim=1)                                 # [N, S + B, 3]
    colours = torch.cat([c_s, c_b], dim=0)                                 # [S + B, 3]
    depth, index = t_all.min(dim=1)                                        # [N]
    hit = torch.isfinite(depth)
    normal = normals.gather(1, index[:, None, None].expand(-1, 1, 3))[:, 0]   # [N, 3]
    light = torch.tensor(scene.light_dir, dtype=origins.dtype, device=origins.device)
    light = light / light.norm()
    shade = scene.ambient + (1.0 - scene.ambient) * (normal @ light).clamp_min(0.0)   # [N]
    albedo = colours[index]                                                # [N, 3]
    if scene.checker_cells > 0:
        point = origins + dirs * depth.nan_to_num(posinf=0.0)[:, None]
        cells = torch.floor(point * scene.checker_cells + 1e-4).sum(-1).remainder(2.0)   # [N] 0 or 1
        is_box = index >= len(scene.sphere_radii)
        albedo = albedo * torch.where(is_box & (cells > 0.5), 0.6, 1.0)[:, None]
    background = torch.tensor(scene.background, dtype=origins.dtype, device=origins.device)
    rgb = torch.where(hit[:, None], (albedo * shade[:, None]).clamp(0.0, 1.0), background)
    return {"rgb": rgb, "depth": depth, "hit": hit}


def render_views(scene: Scene, K: Intrinsics, poses: Tensor, near: float = 0.0, far: float = 1e3) -> Tensor:
    """Ground-truth images ``[V, H, W, 3]`` for camera-to-world ``poses`` ``[V, 4, 4]`` (OpenGL)."""
    images = [cast_rays(scene, image_rays(K, pose, near, far))["rgb"].reshape(K.height, K.width, 3)
              for pose in poses]
    return torch.stack(images)
