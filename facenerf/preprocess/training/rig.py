"""The MoFaNeRF multi-view camera rig, view subsets and the deterministic train/val/test split.

Rig (mofanerf.md section 5): meshes in the FaceScape TU frame scaled by 1/50 (1 unit = 50 mm);
cameras on a sphere of radius 16 looking at the origin; pitches -30..45 in steps of 15 (positive
= camera above the head) x 20 yaws ``-90 + 9 * i`` degrees (``i = 10`` is frontal); 512 x 512
images with focal length 1200 px and the principal point at the centre, both scaled with the
resolution. Views are named ``{pitch}_{yawIndex}`` like the original files.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from facenerf.errors import FaceNerfError

PITCHES = (-30, -15, 0, 15, 30, 45)
N_YAWS = 20
YAW_START_DEG, YAW_STEP_DEG = -90.0, 9.0
FRONTAL_YAW_INDEX = 10
RADIUS = 16.0
MESH_SCALE = 1.0 / 50.0
BASE_RESOLUTION, BASE_FOCAL = 512, 1200.0
NEAR, FAR = 8.0, 26.0
FULL_RIG_TEST_VIEWS = 20
_VIEW_NAME = re.compile(r"^(-?\d+)_(\d+)$")


@dataclass(frozen=True, order=True)
class View:
    """One rig camera: ``pitch`` in degrees and ``yaw_index`` in 0..19."""

    pitch: int
    yaw_index: int

    @property
    def yaw_deg(self) -> float:
        return YAW_START_DEG + YAW_STEP_DEG * self.yaw_index

    @property
    def name(self) -> str:
        """File stem ``{pitch}_{yawIndex}``, e.g. ``0_10`` for the frontal view."""
        return f"{self.pitch}_{self.yaw_index}"

    def c2w(self) -> np.ndarray:
        """Camera-to-world pose [4, 4] (OpenGL convention, scene units)."""
        return mofanerf_pose(float(self.pitch), self.yaw_deg).numpy().astype(np.float64)


def mofanerf_pose(pitch_deg: float, yaw_deg: float, radius: float = RADIUS):
    """Camera-to-world pose ``[4, 4]`` float32 tensor (OpenGL) of a rig camera: on the sphere of
    ``radius`` looking at the head, positive pitch above it (:func:`facenerf.core.cameras.orbit_pose`)."""
    from facenerf.core.cameras import orbit_pose

    return orbit_pose(pitch_deg, yaw_deg, radius)


def all_views() -> list[View]:
    """The full rig: 6 pitches x 20 yaws = 120 views, pitch-major."""
    return [View(p, i) for p in PITCHES for i in range(N_YAWS)]


def parse_view_name(name: str) -> View:
    """``"-30_15"`` -> ``View(-30, 15)``; FaceNerfError for names outside the rig."""
    match = _VIEW_NAME.match(name)
    if not match or int(match.group(1)) not in PITCHES or not 0 <= int(match.group(2)) < N_YAWS:
        raise FaceNerfError(f"'{name}' is not a rig view: expected '{{pitch}}_{{yawIndex}}' with pitch in "
                            f"{list(PITCHES)} and yawIndex in 0..{N_YAWS - 1}")
    return View(int(match.group(1)), int(match.group(2)))


def _centre(view: View) -> np.ndarray:
    return view.c2w()[:3, 3]


def spread_subset(views: list[View], count: int) -> list[View]:
    """``count`` views spread over the sphere (farthest-point order from the frontal view).

    Deterministic; the result is sorted in rig order.
    """
    if count >= len(views):
        return sorted(views)
    centres = np.stack([_centre(v) for v in views])
    start = min(range(len(views)), key=lambda i: (abs(views[i].pitch), abs(views[i].yaw_index - FRONTAL_YAW_INDEX)))
    chosen = [start]
    dist = np.linalg.norm(centres - centres[start], axis=1)
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(centres - centres[nxt], axis=1))
    return sorted(views[i] for i in chosen)


def select_views(count: int | None = None, pitches: list[int] | None = None,
                 yaw_indices: list[int] | None = None) -> list[View]:
    """Rig views filtered by ``pitches`` / ``yaw_indices``, then thinned to ``count`` spread views."""
    bad_p = [p for p in (pitches or []) if p not in PITCHES]
    bad_y = [y for y in (yaw_indices or []) if not 0 <= y < N_YAWS]
    if bad_p or bad_y:
        raise FaceNerfError(f"views outside the rig: pitches {bad_p or '-'}, yaw indices {bad_y or '-'}; "
                            f"pitches must be in {list(PITCHES)} and yaw indices in 0..{N_YAWS - 1}")
    views = [v for v in all_views() if (not pitches or v.pitch in pitches)
             and (not yaw_indices or v.yaw_index in yaw_indices)]
    if count is not None:
        if count < 1:
            raise FaceNerfError(f"--views must be at least 1, got {count}")
        if count > len(views):
            raise FaceNerfError(f"--views {count} asks for more views than the {len(views)} the rig "
                                f"{'has' if not (pitches or yaw_indices) else 'keeps with --pitches/--yaws'}; "
                                f"use --views {len(views)} or fewer")
        views = spread_subset(views, count)
    return views


def rig_intrinsics(resolution: int):
    """:class:`facenerf.core.cameras.Intrinsics` of the rig at ``resolution`` x ``resolution``."""
    from facenerf.core.cameras import Intrinsics

    factor = resolution / BASE_RESOLUTION
    return Intrinsics(resolution, resolution, BASE_FOCAL * factor, BASE_FOCAL * factor,
                      resolution / 2.0, resolution / 2.0)


def camera_angle_x(resolution: int) -> float:
    """Horizontal field of view in radians (``2 atan(256 / 1200)`` at every resolution)."""
    K = rig_intrinsics(resolution)
    return 2.0 * math.atan(0.5 * K.width / K.fx)


def default_test_count(n_views: int) -> int:
    """Test views per expression: 20 of 120, scaled to ``n_views`` (at least 1 once 2+ views exist)."""
    if n_views < 2:
        return 0
    return min(max(1, round(FULL_RIG_TEST_VIEWS * n_views / len(PITCHES) / N_YAWS)), n_views - 1)


def split_views(names: list[str], seed: int, identity: str, expression: int,
                n_test: int | None = None, n_val: int = 0) -> dict[str, str]:
    """Assign each view name to ``train``, ``val`` or ``test``; deterministic per arguments.

    ``n_test`` test views (default :func:`default_test_count`) are drawn at random with a
    generator seeded by ``(seed, identity, expression)``. With ``n_val = 0`` there is no separate
    validation set and ``val`` means the test views (the original MoFaNeRF behaviour); otherwise
    ``n_val`` further views are drawn, disjoint from test.
    """
    ordered = sorted(names, key=lambda n: parse_view_name(n))
    count = default_test_count(len(ordered)) if n_test is None else int(n_test)
    if count + n_val >= len(ordered) and len(ordered) > 0:
        raise FaceNerfError(f"{count} test + {n_val} val views leave no training views out of {len(ordered)}; "
                            "render more views or lower --test_views/--val_views")
    rng = np.random.default_rng([int(seed), zlib.crc32(str(identity).encode()), int(expression)])
    order = rng.permutation(len(ordered))
    split = {name: "train" for name in ordered}
    for i in order[:count]:
        split[ordered[i]] = "test"
    for i in order[count:count + n_val]:
        split[ordered[i]] = "val"
    return split
