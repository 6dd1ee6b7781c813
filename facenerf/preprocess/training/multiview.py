"""Batch multi-view rendering of ``models_out`` into ``multiViewImages`` (the body of ``render.py``).

Input: the aligned meshes ``{models}/{id}/{k}_{name}.obj`` written by ``align_clip.py``, or
FaceScape's TU models as released, ``facescape_trainset/{id}/models_reg/{k}_{name}.obj`` (already in
the TU frame; their landmarks come from ``landmark_indices``).

Output layout (documented in ``data/README.md``)::

    {out}/{id}/{name}/{pitch}_{yawIndex}.png   RGB, black background, unlit texture colour
    {out}/{id}/{name}/transforms.json          cameras of that expression (+ landmarks_2d)
    {out}/transforms_{train,val,test,all}_{id}.json   MoFaNeRF per-identity camera files
    {out}/render_report.json                   what was rendered, skipped and what failed

Work is split into one job per (identity, expression). Jobs run in parallel worker processes
(each owns its own offscreen renderer; workers die with the parent, see
:mod:`facenerf.processes`), and a job that fails (missing texture, corrupt OBJ, ...) is
reported without stopping the others. Every file is written atomically. A re-run skips
finished views: a view counts as finished when its PNG has the byte size recorded in the
expression's ``transforms.json`` or, without a record (a job that was interrupted), when the
PNG decodes completely at the requested size. An output that cannot be written (full disk,
read-only folder) stops the batch; the report of what was done is written first (as on Ctrl-C).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facenerf.config import option
from facenerf.data.facescape import expression_from_stem, identity_folders, pixel_center_of
from facenerf.data.synthetic import EXPRESSIONS
from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import remove_stale_temporaries, write_image, write_json
from facenerf.preprocess.training import rig
from facenerf.preprocess.training.render import (
    JobResult, RenderJob, ViewRenderer, load_render_mesh, project_landmarks,
)

CAMERA_FILE = "transforms.json"
REPORT_FILE = "render_report.json"
MOFANERF_ROTATION = 0.666   # unused field kept for compatibility with MoFaNeRF's loader


@dataclass(frozen=True)
class RenderOptions:
    """Settings shared by every job of one run."""

    resolution: int = option(rig.BASE_RESOLUTION, f"image size; focal {rig.BASE_FOCAL:g} px at "
                                                  f"{rig.BASE_RESOLUTION} scales with it")
    views: tuple[rig.View, ...] = tuple(rig.all_views())
    seed: int = option(0, "seed of the random test/val split")
    n_test: int | None = option(None, "test views per expression (default: 20 of 120, scaled)", key="test_views")
    n_val: int = option(0, "separate val views per expression (0: val = test, as MoFaNeRF)", key="val_views")
    double_sided: bool = option(False, "draw back faces too (default: culled, as the original render.py)")
    pixel_center: float = option(0.5, "pixel (i, j) shows the ray through (i + c, j + c): 0.5 as the original "
                                      "render.py, 0 moves the principal point half a pixel; recorded in the camera "
                                      "files, training follows it", choices=(0.0, 0.5))


@dataclass
class BatchReport:
    results: list[JobResult] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)   # {"path", "error"} found before rendering
    transforms: list[str] = field(default_factory=list)
    stopped: str | None = None     # why the batch ended early (Ctrl-C, full disk, ...), None if it finished


# ----------------------------------------------------------------------------------- one job

def _decodes(png: Path, resolution: int) -> bool:
    """True when ``png`` decodes completely (not just its header) at ``resolution`` squared."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(png) as handle:
            if handle.size != (resolution, resolution):
                return False
            handle.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False
    return True


def _finished_views(job: RenderJob, opts: RenderOptions) -> set[str]:
    """Views of ``job`` whose PNG is complete at the requested resolution (see the module docstring)."""
    recorded: dict = {}
    camera_file = job.out_dir / CAMERA_FILE
    if camera_file.is_file():
        try:
            stored = json.loads(camera_file.read_text())
            if int(stored.get("w", -1)) != opts.resolution or pixel_center_of(stored) != opts.pixel_center \
                    or bool(stored.get("double_sided", True)) != opts.double_sided:
                return set()   # rendered with other settings: render again
            recorded = dict(stored.get("files") or {})
        except (OSError, ValueError, TypeError):
            recorded = {}
    done = set()
    for view in opts.views:
        png = job.out_dir / f"{view.name}.png"
        try:
            size = png.stat().st_size
        except OSError:
            continue
        if (size == recorded[view.name]) if view.name in recorded else _decodes(png, opts.resolution):
            done.add(view.name)
    return done


def _split_key(opts: RenderOptions) -> list:
    return [opts.seed, opts.n_test, opts.n_val]


def _cached_frames(job: RenderJob, opts: RenderOptions, done: set[str]) -> list[dict] | None:
    """The stored frames when every requested view is finished with the same split settings."""
    camera_file = job.out_dir / CAMERA_FILE
    if len(done) != len(opts.views) or not camera_file.is_file():
        return None
    try:
        stored = json.loads(camera_file.read_text())
    except ValueError:
        return None
    if stored.get("split_key") != _split_key(opts) or \
            sorted(f.get("view") for f in stored.get("frames", [])) != sorted(done):
        return None
    if job.landmarks_mm is not None and any("landmarks_2d" not in f for f in stored["frames"]):
        return None
    return stored["frames"]


def _frame(job: RenderJob, view: rig.View, split: str, depth: np.ndarray, opts: RenderOptions) -> dict:
    frame = {
        "file_path": f"/{job.identity}/{EXPRESSIONS[job.expression]}/{view.name}",
        "rotation": MOFANERF_ROTATION, "expression": job.expression,
        "transform_matrix": np.round(view.c2w(), 8).tolist(),
        "view": view.name, "pitch": view.pitch, "yaw": view.yaw_deg, "yaw_index": view.yaw_index,
        "split": split,
    }
    if job.landmarks_mm is not None:
        xy, visible = project_landmarks(job.landmarks_mm, view, opts.resolution, depth, opts.pixel_center)
        frame["landmarks_2d"] = np.round(xy, 3).tolist()
        frame["landmarks_visible"] = visible.astype(int).tolist()
    return frame


def camera_header(resolution: int, pixel_center: float = 0.5) -> dict:
    """Intrinsics and scene constants shared by every camera file, with the pixel convention."""
    K = rig.rig_intrinsics(resolution)
    c = float(pixel_center)
    return {"camera_angle_x": rig.camera_angle_x(resolution), "fl_x": K.fx, "fl_y": K.fy,
            "cx": K.cx, "cy": K.cy, "w": K.width, "h": K.height, "near": rig.NEAR, "far": rig.FAR,
            "mesh_scale": rig.MESH_SCALE, "convention": "opengl_c2w", "pixel_center": c,
            "pixel_convention": f"pixel (i, j) shows the ray through (x, y) = (i + {c:g}, j + {c:g})"}


def _render_views(renderer: ViewRenderer, job: RenderJob, opts: RenderOptions, done: set[str],
                  check: Callable[[], None]) -> list[dict]:
    """Render the views of ``job`` not in ``done`` (PNG each) and return every view's frame record."""
    mesh = load_render_mesh(job.obj_path)
    names = [v.name for v in opts.views]
    split = rig.split_views(names, opts.seed, job.identity, job.expression, opts.n_test, opts.n_val)
    skip = done if job.landmarks_mm is not None else set()   # depth only: landmark visibility
    views = [v for v in opts.views if v.name not in done or v.name in skip]
    frames = []
    for view, rgb, depth in renderer.render(mesh, views, depth_only=skip):
        check()
        if rgb is not None:
            write_image(job.out_dir / f"{view.name}.png", rgb)
        frames.append(_frame(job, view, split[view.name], depth, opts))
    rendered = {f["view"] for f in frames}
    frames += [_frame(job, v, split[v.name], None, opts) for v in opts.views if v.name not in rendered]
    frames.sort(key=lambda f: rig.parse_view_name(f["view"]))
    return frames


def run_job(renderer: ViewRenderer, job: RenderJob, opts: RenderOptions,
            check: Callable[[], None] = lambda: None) -> JobResult:
    """Render the missing views of one job, write its camera file; errors become ``result.error``.

    ``check()`` runs before each view is written (workers use it to stop when orphaned). An
    :class:`OutputError` (the output cannot be written) is raised, not reported: it stops the batch.
    """
    result = JobResult(job.identity, job.expression, str(job.obj_path))
    try:
        job = _with_indexed_landmarks(job)
        done = _finished_views(job, opts)
        cached = _cached_frames(job, opts, done)
        if cached is not None:
            result.frames, result.skipped = cached, len(cached)
            return result
        result.frames = _render_views(renderer, job, opts, done, check)
        result.skipped = len(done)
        result.rendered = len(opts.views) - len(done)
        files = {v.name: (job.out_dir / f"{v.name}.png").stat().st_size for v in opts.views}
        payload = dict(camera_header(opts.resolution, opts.pixel_center), identity=job.identity,
                       expression=job.expression, expression_name=EXPRESSIONS[job.expression],
                       mesh=str(job.obj_path), double_sided=opts.double_sided, split_key=_split_key(opts),
                       files=files, frames=result.frames)
        write_json(job.out_dir / CAMERA_FILE, payload, indent=None, what="camera file")
    except OutputError:
        raise
    except FaceNerfError as err:
        result.error = str(err)
    except (OSError, ValueError, RuntimeError) as err:
        result.error = f"{err.__class__.__name__}: {err}"
    return result


def mesh_folder(identity_folder: Path) -> Path:
    """Where an identity's meshes are: ``{id}/models_reg`` (FaceScape TU models) or ``{id}`` itself."""
    return identity_folder / "models_reg" if (identity_folder / "models_reg").is_dir() else identity_folder


def _with_indexed_landmarks(job: RenderJob) -> RenderJob:
    """``job`` with landmarks read from its mesh at ``landmark_indices`` (TU vertex order), when it has none."""
    from dataclasses import replace

    from facenerf.data.meshio import read_obj

    if job.landmarks_mm is not None or job.landmark_indices is None:
        return job
    vertices = read_obj(job.obj_path).vertices
    if len(job.landmark_indices) != 68 or job.landmark_indices.max() >= len(vertices):
        raise FaceNerfError(f"landmark_indices point past the {len(vertices)} vertices of {job.obj_path.name}: they "
                            "fit only meshes in TU vertex order; remove them or add a .landmarks.txt beside the OBJ")
    return replace(job, landmarks_mm=vertices[job.landmark_indices])


def discover_jobs(models_out: Path, out_root: Path, ids: list[str] | None = None,
                  expressions: list[int] | None = None, landmarks: np.ndarray | None = None,
                  landmark_indices: np.ndarray | None = None) -> tuple[list[RenderJob], list[dict]]:
    """One job per ``models_out/{id}/{k}_{name}.obj`` (or ``{id}/models_reg/...``); bad names become problems.

    Landmarks come from ``{k}_{name}.landmarks.txt`` beside the OBJ (68 rows ``x y z`` in mm,
    written by align_clip), else from ``landmarks [ids, 20, 68, 3]`` indexed by the integer id,
    else from the mesh's vertices at ``landmark_indices`` (TU models).
    """
    folders = identity_folders(models_out, ids, "aligned meshes: run align_clip.py first or pass --models_out")
    jobs, problems = [], []
    for folder in folders:
        for obj in sorted(mesh_folder(folder).glob("*.obj")):
            stem = obj.name[: -len(".obj")]
            try:
                expression = expression_from_stem(stem)
            except FaceNerfError as err:
                problems.append({"path": str(obj), "error": str(err)})
                continue
            if expressions is not None and expression not in expressions:
                continue
            lm = _job_landmarks(obj, folder.name, expression, landmarks, problems)
            jobs.append(RenderJob(folder.name, expression, obj, out_root / folder.name / EXPRESSIONS[expression], lm,
                                  landmark_indices if lm is None else None))
    return jobs, problems


def _job_landmarks(obj: Path, identity: str, expression: int, landmarks: np.ndarray | None,
                   problems: list[dict]) -> np.ndarray | None:
    side = obj.with_name(obj.name[: -len(".obj")] + ".landmarks.txt")
    if side.is_file():
        try:
            values = np.loadtxt(side, dtype=np.float64).reshape(68, 3)
            if np.isfinite(values).all():
                return values
        except ValueError as err:
            problems.append({"path": str(side), "error": f"unreadable landmarks ({err}); landmarks_2d skipped"})
    if landmarks is not None and identity.isdigit() and int(identity) < landmarks.shape[0]:
        values = landmarks[int(identity), expression]
        if np.isfinite(values).all():
            return values
    return None


# ------------------------------------------------------------------------------- worker pool

_worker_state: dict = {}   # per worker process: its own renderer and options


def _init_worker(platform: str, opts: RenderOptions, parent_pid: int) -> None:
    from facenerf.processes import worker_setup

    worker_setup(parent_pid)
    os.environ["PYOPENGL_PLATFORM"] = platform
    _worker_state["renderer"] = ViewRenderer(opts.resolution, opts.double_sided, opts.pixel_center)
    _worker_state["opts"] = opts
    _worker_state["parent"] = parent_pid


def _worker_run(job: RenderJob) -> JobResult:
    from facenerf.processes import exit_if_orphaned

    def check() -> None:
        exit_if_orphaned(_worker_state["parent"])

    check()
    return run_job(_worker_state["renderer"], job, _worker_state["opts"], check)


def run_jobs(jobs: list[RenderJob], opts: RenderOptions, workers: int, platform: str,
             progress: bool = True, results: list[JobResult] | None = None) -> list[JobResult]:
    """Run ``jobs`` in ``workers`` processes (in this process when ``workers <= 1``).

    Results are appended to ``results`` (a new list by default) as jobs finish, so a caller
    still holds the finished ones when a fault or Ctrl-C ends the batch early.
    """
    from tqdm import tqdm

    results = [] if results is None else results
    bar = tqdm(total=len(jobs) * len(opts.views), desc="rendering views", unit="view", disable=None if progress else True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            from facenerf.processes import StopOnInterrupt

            renderer = ViewRenderer(opts.resolution, opts.double_sided, opts.pixel_center)
            try:   # Ctrl-C stops between views: inside an OpenGL call it would surface as a ctypes error
                with StopOnInterrupt("stopping after the current view (Ctrl-C again to stop at once)") as stop:
                    for job in jobs:
                        results.append(run_job(renderer, job, opts, stop.check))
                        bar.update(len(opts.views))
            finally:
                renderer.close()
        else:
            import multiprocessing as mp

            context = mp.get_context("spawn")
            with context.Pool(min(workers, len(jobs)), initializer=_init_worker,
                              initargs=(platform, opts, os.getpid())) as pool:
                for result in pool.imap_unordered(_worker_run, jobs):
                    results.append(result)
                    bar.update(len(opts.views))
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------------------- batch assembly

def write_identity_transforms(out_root: Path, identity: str, resolution: int,
                              pixel_center: float = 0.5) -> list[Path]:
    """Merge an identity's per-expression camera files into ``transforms_{split}_{id}.json``.

    ``val`` holds the val views, or the test views when none were drawn (MoFaNeRF behaviour).
    """
    frames = []
    for folder in sorted((out_root / identity).iterdir()) if (out_root / identity).is_dir() else []:
        camera_file = folder / CAMERA_FILE
        if camera_file.is_file():
            frames += json.loads(camera_file.read_text())["frames"]
    if not frames:
        return []
    frames.sort(key=lambda f: (f["expression"], rig.parse_view_name(f["view"])))
    by_split = {name: [f for f in frames if f["split"] == name] for name in ("train", "val", "test")}
    if not by_split["val"]:
        by_split["val"] = by_split["test"]
    by_split["all"] = frames
    header = camera_header(resolution, pixel_center)
    paths = []
    for name, chosen in by_split.items():
        path = out_root / f"transforms_{name}_{identity}.json"
        write_json(path, dict(header, identity=identity, split=name, frames=chosen), indent=None,
                   what="camera file")
        paths.append(path)
    return paths


def write_report(out_root: Path, report: BatchReport, opts: RenderOptions) -> Path:
    """``render_report.json``: settings, per-job counts and every error."""
    payload = {
        "resolution": opts.resolution, "views": [v.name for v in opts.views], "seed": opts.seed,
        "jobs": [{k: v for k, v in asdict(r).items() if k != "frames"} for r in report.results],
        "problems": report.problems + [{"path": r.obj_path, "error": r.error} for r in report.results if r.error],
        "transforms": report.transforms, "stopped": report.stopped,
    }
    return write_json(out_root / REPORT_FILE, payload, indent=None, what="report")


def load_landmark_array(path: Path | None) -> np.ndarray | None:
    """``[ids, 20, 68, 3]`` landmark array (mm) or None; FaceNerfError if unreadable or misshapen."""
    if path is None or not Path(path).is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read landmarks {path}: {err}; regenerate it or pass --landmarks ''") from err
    if array.ndim != 4 or array.shape[1:] != (len(EXPRESSIONS), 68, 3):
        raise FaceNerfError(f"landmarks {path} has shape {array.shape}, expected [ids, 20, 68, 3]")
    return array


def render_dataset(models_out: Path, out_root: Path, opts: RenderOptions, workers: int = 1,
                   platform: str = "egl", ids: list[str] | None = None,
                   expressions: list[int] | None = None, landmarks: np.ndarray | None = None,
                   progress: bool = True, landmark_indices: np.ndarray | None = None) -> BatchReport:
    """Render every aligned mesh, write per-identity camera files and the report.

    The GL platform must already be selected (see :mod:`facenerf.preprocess.training.gl`).
    """
    jobs, problems = discover_jobs(models_out, out_root, ids, expressions, landmarks, landmark_indices)
    if not jobs and not problems:
        raise FaceNerfError(f"no meshes '{{id}}/{{k}}_{{name}}.obj' found under {models_out}; check --models_out")
    remove_stale_temporaries(out_root, recursive=True)   # left by a killed run
    report = BatchReport(problems=problems)
    try:
        run_jobs(jobs, opts, workers, platform, progress, report.results)
        for identity in sorted({job.identity for job in jobs}):
            report.transforms += [str(p) for p in write_identity_transforms(out_root, identity, opts.resolution,
                                                                            opts.pixel_center)]
    except (KeyboardInterrupt, FaceNerfError) as err:
        report.stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        _write_report_if_possible(out_root, report, opts)
        raise
    write_report(out_root, report, opts)
    return report


def _write_report_if_possible(out_root: Path, report: BatchReport, opts: RenderOptions) -> None:
    """Write the report of a batch that stopped early; a second failure (full disk) is left unsaid."""
    try:
        write_report(out_root, report, opts)
    except OutputError:
        pass


def print_summary(report: BatchReport, out_root: Path) -> int:
    """Print counts, every failure and where things went; returns 1 if anything failed, else 0."""
    ok = [r for r in report.results if r.error is None]
    rendered = sum(r.rendered for r in ok)
    skipped = sum(r.skipped for r in ok)
    failures = report.problems + [{"path": r.obj_path, "error": r.error} for r in report.results if r.error]
    print(f"rendered {rendered} views, skipped {skipped} finished views, "
          f"{len(ok)} of {len(report.results)} meshes done, {len(failures)} problem(s)")
    for item in failures:
        print(f"  FAILED {item['path']}: {item['error']}")
    print(f"images and cameras in {out_root} ({len(report.transforms)} transforms files); "
          f"report: {out_root / REPORT_FILE}")
    return 1 if failures else 0
