"""The typed run configuration of MoFaNeRF: architecture, rendering, data, sampling and schedule.

:class:`MoFaNeRFRunConfig` is what ``run_train.py`` builds from its options and what every
checkpoint stores (``facenerf.config.to_dict``); fitting, rendering and RefineNet pair-making
read it back with :meth:`MoFaNeRFRunConfig.from_checkpoint` and apply the user's explicit
overrides (:class:`RunOverrides`). Each field's default is written once, here or in the
dataclass it comes from (:class:`~facenerf.data.ray_batches.PixelSamplerConfig`,
:class:`~facenerf.runtime.RunSettings`); config keys keep the original code's names.

The architecture defaults are the released model's (reference §1): coarse MLP 8 x 256, fine
MLP 10 x 1024, shape code 50, texture code 256, expression code 30, 20 learned expression
codes, ISM 4 x 256, texture encoder on a 512^2 UV map with 7 stride-2 convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from facenerf.config import flat_options, from_dict, from_flat, option, option_key, parse_int_list, to_dict
from facenerf.core.renderer import DEFAULT_CHUNK_RAYS, RenderSettings
from facenerf.data.mofanerf_dataset import DEFAULT_UV_CACHE, VALID_ID_RULES, SourceSelection
from facenerf.data.ray_batches import PixelSamplerConfig
from facenerf.engine.trainer import TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training.rig import FAR, NEAR
from facenerf.runtime import RunSettings


@dataclass(frozen=True)
class MoFaNeRFConfig:
    """Sizes of every part of the morphable face NeRF (see the field help; fine width 0 = no fine network).

    ``tex_channels`` are the output channels of the texture encoder's stride-2 convolutions;
    their number fixes the final spatial size ``tex_size / 2**len(tex_channels)``.
    ``tex_logstd_head`` keeps the released model's unused "logstd" head (frozen, never trained)
    so that official checkpoints import and export unchanged.
    """

    netdepth: int = option(8, "layers of each coarse trunk")
    netwidth: int = option(256, "width of the coarse network")
    netdepth_fine: int = option(10, "layers of each fine trunk")
    netwidth_fine: int = option(1024, "width of the fine network")
    skip: int = option(5, "trunk layers before the skip concatenation")
    xyz_depth: int = option(4, "layers of the position encoder")
    multires: int = option(10, "frequencies of the position encoding")
    multires_views: int = option(4, "frequencies of the direction encoding")
    shape_dim: int = option(50, "shape code size (beta)", key="input_ch_shapeCodes")
    texture_dim: int = option(256, "texture code size (alpha)", key="input_ch_textureCodes")
    exp_dim: int = option(30, "expression code size (epsilon)", key="input_ch_expCodes")
    n_expressions: int = option(20, "number of learned expression codes")
    ism_width: int = option(256, "width of the identity-specific modulation MLP")
    ism_depth: int = option(4, "layers of the identity-specific modulation MLP")
    tex_size: int = option(512, "side of the UV map fed to the texture encoder")
    tex_channels: tuple[int, ...] = option((32, 32, 32, 32, 64, 128, 256),
                                           "channels of the encoder's stride-2 convolutions (one halving each)")
    tex_hidden: int = option(512, "width of the encoder's fully connected layer")
    tex_decoder_depth: int = option(3, "layers of the encoder's output MLP")
    tex_logstd_head: bool = option(True, "keep the released model's unused logstd head (frozen) for "
                                         "checkpoint compatibility")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tex_channels", parse_int_list(self.tex_channels, "tex_channels"))
        self.validate()

    @property
    def has_fine(self) -> bool:
        return self.netwidth_fine > 0 and self.netdepth_fine > 0

    @property
    def tex_grid(self) -> int:
        """Spatial side of the encoder's last feature map."""
        return self.tex_size >> len(self.tex_channels)

    def validate(self) -> None:
        """Raise FaceNerfError for sizes that cannot build a network."""
        positive = ("multires", "multires_views", "netdepth", "netwidth", "xyz_depth", "shape_dim",
                    "texture_dim", "exp_dim", "n_expressions", "ism_width", "ism_depth",
                    "tex_size", "tex_hidden")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise FaceNerfError(f"model size {name} = {getattr(self, name)} must be positive; fix the config")
        for depth_name in ("netdepth",) + (("netdepth_fine",) if self.has_fine else ()):
            depth = getattr(self, depth_name)
            if not 0 < self.skip < depth:
                raise FaceNerfError(f"{depth_name} = {depth} must exceed the skip position {self.skip}; "
                                    f"use {depth_name} >= {self.skip + 1}")
        if not self.tex_channels:
            raise FaceNerfError("tex_channels is empty; give at least one channel count, e.g. 16,32")
        if self.tex_size % (1 << len(self.tex_channels)) or self.tex_grid < 1:
            raise FaceNerfError(f"tex_size = {self.tex_size} is not divisible by 2^{len(self.tex_channels)} "
                                f"(one halving per entry of tex_channels); change tex_size or tex_channels")

    def to_dict(self) -> dict:
        """Primitive-only dict (for checkpoints and JSON)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MoFaNeRFConfig":
        """Build from a dict, ignoring unknown keys (checkpoints of newer versions)."""
        return from_dict(cls, data)


def parse_pixel_center(text) -> float | None:
    """``auto`` (None: as the data's camera files record) or a pixel convention, 0 or 0.5."""
    if text is None or str(text).strip().lower() in ("auto", "none", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value not in (0.0, 0.5):
        raise FaceNerfError(f"pixel_center must be auto, 0 or 0.5, got {text!r}")
    return value


@dataclass(frozen=True)
class MoFaNeRFRenderConfig:
    """Ray bounds, samples and background: how the renderer runs for this model."""

    near: float = option(NEAR, "near bound (world units, 1 = 50 mm)")
    far: float = option(FAR, "far bound (world units)")
    N_samples: int = option(64, "coarse samples per ray")
    N_importance: int = option(64, "extra fine samples per ray (0 = no fine network)")
    perturb: float = option(1.0, "stratified jitter in training (0 or 1)")
    white_bkgd: bool = option(False, "composite on white instead of black")
    lindisp: bool = option(False, "sample linearly in disparity instead of depth")
    pixel_center: float | None = option(None, "the images' pixel convention: pixel (i, j) shows the ray through "
                                              "(i + c, j + c); auto = as the data's camera files record (0.5 for "
                                              "the original render.py); 0 or 0.5 overrides it",
                                        parse=parse_pixel_center)
    chunk: int = option(DEFAULT_CHUNK_RAYS, "rays per forward pass when rendering images")

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixel_center", parse_pixel_center(self.pixel_center))
        for name in ("N_samples", "chunk"):
            if getattr(self, name) <= 0:
                raise FaceNerfError(f"{name} must be positive, got {getattr(self, name)}")
        if self.N_importance < 0:
            raise FaceNerfError(f"N_importance must be 0 or more, got {self.N_importance}")
        if not 0 < self.near < self.far:
            raise FaceNerfError(f"need 0 < near < far, got near {self.near}, far {self.far}")

    def settings(self, training: bool = False) -> RenderSettings:
        """Renderer settings: stratified jitter only in training; test renders are deterministic."""
        background = (1.0, 1.0, 1.0) if self.white_bkgd else (0.0, 0.0, 0.0)
        return RenderSettings(n_samples=self.N_samples, n_importance=self.N_importance,
                              perturb=training and self.perturb > 0, lindisp=self.lindisp, background=background,
                              chunk_rays=self.chunk)

    def for_model(self, model: MoFaNeRFConfig) -> "MoFaNeRFRenderConfig":
        """These settings, with no fine samples for a model without a fine network."""
        return self if model.has_fine else replace(self, N_importance=0)


@dataclass(frozen=True)
class MoFaNeRFDataConfig:
    """Where the multi-view training data is, and how it is read."""

    datadir: str = option("./data/multiViewImages",
                          "multi-view renders: {id}/{expression}/{pitch}_{yaw}.png + transforms_*_{id}.json")
    shape_codes: str = option("", "factors_id.npy [N+1, 50] (row = id); empty = next to datadir")
    landmarks: str = option("", "3D landmarks [N+1, 20, 68, 3] in mm; empty = next to datadir")
    uv_dir: str = option("", "folder of {id}/1_neutral.jpg UV textures; empty = found next to datadir")
    person_num: int = option(300, "number of identities: the first N by the valid_ids rule")
    personList: tuple[int, ...] = option((), "comma list of identity ids to use instead (the original's flag; "
                                             "person_num becomes their number)")
    valid_ids: str = option("auto", "which ids person_num takes: original = the original code's rule for real "
                                    "FaceScape (13 invalid ids among the first 359 replaced by ids 615-733); "
                                    "first = the first N ids; auto = original when the data holds ids above 600",
                            choices=VALID_ID_RULES)
    testskip: int = option(1, "use every N-th test and validation view of each identity (the original's "
                              "default: 8)")
    pose_scale: float = option(1.0, "divide the training cameras' translations by this (the original's --scale)",
                               key="scale")
    half_res: bool = option(False, "train on half-resolution images")
    image_scale: float = option(1.0, "further resize factor of the images")
    num_workers: int = option(2, "data-loading worker processes (0 = main)")
    uv_cache: int = option(DEFAULT_UV_CACHE, "UV maps kept in memory per process")
    skip_bad_images: bool = option(False, "skip and count unreadable images instead of saving a checkpoint "
                                          "and stopping")

    def __post_init__(self) -> None:
        object.__setattr__(self, "personList", parse_int_list(self.personList, "personList"))
        if self.personList:   # as the original: person_num is the list's length
            object.__setattr__(self, "person_num", len(self.personList))
        if self.person_num <= 0:
            raise FaceNerfError(f"person_num must be positive, got {self.person_num}")
        if self.image_scale <= 0:
            raise FaceNerfError(f"image_scale must be positive, got {self.image_scale}")
        if self.pose_scale <= 0:
            raise FaceNerfError(f"scale must be positive, got {self.pose_scale}")
        if self.testskip < 0:
            raise FaceNerfError(f"testskip must be 0 or more, got {self.testskip}")

    @property
    def resize(self) -> float:
        """Resize factor of every image (``half_res`` halves it)."""
        return self.image_scale * (0.5 if self.half_res else 1.0)

    @property
    def selection(self) -> SourceSelection:
        """Which identities and views the run reads."""
        return SourceSelection(self.person_num, self.personList, self.valid_ids, self.testskip, self.pose_scale)


@dataclass(frozen=True)
class MoFaNeRFTrainSettings:
    """Experiment location, schedule, cadences and the final figures of a training run."""

    expname: str = option("mofanerf", "experiment name")
    basedir: str = option("./logs", "folder of experiments")
    N_iters: int = option(600000, "training steps")
    lrate: float = option(5e-4, "learning rate")
    lrate_decay: float = option(500, "lr decays by 10x every lrate_decay*lrate_decay_factor steps")
    lrate_decay_factor: int = option(1500, "steps per unit of lrate_decay (the seed: 1500; vanilla NeRF: 1000)")
    grad_clip: float = option(0.0, "max gradient norm (0 = off)")
    i_print: int = option(100, "log training scalars every N steps")
    i_weights: int = option(10000, "checkpoint every N steps")
    i_testset: int = option(10000, "validation render + PSNR every N steps")
    n_val: int = option(4, "held-out views rendered at each validation")
    val_scale: float = option(0.5, "resolution factor of validation renders")
    keep_last: int = option(TrainerConfig.keep_last, "checkpoints kept (0 = all)")
    ft_path: str = option("", "initialise from this checkpoint (facenerf .pt or the original .tar) on a fresh run")
    no_reload: bool = option(False, "ignore existing checkpoints (fresh run)")
    compile: bool = option(False, "torch.compile the MLPs (GPU)")
    standardise_codes: bool = option(True, "standardise shape codes over the training identities (to FaceScape's "
                                           "spread; stored in the checkpoint, used in fitting), so codes of any "
                                           "scale train alike; false = raw codes, as the original")
    grid_ids: int = option(3, "test identities in the final PNG grid")
    grid_exps: tuple[int, ...] = option((0, 1, 2, 16, 17), "expressions in the final PNG grid")

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid_exps", parse_int_list(self.grid_exps, "grid_exps"))
        if self.N_iters <= 0:
            raise FaceNerfError(f"N_iters must be positive, got {self.N_iters}")

    @property
    def lr_decay_steps(self) -> int | None:
        """Steps over which the learning rate falls 10x (None = constant)."""
        return int(self.lrate_decay * self.lrate_decay_factor) or None


@dataclass(frozen=True)
class MoFaNeRFRunConfig:
    """Everything that defines a MoFaNeRF training run; stored in every checkpoint."""

    model: MoFaNeRFConfig = field(default_factory=MoFaNeRFConfig)
    render: MoFaNeRFRenderConfig = field(default_factory=MoFaNeRFRenderConfig)
    data: MoFaNeRFDataConfig = field(default_factory=MoFaNeRFDataConfig)
    sampling: PixelSamplerConfig = field(default_factory=PixelSamplerConfig)
    train: MoFaNeRFTrainSettings = field(default_factory=MoFaNeRFTrainSettings)
    runtime: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict:
        """The primitive dict a checkpoint stores."""
        return to_dict(self)

    @classmethod
    def from_checkpoint(cls, config: dict, where: str = "checkpoint") -> "MoFaNeRFRunConfig":
        """The run config stored in a checkpoint: this layout, or the flat option dict of older ones.

        Older checkpoints stored the training options as one flat ``{key: value}`` dict plus
        ``model_config`` (the architecture, with ``N_importance = 0`` already applied).
        """
        if isinstance(config.get("model"), dict) and isinstance(config.get("render"), dict):
            return from_dict(cls, config)
        if isinstance(config.get("model_config"), dict):
            return from_flat(cls, config, model=MoFaNeRFConfig.from_dict(config["model_config"]))
        if "netwidth" in config:
            run = from_flat(cls, config)
            return replace(run, model=without_unused_fine(run.model, run.render))
        raise FaceNerfError(f"{where} stores no MoFaNeRF run configuration; it was not written by MoFaNeRF training")

    def options(self) -> dict[str, Any]:
        """``{config key: value}`` of every setting (what ``config.txt`` holds)."""
        return flat_options(self)

    def with_overrides(self, overrides: "RunOverrides") -> "MoFaNeRFRunConfig":
        """This run with the user's render, data and sampling keys applied (the model is not changed)."""
        return replace(self, render=replace(self.render, **overrides.render),
                       data=replace(self.data, **overrides.data),
                       sampling=replace(self.sampling, **overrides.sampling))


def without_unused_fine(model: MoFaNeRFConfig, render: MoFaNeRFRenderConfig) -> MoFaNeRFConfig:
    """``N_importance = 0`` trains no fine network: its width becomes 0 (as the original code does)."""
    return replace(model, netwidth_fine=0) if render.N_importance <= 0 else model


# ----------------------------------------------------------------------------- overrides

# render and data keys a run fixes; commands that load a checkpoint take them from it unless set
RENDER_OVERRIDES = ("near", "far", "N_samples", "N_importance", "white_bkgd", "lindisp", "pixel_center", "chunk")
DATA_OVERRIDES = ("datadir", "shape_codes", "landmarks", "uv_dir", "person_num", "personList", "valid_ids", "half_res",
                  "image_scale")
SAMPLING_OVERRIDES = ("N_rand",)
_FINE_FIELDS = ("netdepth_fine", "netwidth_fine")


@dataclass(frozen=True)
class RunOverrides:
    """Settings the user gave explicitly when loading a trained run: ``{field name: value}`` each.

    ``model`` holds architecture sizes, which must equal the checkpoint's (they are checked, not
    applied); ``render``, ``data`` and ``sampling`` replace the run's values.
    """

    model: dict = field(default_factory=dict)
    render: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSource:
    """Which trained run a command loads (``ckpt``, else ``ft_path``, else the newest checkpoint of
    ``basedir/expname``; only those three keys of ``location`` are read) and what the user overrides."""

    ckpt: str = option("", "trained checkpoint; empty = --ft_path, else the newest in basedir/expname/checkpoints")
    location: MoFaNeRFTrainSettings = field(default_factory=MoFaNeRFTrainSettings)
    overrides: RunOverrides = field(default_factory=RunOverrides)


def _key(cls, name: str) -> str:
    return option_key(next(f for f in fields(cls) if f.name == name))


def _shown(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def model_mismatches(stored: MoFaNeRFConfig, given: dict, n_importance: int) -> list[str]:
    """``"key: config A vs checkpoint B"`` for every size in ``given`` that the checkpoint contradicts.

    A checkpoint without a fine network matches fine sizes that ask for none (as in training,
    ``n_importance = 0`` asks for none whatever the sizes say).
    """
    diffs = []
    asks_for_fine = n_importance > 0 and min(given.get(k, getattr(stored, k)) for k in _FINE_FIELDS) > 0
    for name, value in given.items():
        ours, theirs = value, getattr(stored, name)
        if name == "tex_channels":
            ours = parse_int_list(ours, "tex_channels")
        key = _key(MoFaNeRFConfig, name)
        if name in _FINE_FIELDS and not stored.has_fine:
            if asks_for_fine:
                diffs.append(f"{key}: config {_shown(ours)} vs checkpoint {_shown(theirs)} (no fine network)")
        elif ours != theirs:
            diffs.append(f"{key}: config {_shown(ours)} vs checkpoint {_shown(theirs)}")
    return diffs


def check_model_overrides(stored: MoFaNeRFConfig, overrides: RunOverrides, n_importance: int, where: str) -> None:
    """One FaceNerfError naming every architecture size set by the user that the checkpoint contradicts."""
    diffs = model_mismatches(stored, overrides.model, n_importance)
    if diffs:
        raise FaceNerfError(f"model sizes in the config do not match {where} ({'; '.join(diffs)}); "
                            "remove those keys (the model is built from the checkpoint's sizes) or pass the "
                            "checkpoint they belong to with --ckpt")


def _differs(a, b) -> bool:
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        return float(a) != float(b)
    return a != b


def taken_from_run(trained: MoFaNeRFRunConfig, overrides: RunOverrides) -> dict[str, Any]:
    """The run's render and data settings that differ from the defaults and that the user left unset."""
    defaults, taken = MoFaNeRFRunConfig(), {}
    for part, names in (("render", RENDER_OVERRIDES[:-1]), ("data", DATA_OVERRIDES)):
        for name in names:
            value = getattr(getattr(trained, part), name)
            if name not in getattr(overrides, part) and _differs(value, getattr(getattr(defaults, part), name)):
                taken[name] = value
    return taken


def render_differences(trained: MoFaNeRFRunConfig, overrides: RunOverrides) -> list[str]:
    """``"near 9.0 (trained with 10.0)"`` for each render setting the user set to another value than training's."""
    return [f"{name} {overrides.render[name]} (trained with {getattr(trained.render, name)})"
            for name in RENDER_OVERRIDES[:-1]
            if name in overrides.render and _differs(overrides.render[name], getattr(trained.render, name))]


def describe_mismatch(ours: MoFaNeRFConfig, theirs: MoFaNeRFConfig, where: str) -> str | None:
    """One line naming every architecture size that differs, or None when they agree."""
    diffs = [f"{_key(MoFaNeRFConfig, f.name)}: config {_shown(getattr(ours, f.name))} vs checkpoint "
             f"{_shown(getattr(theirs, f.name))}" for f in fields(MoFaNeRFConfig)
             if getattr(ours, f.name) != getattr(theirs, f.name)]
    if not diffs:
        return None
    return f"model sizes in the config do not match {where} ({'; '.join(diffs)}); " \
           "set them to the checkpoint's values or start a new expname"
