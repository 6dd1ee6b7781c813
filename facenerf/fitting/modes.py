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

from facenerf.core.cameras import Intrinsics, mofanerf_pose
from facenerf.errors import FaceNerfError
from facenerf.fitting.figures import grid, hstack
from facenerf.fitting.options import float_list, mesh_box
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import CodeStatistics
from facenerf.fitting.views import FaceState, camera_angles, intrinsics_at, render_face, views_around_fit
from facenerf.fitting.workflow import LoadedModel, expression_index, expression_name, fit_dir, fit_file
from facenerf.io import write_image, write_video

DEFAULT_FOCAL_AT_512 = 1200.0
DEFAULT_RADIUS = 16.0


def load_fit(path: Path, loaded: LoadedModel) -> FitResult:
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


def _render(loaded: LoadedModel, face: FaceState, c2w=None, K=None, args=None, with_gain=True) -> torch.Tensor:
    return render_face(loaded.model, face, c2w, K, loaded.render_settings, args.amp if args else "none", with_gain)


def _frames(loaded: LoadedModel, faces_and_poses, K: Intrinsics, args, desc: str) -> list:
    return [_render(loaded, face, pose, K, args).numpy()
            for face, pose in tqdm(faces_and_poses, desc=desc, unit="frame", disable=not args.progress)]


def run_rendering(args, loaded: LoadedModel) -> list[Path]:
    """Stills at ``--yaws`` around the fitted camera's pitch/radius and an orbit MP4."""
    fit = load_fit(fit_file(args), loaded)
    face = FaceState.from_fit(fit)
    out = fit_dir(args) / "render"
    K = intrinsics_at(fit.intrinsics, args.size)
    yaws = float_list(args.yaws, "yaws")
    written = []
    for yaw, pose in zip(yaws, views_around_fit(fit.c2w(), list(yaws))):
        written.append(write_image(out / f"fitRes_{yaw:g}.png", _render(loaded, face, pose, K, args)))
    orbit = orbit_poses_around_fit(fit.c2w(), args.orbit_range, args.frames)
    frames = _frames(loaded, [(face, pose) for pose in orbit], K, args, "orbit")
    written.append(write_video(out / "orbit.mp4", frames, args.fps))
    return written


def orbit_poses_around_fit(c2w, yaw_range: float, frames: int) -> list:
    """A looping sweep ``yaw = yaw_range * sin(2 pi k / frames)`` at the fitted pitch and radius.

    ``yaw_range >= 180`` turns all the way round instead (``-180 .. 180``).
    """
    pitch, _, radius = camera_angles(c2w)
    if yaw_range >= 180.0:
        return [mofanerf_pose(pitch, -180.0 + 360.0 * k / frames, radius) for k in range(frames)]
    return [mofanerf_pose(pitch, yaw_range * math.sin(2.0 * math.pi * k / frames), radius) for k in range(frames)]


def _with_expression(face: FaceState, loaded: LoadedModel, index: int) -> FaceState:
    code = loaded.model.expression_codes[index].detach().float().cpu()
    return replace(face, expression=code)


def run_expression(args, loaded: LoadedModel) -> list[Path]:
    """The fit with a learned expression (PNG), or an MP4 through ``--expressions``."""
    fit = load_fit(fit_file(args), loaded)
    face = FaceState.from_fit(fit)
    out = fit_dir(args) / "render"
    K = intrinsics_at(fit.intrinsics, args.size)
    n = loaded.model.cfg.n_expressions
    if not args.expressions:
        index = expression_index(args.expression, n)
        image = _render(loaded, _with_expression(face, loaded, index), K=K, args=args)
        return [write_image(out / f"expr_{expression_name(index)}.png", image)]
    chain = [expression_index(e, n) for e in args.expressions.split(",") if e.strip()]
    if len(chain) < 2:
        raise FaceNerfError("--expressions needs at least two expressions, e.g. neutral,smile,neutral")
    states = [_with_expression(face, loaded, i) for i in chain]
    sequence = []
    for a, b in zip(states, states[1:]):
        sequence += [(a.lerp(b, k / args.frames), None) for k in range(args.frames)]
    sequence.append((states[-1], None))
    sequence = [(replace(s, c2w=face.c2w), pose) for s, pose in sequence]  # keep the fitted camera exactly
    frames = _frames(loaded, sequence, K, args, "expressions")
    name = "_".join(expression_name(i) for i in chain)
    return [write_video(out / f"expr_{name}.mp4", frames, args.fps)]


def run_swap(args, loaded: LoadedModel, stats: CodeStatistics) -> list[Path]:
    """Replace shape and/or texture with another fit's or a random draw; writes fit | swapped."""
    fit = load_fit(fit_file(args), loaded)
    face = FaceState.from_fit(fit)
    if args.swapFile:
        donor = load_fit(Path(args.swapFile), loaded)
        shape, texture, source = donor.shape.float(), donor.texture.float(), Path(args.swapFile).parent.name
    else:
        generator = torch.Generator().manual_seed(args.seed)
        shapes, textures = stats.sample(1, generator, args.temperature)
        shape, texture, source = shapes[0], textures[0], f"random{args.seed}"
    swapped = replace(face, shape=shape if args.swap in ("shape", "both") else face.shape,
                      texture=texture if args.swap in ("texture", "both") else face.texture)
    K = intrinsics_at(fit.intrinsics, args.size)
    pair = hstack([_render(loaded, face, K=K, args=args), _render(loaded, swapped, K=K, args=args)])
    return [write_image(fit_dir(args) / "render" / f"swap_{args.swap}_{source}.png", pair)]


def random_out_dir(args) -> Path:
    """``--fit_out``, else ``basedir/expname/random``."""
    return Path(args.fit_out) if args.fit_out else Path(args.basedir) / args.expname / "random"


def run_random(args, loaded: LoadedModel, stats: CodeStatistics) -> list[Path]:
    """``--n_random`` faces from the code statistics, frontal, expression ``--expression``."""
    generator = torch.Generator().manual_seed(args.seed)
    shapes, textures = stats.sample(args.n_random, generator, args.temperature)
    index = expression_index(args.expression, loaded.model.cfg.n_expressions)
    eps = loaded.model.expression_codes[index].detach().float().cpu()
    f = DEFAULT_FOCAL_AT_512 * args.size / 512.0
    K = Intrinsics(args.size, args.size, f, f, args.size / 2.0, args.size / 2.0)
    pose = mofanerf_pose(0.0, 0.0, DEFAULT_RADIUS)
    out = random_out_dir(args)
    written, images = [], []
    for i in tqdm(range(args.n_random), desc="random faces", disable=not args.progress):
        face = FaceState(shapes[i], eps, textures[i], torch.ones(1), pose, K, args.near, args.far)
        image = _render(loaded, face, args=args, with_gain=False)
        images.append(image)
        written.append(write_image(out / f"random_{i:03d}.png", image))
    columns = min(4, len(images))
    written.append(write_image(out / "grid.png", grid(images, columns)))
    return written


def run_morph(args, loaded: LoadedModel) -> list[Path]:
    """MP4 blending codes, gain and camera from this fit into ``--morphFile``."""
    a = FaceState.from_fit(load_fit(fit_file(args), loaded))
    b = FaceState.from_fit(load_fit(Path(args.morphFile), loaded))
    K = intrinsics_at(a.K, args.size)
    sequence = [(a.lerp(b, k / max(args.frames - 1, 1)), None) for k in range(args.frames)]
    frames = _frames(loaded, sequence, K, args, "morph")
    name_a, name_b = fit_dir(args).name, Path(args.morphFile).parent.name
    return [write_video(fit_dir(args) / "render" / f"morph_{name_a}_to_{name_b}.mp4", frames, args.fps)]


def run_mesh(args, loaded: LoadedModel) -> list[Path]:
    """Marching tetrahedra on the fitted density -> vertex-coloured OBJ (and a preview PNG)."""
    from facenerf.fitting.meshing import extract_face_mesh

    fit = load_fit(fit_file(args), loaded)
    lo, hi = mesh_box(args.mesh_bbox)
    scale = 50.0 if args.mesh_units == "mm" else 1.0
    out = fit_dir(args) / "mesh"
    return extract_face_mesh(loaded.model, FaceState.from_fit(fit), lo, hi, args.mesh_resolution,
                             args.mesh_level, out / f"{fit_dir(args).name}.obj", scale, loaded.render_settings,
                             args.chunk, args.mesh_smooth)
