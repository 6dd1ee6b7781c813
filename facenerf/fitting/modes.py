"""The ``--renderType`` modes that use a finished fit: novel views, expression edits, code swaps,
random generation, morph videos and mesh export. Each ``run_<mode>`` returns the paths it wrote.

Renders apply the fit's colour gain (so they match the photo's colour balance); random faces,
which have no photo, are rendered with gain 1. Videos are H.264 MP4 (:func:`facenerf.io.write_video`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from facenerf.core.cameras import Intrinsics
from facenerf.errors import FaceNerfError
from facenerf.fitting.config import FitCommand
from facenerf.fitting.figures import grid, hstack
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import CodeStatistics
from facenerf.fitting.views import (FaceState, camera_angles, intrinsics_at, novel_views, original_view,
                                    render_face)
from facenerf.io import write_image, write_video
from facenerf.models.mofanerf.checkpoints import LoadedRun
from facenerf.models.mofanerf.expressions import expression_index, expression_name
from facenerf.preprocess.training.rig import BASE_FOCAL, BASE_RESOLUTION, RADIUS, mofanerf_pose


def load_fit(path: Path, loaded: LoadedRun) -> FitResult:
    """Read a fit file and check its code sizes against the model."""
    fit = FitResult.load(path)
    cfg = loaded.model.cfg
    sizes = (fit.shape.numel(), fit.expression.numel(), fit.texture.numel())
    if sizes != (cfg.shape_dim, cfg.exp_dim, cfg.texture_dim):
        raise FaceNerfError(f"{path} holds codes of sizes {sizes} (shape, expression, texture) but the model uses "
                            f"{(cfg.shape_dim, cfg.exp_dim, cfg.texture_dim)}; use the checkpoint it was fitted with")
    if not fit.complete:
        print(f"note: {path} stopped at iteration {fit.iteration} of {fit.iterations}; rendering it as it is")
    return fit


def _render(loaded: LoadedRun, face: FaceState, cmd: FitCommand, c2w=None, K=None, with_gain=True) -> torch.Tensor:
    return render_face(loaded.model, face, c2w, K, loaded.render_settings, cmd.runtime.amp, with_gain)


def _frames(loaded: LoadedRun, faces_and_poses, K: Intrinsics, cmd: FitCommand, desc: str) -> list:
    return [_render(loaded, face, cmd, pose, K).numpy()
            for face, pose in tqdm(faces_and_poses, desc=desc, unit="frame", disable=None if cmd.runtime.progress else True)]


def run_rendering(cmd: FitCommand, loaded: LoadedRun) -> list[Path]:
    """Stills ``fitRes_<yaw>.png`` at ``--yaws`` and an orbit MP4, in ``--view_convention``'s cameras."""
    fit = load_fit(cmd.fit_file(), loaded)
    face = FaceState.from_fit(fit)
    out = cmd.fit_dir() / "render"
    modes = cmd.modes
    K = intrinsics_at(fit.intrinsics, modes.size)
    written = []
    for yaw, pose in zip(modes.yaws, novel_views(fit.c2w(), list(modes.yaws), modes.view_convention)):
        written.append(write_image(out / f"fitRes_{yaw:g}.png", _render(loaded, face, cmd, pose, K)))
    if modes.view_convention == "original":
        orbit = [original_view(yaw) for yaw in orbit_yaws(modes.orbit_range, modes.frames)]
    else:
        orbit = orbit_poses_around_fit(fit.c2w(), modes.orbit_range, modes.frames)
    frames = _frames(loaded, [(face, pose) for pose in orbit], K, cmd, "orbit")
    written.append(write_video(out / "orbit.mp4", frames, modes.fps))
    return written


def orbit_yaws(yaw_range: float, frames: int) -> list[float]:
    """A looping sweep ``yaw = yaw_range * sin(2 pi k / frames)``; ``yaw_range >= 180`` turns all the
    way round instead (``-180 .. 180``)."""
    if yaw_range >= 180.0:
        return [-180.0 + 360.0 * k / frames for k in range(frames)]
    return [yaw_range * math.sin(2.0 * math.pi * k / frames) for k in range(frames)]


def orbit_poses_around_fit(c2w, yaw_range: float, frames: int) -> list:
    """:func:`orbit_yaws` at the fitted pitch and radius."""
    pitch, _, radius = camera_angles(c2w)
    return [mofanerf_pose(pitch, yaw, radius) for yaw in orbit_yaws(yaw_range, frames)]


# the original's rigging expressions of rendering_modulation (indices into the 20 learned codes)
MODULATION_EXPRESSIONS = (9, 14, 2, 16, 17)   # dimpler, lip_roll, mouth_stretch, cheek_blowing, eye_closed
MODULATION_EDITS = 3


def run_modulation(cmd: FitCommand, loaded: LoadedRun, stats: CodeStatistics) -> list[Path]:
    """The original's ``rendering_modulation``: frontal renders (pitch 0, radius 16) of the fit rigged with
    learned expressions (``rigging_<name>.png``) and with its shape or texture replaced
    (``chg_shape_<k>.png``, ``chg_tex_<k>.png``: draws from the code statistics, seeds ``--seed + k``;
    the original used three presets of its ``predef_par.npy``)."""
    fit = load_fit(cmd.fit_file(), loaded)
    face = FaceState.from_fit(fit)
    out = cmd.fit_dir() / "render"
    K = intrinsics_at(fit.intrinsics, cmd.modes.size)
    pose = original_view(0.0)
    written = []
    for index in MODULATION_EXPRESSIONS:
        if index < loaded.model.cfg.n_expressions:
            rigged = _with_expression(face, loaded, index)
            written.append(write_image(out / f"rigging_{expression_name(index)}.png",
                                       _render(loaded, rigged, cmd, pose, K)))
    for k in range(MODULATION_EDITS):
        shapes, textures = stats.sample(1, torch.Generator().manual_seed(cmd.runtime.seed + k), cmd.modes.temperature)
        for name, edited in (("shape", replace(face, shape=shapes[0])), ("tex", replace(face, texture=textures[0]))):
            written.append(write_image(out / f"chg_{name}_{k}.png", _render(loaded, edited, cmd, pose, K)))
    return written


def _with_expression(face: FaceState, loaded: LoadedRun, index: int) -> FaceState:
    code = loaded.model.expression_codes[index].detach().float().cpu()
    return replace(face, expression=code)


def run_expression(cmd: FitCommand, loaded: LoadedRun) -> list[Path]:
    """The fit with a learned expression (PNG), or an MP4 through ``--expressions``."""
    fit = load_fit(cmd.fit_file(), loaded)
    face = FaceState.from_fit(fit)
    out = cmd.fit_dir() / "render"
    modes = cmd.modes
    K = intrinsics_at(fit.intrinsics, modes.size)
    n = loaded.model.cfg.n_expressions
    if not modes.expressions:
        index = expression_index(modes.expression, n)
        image = _render(loaded, _with_expression(face, loaded, index), cmd, K=K)
        return [write_image(out / f"expr_{expression_name(index)}.png", image)]
    chain = [expression_index(e, n) for e in modes.expressions.split(",") if e.strip()]
    if len(chain) < 2:
        raise FaceNerfError("--expressions needs at least two expressions, e.g. neutral,smile,neutral")
    states = [_with_expression(face, loaded, i) for i in chain]
    sequence = []
    for a, b in zip(states, states[1:]):
        sequence += [(a.lerp(b, k / modes.frames), None) for k in range(modes.frames)]
    sequence.append((states[-1], None))
    sequence = [(replace(s, c2w=face.c2w), pose) for s, pose in sequence]  # keep the fitted camera exactly
    frames = _frames(loaded, sequence, K, cmd, "expressions")
    name = "_".join(expression_name(i) for i in chain)
    return [write_video(out / f"expr_{name}.mp4", frames, modes.fps)]


def run_swap(cmd: FitCommand, loaded: LoadedRun, stats: CodeStatistics) -> list[Path]:
    """Replace shape and/or texture with another fit's or a random draw; writes fit | swapped."""
    fit = load_fit(cmd.fit_file(), loaded)
    face = FaceState.from_fit(fit)
    modes, seed = cmd.modes, cmd.runtime.seed
    if modes.swapFile:
        donor = load_fit(Path(modes.swapFile), loaded)
        shape, texture, source = donor.shape.float(), donor.texture.float(), Path(modes.swapFile).parent.name
    else:
        generator = torch.Generator().manual_seed(seed)
        shapes, textures = stats.sample(1, generator, modes.temperature)
        shape, texture, source = shapes[0], textures[0], f"random{seed}"
    swapped = replace(face, shape=shape if modes.swap in ("shape", "both") else face.shape,
                      texture=texture if modes.swap in ("texture", "both") else face.texture)
    K = intrinsics_at(fit.intrinsics, modes.size)
    pair = hstack([_render(loaded, face, cmd, K=K), _render(loaded, swapped, cmd, K=K)])
    return [write_image(cmd.fit_dir() / "render" / f"swap_{modes.swap}_{source}.png", pair)]


def random_out_dir(cmd: FitCommand) -> Path:
    """``--fit_out``, else ``basedir/expname/random``."""
    where = cmd.source.location
    return Path(cmd.output.fit_out) if cmd.output.fit_out else Path(where.basedir) / where.expname / "random"


def run_random(cmd: FitCommand, loaded: LoadedRun, stats: CodeStatistics) -> list[Path]:
    """``--n_random`` faces from the code statistics, frontal (the rig's camera), expression ``--expression``."""
    modes, render = cmd.modes, loaded.run.render
    generator = torch.Generator().manual_seed(cmd.runtime.seed)
    shapes, textures = stats.sample(modes.n_random, generator, modes.temperature)
    index = expression_index(modes.expression, loaded.model.cfg.n_expressions)
    eps = loaded.model.expression_codes[index].detach().float().cpu()
    f = BASE_FOCAL * modes.size / BASE_RESOLUTION
    K = Intrinsics(modes.size, modes.size, f, f, modes.size / 2.0, modes.size / 2.0)
    pose = mofanerf_pose(0.0, 0.0, RADIUS)
    out = random_out_dir(cmd)
    written, images = [], []
    for i in tqdm(range(modes.n_random), desc="random faces", disable=None if cmd.runtime.progress else True):
        face = FaceState(shapes[i], eps, textures[i], torch.ones(1), pose, K, render.near, render.far)
        image = _render(loaded, face, cmd, with_gain=False)
        images.append(image)
        written.append(write_image(out / f"random_{i:03d}.png", image))
    columns = min(4, len(images))
    written.append(write_image(out / "grid.png", grid(images, columns)))
    return written


def run_morph(cmd: FitCommand, loaded: LoadedRun) -> list[Path]:
    """MP4 blending codes, gain and camera from this fit into ``--morphFile``."""
    modes = cmd.modes
    a = FaceState.from_fit(load_fit(cmd.fit_file(), loaded))
    b = FaceState.from_fit(load_fit(Path(modes.morphFile), loaded))
    K = intrinsics_at(a.K, modes.size)
    sequence = [(a.lerp(b, k / max(modes.frames - 1, 1)), None) for k in range(modes.frames)]
    frames = _frames(loaded, sequence, K, cmd, "morph")
    name_a, name_b = cmd.fit_dir().name, Path(modes.morphFile).parent.name
    return [write_video(cmd.fit_dir() / "render" / f"morph_{name_a}_to_{name_b}.mp4", frames, modes.fps)]


def run_mesh(cmd: FitCommand, loaded: LoadedRun) -> list[Path]:
    """Marching tetrahedra on the fitted density -> vertex-coloured OBJ (and a preview PNG)."""
    from facenerf.fitting.meshing import extract_face_mesh

    from facenerf.fitting.meshing import head_box

    modes = cmd.modes
    fit = load_fit(cmd.fit_file(), loaded)
    lo, hi = (modes.mesh_bbox[:3], modes.mesh_bbox[3:]) if modes.mesh_bbox else head_box()
    scale = 50.0 if modes.mesh_units == "mm" else 1.0
    out = cmd.fit_dir() / "mesh"
    return extract_face_mesh(loaded.model, FaceState.from_fit(fit), lo, hi, modes.mesh_resolution,
                             modes.mesh_level, out / f"{cmd.fit_dir().name}.obj", scale, loaded.render_settings,
                             modes.mesh_smooth)
