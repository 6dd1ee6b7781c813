"""The typed configuration of ``run_fit.py``: what to fit or render, where, and how.

:class:`FitCommand` holds one run of the command: the ``--renderType`` mode, the input image
(:class:`FitInput`), the fit folder and what is written there (:class:`FitOutput`), the fit's
settings (:class:`~facenerf.fitting.fitter.FitSettings`), the rendering/editing modes'
settings (:class:`ModeSettings`), the trained run to load with the user's explicit overrides
(:class:`~facenerf.models.mofanerf.config.RunSource`) and the run settings. Its options module
is :mod:`facenerf.fitting.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facenerf.config import option, parse_float_list
from facenerf.errors import FaceNerfError
from facenerf.fitting.fitter import FitSettings
from facenerf.fitting.result import FIT_FILENAME
from facenerf.io import VIDEO_FPS
from facenerf.models.mofanerf.config import RunSource
from facenerf.preprocess.training.rig import BASE_FOCAL, BASE_RESOLUTION
from facenerf.runtime import RunSettings

RENDER_TYPES = ("fitting", "rendering", "rendering_modulation", "expression", "swap", "random", "morph", "mesh")
NEEDS_A_FIT = ("rendering", "rendering_modulation", "expression", "swap", "morph", "mesh")
NEEDS_STATISTICS = ("fitting", "rendering_modulation", "swap", "random")
VIEW_CONVENTIONS = ("original", "fitted")


@dataclass(frozen=True)
class FitInput:
    """The image to fit and its camera."""

    filePath: str = option("", "image to fit (segRelRes/<name>.png or a render.py view)")
    posePath: str = option("", "pose_<name>.npy; empty = look it up from the image path")
    fit_size: int = option(BASE_RESOLUTION, "largest image side the fit runs at")
    focal: float = option(BASE_FOCAL, f"focal length in pixels at {BASE_RESOLUTION} px (wild photos)")

    def __post_init__(self) -> None:
        if self.fit_size < 1:
            raise FaceNerfError(f"--fit_size must be at least 1, got {self.fit_size}")


@dataclass(frozen=True)
class FitOutput:
    """The fit folder and what the fitting mode writes there."""

    fit_out: str = option("", "fit folder; empty = <image folder>/../fitting/<folder>_<name>")
    fitFile: str = option("", "fit file to render from; empty = <fit folder>/fit.pt")
    is_load_par: bool = option(False, "resume fitting from the fit file")
    save_every: int = option(100, "write the fit file every N iterations")
    preview_every: int = option(0, "progress render every N iterations (0 = the original's "
                                   "0,100,200,300,500,1000,1500,2000)")
    eval_views: int = option(4, "held-out views scored for synthetic renders")


def parse_mesh_bbox(text) -> tuple[float, ...]:
    """``head`` (or empty) -> ``()`` (the head's box, :func:`facenerf.fitting.meshing.head_box`); else six numbers."""
    if isinstance(text, (tuple, list)):
        return tuple(float(v) for v in text)
    if str(text).strip().lower() in ("", "head"):
        return ()
    return parse_float_list(text, "mesh_bbox")


@dataclass(frozen=True)
class ModeSettings:
    """Settings of the rendering, editing and generation modes (see ``run_fit.py --help``)."""

    size: int = option(256, "side of rendered images and videos")
    frames: int = option(60, "frames of an orbit/morph video (per segment for expressions)")
    fps: int = option(VIDEO_FPS, "video frame rate")
    yaws: tuple[float, ...] = option((-60.0, 0.0, 60.0), "yaws (degrees) of the rendering mode's stills")
    view_convention: str = option("original", "cameras of the rendering mode: original = the original code's "
                                              "(pitch 0, radius 16, positive yaw on the subject's right); fitted = "
                                              "at the fitted camera's pitch and distance, positive yaw on the "
                                              "subject's left (render.py's yaw)", choices=VIEW_CONVENTIONS)
    orbit_range: float = option(90.0, "orbit video sweeps yaw over +-this many degrees and back (>= 180: a full "
                                      "turn); training views cover about +-90")
    expression: str = option("smile", "expression name or index (expression mode)")
    expressions: str = option("", "comma list for an interpolation video")
    swap: str = option("texture", "what to swap", choices=("shape", "texture", "both"))
    swapFile: str = option("", "fit file to take the codes from (empty = random draw)")
    morphFile: str = option("", "fit file to morph into")
    n_random: int = option(8, "faces to generate (random mode)")
    temperature: float = option(1.0, "std multiplier of random draws")
    mesh_resolution: int = option(128, "grid vertices per side for mesh export")
    mesh_level: float = option(10.0, "density iso-level of the surface")
    mesh_bbox: tuple[float, ...] = option((), "box x0,y0,z0,x1,y1,z1 in scene units (1 = 50 mm); head (the "
                                              "default): the real-size mean head's box with a 15% margin (the rig "
                                              "never sees the back of the head; a larger box meshes the "
                                              "unconstrained density there)", parse=parse_mesh_bbox)
    mesh_smooth: float = option(1.0, "Gaussian blur of the density grid (voxels)")
    mesh_units: str = option("mm", "units of the OBJ", choices=("mm", "scene"))

    def __post_init__(self) -> None:
        for name in ("size", "frames", "fps", "n_random"):
            if getattr(self, name) < 1:
                raise FaceNerfError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.mesh_resolution < 8:
            raise FaceNerfError(f"--mesh_resolution must be at least 8, got {self.mesh_resolution}")
        box = parse_mesh_bbox(self.mesh_bbox)
        object.__setattr__(self, "mesh_bbox", box)
        if box and (len(box) != 6 or any(box[i] >= box[i + 3] for i in range(3))):
            raise FaceNerfError("--mesh_bbox must be head or x0,y0,z0,x1,y1,z1 with x0 < x1, y0 < y1, z0 < z1; got "
                                + ",".join(f"{v:g}" for v in box))
        object.__setattr__(self, "yaws", parse_float_list(self.yaws, "yaws"))


@dataclass(frozen=True)
class FitCommand:
    """One run of ``run_fit.py``."""

    render_type: str = option("fitting", "what to do (see below)", key="renderType", choices=RENDER_TYPES)
    input: FitInput = field(default_factory=FitInput)
    output: FitOutput = field(default_factory=FitOutput)
    code_stats: str = option("", "code statistics (code_stats.pt or the original texShpDistribution.npy); empty = "
                                 "code_stats.pt beside the checkpoint, computed once from the training data")
    fit: FitSettings = field(default_factory=FitSettings)
    modes: ModeSettings = field(default_factory=ModeSettings)
    source: RunSource = field(default_factory=RunSource)
    runtime: RunSettings = field(default_factory=RunSettings)

    def check_inputs(self) -> None:
        """One-line FaceNerfError when the mode lacks what it works on (checked before anything is loaded)."""
        if self.render_type == "fitting" and not self.input.filePath:
            raise FaceNerfError("fitting needs an image: pass --filePath path/to/segRelRes/<name>.png")
        if self.render_type in NEEDS_A_FIT and not (self.input.filePath or self.output.fitFile):
            raise FaceNerfError(f"--renderType {self.render_type} needs a fit: pass --fitFile fit.pt or the "
                                "--filePath that was fitted")
        if self.render_type == "morph" and not self.modes.morphFile:
            raise FaceNerfError("--renderType morph needs --morphFile other/fit.pt (the fit to morph into)")
        self._check_files_exist()

    def _check_files_exist(self) -> None:
        """Every file this run reads must exist: checked before the checkpoint is loaded."""
        if self.render_type == "fitting":
            image = Path(self.input.filePath)
            if not image.is_file():
                raise FaceNerfError(f"image not found: {image} (check --filePath)")
            from facenerf.fitting.inputs import find_pose_file

            find_pose_file(image, self.input.posePath or None)
        elif self.render_type in NEEDS_A_FIT and not self.fit_file().is_file():
            raise FaceNerfError(f"fit file not found: {self.fit_file()} (--renderType {self.render_type} renders a "
                                f"fit: run run_fit.py --filePath {self.input.filePath or '<image>'} first, or pass "
                                "--fitFile)")
        for flag, value in (("--swapFile", self.modes.swapFile if self.render_type == "swap" else ""),
                            ("--morphFile", self.modes.morphFile if self.render_type == "morph" else ""),
                            ("--code_stats", self.code_stats)):
            if value and not Path(value).is_file():
                raise FaceNerfError(f"file not found: {value} (check {flag})")

    def fit_dir(self) -> Path:
        """Folder of the fit: ``--fit_out``, else ``<image folder>/../fitting/<folder>_<name>`` (the original's)."""
        if self.output.fit_out:
            return Path(self.output.fit_out)
        if self.input.filePath:
            image = Path(self.input.filePath)
            return image.parent.parent / "fitting" / f"{image.parent.name}_{image.stem}"
        return Path(self.output.fitFile).parent

    def fit_file(self) -> Path:
        return Path(self.output.fitFile) if self.output.fitFile else self.fit_dir() / FIT_FILENAME
