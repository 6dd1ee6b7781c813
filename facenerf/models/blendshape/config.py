"""The typed run configuration of NeRFBlendShape (``main_nerf.py``); every checkpoint stores it.

Config keys keep the seed's flag names (``--num_rays``, ``--update_extra_interval``,
``--patch_size``, ...). Defaults are the official release's sizes (reference §1-§3): 16 levels
x 4 features, base resolution 16, finest 1024, 2^14 rows per level; density MLP 4 x 64 with a
softplus, colour MLP 1 x 64 on SH degree 4; Adam lr 1e-3, betas (0.9, 0.99), eps 1e-15, weight
decay 1e-6 on the MLPs; mask loss early, patch loss late, L1 sparsity on the expression tables.

**Bound and units.** The release marches a cube ``[-0.06, 0.06]^3`` in its tracker's units
after scaling pose translations by 0.33 (its head spans about +-0.18 tracker units). Our data
(the talking-head generator, ``data_utils/process.py``) is in scene units (1 = 50 mm) and its
transforms carry the head box ``aabb``. ``bound = 0`` (the default) therefore means: a cube
around the origin with half-side 1.1 x the largest coordinate of the transforms' ``aabb`` (in
the units after ``scale``), and 0.06 - the release's - when the transforms carry none.
``scale = auto`` is 0.33 for the release's ``transforms.json`` layout and 1 otherwise.
Densities are learned relative to the box (:data:`REFERENCE_BOUND`), so the same network
outputs, thresholds and initialisation mean the same optical depth whatever the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from facenerf.config import from_dict, option, to_dict
from facenerf.core.backends import HASH_GRID_IMPLEMENTATIONS
from facenerf.engine.trainer import TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.torso import TorsoConfig
from facenerf.runtime import RunSettings

NETWORKS = ("blend4_noamb",)
DENSITY_ACTIVATIONS = ("softplus", "trunc_exp")
REFERENCE_BOUND = 0.06      # the release's cube half-side: densities are scaled by REFERENCE_BOUND / bound
OFFICIAL_SCALE = 0.33       # the release's pose-translation scale (transforms.json layout)
AUTO_BOUND_MARGIN = 1.1     # bound = 0: half-side = this x the largest |coordinate| of the transforms' aabb
PRELOAD_MODES = (0, 1, 2)   # 0: read each frame from disk, 1: all frames in CPU memory, 2: on the device


def _positive(obj, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise FaceNerfError(f"--{name} must be positive, got {getattr(obj, name)}")


def _fraction(obj, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0.0 <= getattr(obj, name) <= 1.0:
            raise FaceNerfError(f"--{name} is a fraction of the training steps in [0, 1], got {getattr(obj, name)}")


@dataclass(frozen=True)
class BlendShapeConfig:
    """Sizes of the head field: blended hash grid, density MLP and colour MLP (reference §1)."""

    network: str = option("blend4_noamb", "network: the expression-blended hash-grid head (the official design; "
                                          "no ambient net, no per-frame codes)", choices=NETWORKS)
    expr_dim: int | None = option(None, "expression coefficients used (the first K of the data's; the mean table "
                                        "adds one more); default: all the data holds")
    num_levels: int = option(16, "hash-grid levels")
    level_dim: int = option(4, "features per hash-grid level")
    base_resolution: int = option(16, "coarsest hash-grid resolution")
    desired_resolution: int = option(1024, "finest hash-grid resolution")
    log2_hashmap_size: int = option(14, "log2 of the table rows per hashed level")
    density_activation: str = option("softplus", "density activation: softplus (the release) or trunc_exp (the "
                                                 "unofficial code; reaches opaque densities in far fewer steps)",
                                     choices=DENSITY_ACTIVATIONS)
    num_layers: int = option(4, "hidden layers of the density MLP")
    hidden_dim: int = option(64, "width of the density MLP")
    geo_feat_dim: int = option(64, "geometric features passed from the density to the colour MLP")
    num_layers_color: int = option(1, "hidden layers of the colour MLP")
    hidden_dim_color: int = option(64, "width of the colour MLP")
    sh_degree: int = option(4, "spherical-harmonics degree of the view-direction encoding (1-4)")
    grid_impl: str = option("auto", "hash-grid lookup: auto (Triton kernel on CUDA when usable), torch or triton",
                            choices=HASH_GRID_IMPLEMENTATIONS)

    def __post_init__(self) -> None:
        _positive(self, ("num_levels", "level_dim", "base_resolution", "desired_resolution", "hidden_dim",
                         "geo_feat_dim", "hidden_dim_color"))
        if self.expr_dim is not None and self.expr_dim <= 0:
            raise FaceNerfError(f"--expr_dim must be positive, got {self.expr_dim}")
        if self.desired_resolution < self.base_resolution:
            raise FaceNerfError("--desired_resolution must be at least --base_resolution")
        if not 1 <= self.sh_degree <= 4:
            raise FaceNerfError(f"--sh_degree must be 1..4, got {self.sh_degree}")
        if not 1 <= self.log2_hashmap_size <= 30:
            raise FaceNerfError(f"--log2_hashmap_size must be 1..30, got {self.log2_hashmap_size}")

    @property
    def n_tables(self) -> int:
        """Hash-table sets: the mean plus one per coefficient (``expr_dim`` must be resolved)."""
        if self.expr_dim is None:
            raise ValueError("expr_dim is not resolved yet")
        return self.expr_dim + 1


@dataclass(frozen=True)
class BlendShapeSceneConfig:
    """The head box, cameras and occupancy-grid marching (reference §2)."""

    bound: float = option(0.0, "half-side of the head cube around the origin, dataset units after --scale; 0 = "
                               "1.1 x the largest coordinate of the transforms' aabb, else the release's 0.06")
    scale: float | None = option(None, "multiplies every pose translation (default: 0.33 for the release's "
                                       "transforms.json layout, 1 otherwise)")
    pixel_center: float = option(0.0, "pixel (i, j) shows the ray through (i + c, j + c): 0 for the release and "
                                      "for data written by facenerf, 0.5 for RAD-NeRF's convention")
    cuda_ray: bool = option(False, "march through an expression-aware occupancy grid (on any device); without "
                                   "it every step through the box is sampled")
    grid_size: int = option(128, "occupancy-grid cells per axis (even)")
    march_steps: int = option(128, "marching steps per box side: the step is 2 bound / march_steps")
    density_thresh: float = option(10.0, "a grid cell is occupied when its density exceeds min(this, mean), in "
                                         "the release's units (box-relative)")
    update_extra_interval: int = option(16, "steps between occupancy-grid updates (--cuda_ray)")
    grid_warmup: int = option(256, "before this step every grid update evaluates every cell; afterwards a "
                                   "random quarter plus as many occupied cells")
    grid_decay: float = option(0.95, "occupancy-grid EMA decay")
    white_bg: bool = option(False, "render over white instead of the dataset's bc.jpg")

    def __post_init__(self) -> None:
        _positive(self, ("grid_size", "march_steps", "density_thresh"))
        if self.bound < 0 or (self.scale is not None and self.scale <= 0):
            raise FaceNerfError("--bound must be 0 (from the data) or positive, and --scale positive")
        if self.grid_size % 2:
            raise FaceNerfError(f"--grid_size must be even, got {self.grid_size}")
        if self.pixel_center not in (0.0, 0.5):
            raise FaceNerfError(f"--pixel_center must be 0 or 0.5, got {self.pixel_center}")
        if not 0.0 <= self.grid_decay < 1.0:
            raise FaceNerfError(f"--grid_decay must be in [0, 1), got {self.grid_decay}")

    @property
    def step_size(self) -> float:
        """Marching step in dataset units (for unit-length directions)."""
        return 2.0 * self.bound / self.march_steps

    @property
    def density_scale(self) -> float:
        """World density = box-relative density x this."""
        return REFERENCE_BOUND / self.bound


@dataclass(frozen=True)
class BlendShapeDataConfig:
    """The talking-head dataset (either layout, see ``facenerf/data/video.py``)."""

    path: str = option("", "dataset folder (positional: data/DATASET)")
    test_num: int | None = option(None, "hold out the last N frames (default: the dataset's transforms_val.json; "
                                        "the release's layout: 500)")
    downscale: float = option(1.0, "divide the image resolution by this")
    preload: int = option(0, "0: read frames from disk each step, 1: keep them in CPU memory, 2: on the device",
                          choices=PRELOAD_MODES)

    def __post_init__(self) -> None:
        if self.downscale < 1:
            raise FaceNerfError(f"--downscale must be at least 1, got {self.downscale}")
        if self.test_num is not None and self.test_num < 1:
            raise FaceNerfError(f"--test_num must be at least 1, got {self.test_num}")


@dataclass(frozen=True)
class BlendShapeTrainSettings:
    """Schedule, losses and run control (reference §3)."""

    workspace: str = option("workspace", "output folder: checkpoints/, validation/, results/, config.txt")
    train_epoch: int = option(15, "epochs (one frame per step; an epoch = every training frame once)",
                              aliases=("train_epochs",))
    iters: int = option(0, "training steps; 0 = train_epoch x training frames")
    num_rays: int = option(4096, "random rays per step")
    lr: float = option(1e-3, "Adam learning rate (every group)")
    lr_final: float = option(0.1, "learning-rate factor reached at the last step (exponential decay)")
    weight_decay: float = option(1e-6, "weight decay of the MLPs (tables: none)")
    lambda_mask: float = option(1.0, "weight of the L1 between the rendered opacity and the head mask")
    mask_until: float = option(0.2, "the mask loss is active during this fraction of the steps")
    use_patch_loss: bool = option(False, "add a patch loss in the late steps (mouth patch on even steps, face patch "
                                         "on odd ones)")
    patch_size: int = option(32, "side of the patch in pixels")
    patch_from: float = option(0.5, "the patch loss starts after this fraction of the steps")
    lambda_patch: float = option(0.1, "weight of the perceptual patch term (LPIPS, or SSIM + gradients)")
    lambda_patch_l1: float = option(0.1, "weight of the L1 on the patch")
    lpips_weights: str = option("", "LPIPS (AlexNet) weights file for the patch loss; empty = the weights-free "
                                    "patch loss")
    lambda_reg: float = option(1.0, "weight of the L1 sparsity regulariser on the expression tables")
    eval_interval: int = option(1, "epochs between validation renders (0 = only at the end)")
    val_num: int = option(3, "held-out frames rendered at each validation")
    save_interval: int = option(1, "epochs between checkpoints")
    keep_last: int = option(TrainerConfig.keep_last, "checkpoints kept (0 = all)")
    fp16: bool = option(False, "mixed precision (autocast) on CUDA; ignored on the CPU")
    torso: bool = option(False, "train the torso net behind a frozen head (needs --head_ckpt)")
    head_ckpt: str = option("", "trained head for --torso: a checkpoint, or the head's workspace (its newest checkpoint)")

    def __post_init__(self) -> None:
        _positive(self, ("num_rays", "lr", "lr_final", "patch_size", "val_num"))
        _fraction(self, ("mask_until", "patch_from"))
        if self.train_epoch <= 0 and self.iters <= 0:
            raise FaceNerfError("give --train_epoch or --iters a positive value")

    def total_steps(self, n_frames: int) -> int:
        return self.iters if self.iters > 0 else self.train_epoch * n_frames


@dataclass(frozen=True)
class BlendShapeTestSettings:
    """What ``--test`` writes (not part of a training run)."""

    test: bool = option(False, "render the held-out frames, a novel-view orbit and expression transfer; report "
                               "PSNR/SSIM")
    test_fps: int = option(25, "frame rate of the test videos")
    test_expr: str = option("", "drive the head with these coefficients (.npy [N, K] / .csv / .txt, or a dataset "
                                "folder) from the first held-out frame's view")
    test_expr_fps: float = option(0.0, "rows per second of --test_expr when it was recorded at another rate than "
                                       "--test_fps (e.g. 60 for Live Link Face): resampled in time; 0 = one row per "
                                       "video frame")
    ckpt: str = option("", "checkpoint to test; empty = the newest in the workspace")
    orbit_yaw: float = option(15.0, "the novel-view orbit swings the camera yaw between +- this many degrees")
    orbit_frames: int = option(100, "frames per orbit cycle")

    def __post_init__(self) -> None:
        _positive(self, ("test_fps", "orbit_frames"))
        if self.test_expr_fps < 0:
            raise FaceNerfError(f"--test_expr_fps must be 0 (one row per frame) or positive, got {self.test_expr_fps}")


@dataclass(frozen=True)
class BlendShapeRunConfig:
    """Everything that defines a NeRFBlendShape training run; stored in every checkpoint."""

    model: BlendShapeConfig = field(default_factory=BlendShapeConfig)
    scene: BlendShapeSceneConfig = field(default_factory=BlendShapeSceneConfig)
    data: BlendShapeDataConfig = field(default_factory=BlendShapeDataConfig)
    train: BlendShapeTrainSettings = field(default_factory=BlendShapeTrainSettings)
    torso: TorsoConfig = field(default_factory=TorsoConfig)
    runtime: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_checkpoint(cls, config: dict, where: str = "checkpoint") -> "BlendShapeRunConfig":
        """The run config a checkpoint stores (FaceNerfError when it holds another model's)."""
        if not (isinstance(config.get("model"), dict) and "num_levels" in config["model"]):
            raise FaceNerfError(f"{where} stores no NeRFBlendShape run configuration; pass a main_nerf.py checkpoint")
        return from_dict(cls, config)

    def resolved(self, expr_dim: int, bound: float, scale: float) -> "BlendShapeRunConfig":
        """This run with the values found in the data filled in."""
        return replace(self, model=replace(self.model, expr_dim=int(expr_dim)),
                       scene=replace(self.scene, bound=float(bound), scale=float(scale)))
