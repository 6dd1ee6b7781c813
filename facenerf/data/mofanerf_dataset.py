"""MoFaNeRF training data streamed one frame per step, never all images in memory.

Stages (docs/architecture.md, Data): the FaceScape parser turns the render folder into
records; :class:`MoFaNeRFData` holds only their light part (paths, poses, indices, shape codes,
3D landmarks) and, for each step, reads one frame, projects its identity/expression landmarks,
picks pixels with :mod:`facenerf.data.ray_batches` and returns a ray batch:

    {"rays": RayBundle [N], "rgb": [N, 3], "shape": [1, shape_dim], "uv": [1, 3, S, S],
     "expression": int64 [1], "identity": int64 [1], "frame": int64 [1], "seed": int}

Each batch depends only on ``(seed, rank, step)``, so a resumed run continues with exactly the
batches the interrupted run would have seen, and data-parallel ranks see different frames.
:class:`StepBatches` prefetches them in DataLoader worker processes.

An unreadable image raises a :class:`FaceNerfError` naming the file (the trainer then saves a
checkpoint and stops). With ``skip_bad_images`` the frame is replaced by the next training
frame instead; the batch lists the skipped frames under ``"bad_frames"`` and
:class:`StepBatches` collects and reports them.

The texture encoder's input (the identity's neutral UV map resized to ``tex_size``) is
computed once per identity and cached (reference §11.4: the original re-read and resized a
4K JPEG at every step): in memory (LRU, ``uv_cache`` maps per process) and, when a cache folder
is given, as a ``.npy`` file that later runs and other workers reuse.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics, project_points
from facenerf.core.rays import RayBundle, image_rays, pixel_rays, scale_pixel_coordinates, scaled_pixel_center
from facenerf.data.ray_batches import PixelSamplerConfig, gather_pixels, sample_pixels
from facenerf.errors import FaceNerfError
from facenerf.io import read_image, write_npy

DEFAULT_UV_CACHE = 64  # UV maps kept in memory per process


@dataclass
class IdentityData:
    """What training needs of one identity."""

    identity: str  # FaceScape id (folder name)
    shape_code: np.ndarray  # [shape_dim] float32, beta
    uv_path: Path  # the neutral UV texture (any size; resized to tex_size once)
    landmarks: np.ndarray | None = None  # [n_expressions, 68, 3] world units (mm / 50), NaN if unknown


@dataclass
class FrameTable:
    """All frames as parallel arrays (F frames)."""

    image_paths: list[Path]  # F images
    identity: np.ndarray  # [F] int64: index into the identity list (not the FaceScape id)
    expression: np.ndarray  # [F] int64 in [0, n_expressions)
    c2w: np.ndarray  # [F, 4, 4] float32 camera-to-world, OpenGL
    is_test: np.ndarray  # [F] bool: held-out view
    intrinsics: Intrinsics  # of the images as stored on disk
    landmarks_2d: np.ndarray | None = None  # [F, 68, 2] (x, y) px at the stored size, NaN = hidden
    is_val: np.ndarray | None = None  # [F] bool: validation view (render.py --val_views); None = none
    pixel_center: float = 0.0  # the images' convention: pixel (i, j) shows the ray through (i + c, j + c)

    def __len__(self) -> int:
        return len(self.image_paths)


def step_seed(seed: int, rank: int, step: int) -> int:
    """A 63-bit seed that depends only on ``(seed, rank, step)``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(step)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass
class MoFaNeRFData:
    """Frames + identities + sampling rules; produces one training batch per step.

    Args:
        frames: the frame table.
        identities: one entry per identity index used in ``frames.identity``.
        sampler: pixel sampling rules (rays per frame, landmark share, precrop).
        near, far: ray bounds in world units.
        tex_size: side of the texture encoder's input.
        image_scale: resize factor applied to every image (0.5 = the seed's ``half_res``).
        uv_cache_dir: folder for cached resized UV maps (None = memory only).
        uv_cache: UV maps kept in memory per process.
        seed: base seed of the per-step randomness.
        skip_bad_images: replace unreadable images by other frames instead of stopping.
        pixel_center: the images' pixel convention (None = the frame table's, the one they were
            rendered with); ``self.pixel_center`` is the one at the training resolution.
    """

    frames: FrameTable
    identities: list[IdentityData]
    sampler: PixelSamplerConfig
    near: float
    far: float
    tex_size: int
    image_scale: float = 1.0
    uv_cache_dir: Path | None = None
    uv_cache: int = DEFAULT_UV_CACHE
    seed: int = 0
    skip_bad_images: bool = False
    pixel_center: float | None = None
    _uv_memory: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _bad: set = field(default_factory=set, repr=False)   # frames found unreadable (this process)

    def __post_init__(self) -> None:
        is_val = self.frames.is_val if self.frames.is_val is not None else np.zeros_like(self.frames.is_test)
        self.train_indices = np.flatnonzero(~(self.frames.is_test | is_val))  # [F_train]
        self.test_indices = np.flatnonzero(self.frames.is_test)  # [F_test]
        self.val_indices = np.flatnonzero(is_val)  # [F_val]
        if len(self.train_indices) == 0:
            raise FaceNerfError("no training frames: every frame is marked as a test view; "
                                "check the transforms_train_*.json files")
        self.K = self.frames.intrinsics.scaled(self.image_scale) if self.image_scale != 1.0 \
            else self.frames.intrinsics
        stored = self.frames.pixel_center if self.pixel_center is None else float(self.pixel_center)
        self.stored_pixel_center = stored  # of the images on disk
        self.pixel_center = scaled_pixel_center(stored, self.image_scale)  # at the training size

    # ------------------------------------------------------------------ per-frame data
    def image(self, frame: int) -> Tensor:
        """Frame ``frame`` as ``float32 [H, W, 3]`` at the training resolution."""
        return self.frame_image(frame, self.K)

    def readable(self, frame: int) -> bool:
        """False for a frame already found unreadable when ``skip_bad_images`` is on."""
        return frame not in self._bad

    def pose(self, frame: int) -> Tensor:
        return torch.from_numpy(np.asarray(self.frames.c2w[frame], dtype=np.float32))  # [4, 4]

    def landmarks_xy(self, frame: int) -> Tensor | None:
        """The frame's landmarks in pixels ``[68, 2]`` (x, y) at the training size, or None.

        Uses the renderer's per-frame 2D landmarks when the frame table has them (hidden ones
        are NaN and get no rays), else projects the identity/expression's 3D landmarks.
        """
        if self.frames.landmarks_2d is not None:
            xy = torch.from_numpy(np.asarray(self.frames.landmarks_2d[frame], dtype=np.float32))
            return scale_pixel_coordinates(xy, self.image_scale) if torch.isfinite(xy).any() else None
        person = self.identities[int(self.frames.identity[frame])]
        if person.landmarks is None:
            return None
        points = person.landmarks[int(self.frames.expression[frame])]  # [68, 3] world units
        if not np.isfinite(points).all():
            return None
        xy = project_points(torch.from_numpy(np.asarray(points, dtype=np.float32)), self.pose(frame), self.K)
        return xy - self.pixel_center  # the pixel that shows each landmark, rounded

    def uv(self, identity: int) -> Tensor:
        """The identity's texture-encoder input ``float32 [1, 3, S, S]`` in [0, 1] (cached)."""
        cached = self._uv_memory.get(identity)
        if cached is None:
            cached = self._load_uv(identity)  # uint8 [S, S, 3]
            self._uv_memory[identity] = cached
            while len(self._uv_memory) > max(self.uv_cache, 1):
                self._uv_memory.popitem(last=False)
        else:
            self._uv_memory.move_to_end(identity)
        return torch.from_numpy(cached).permute(2, 0, 1)[None].float() / 255.0

    def _load_uv(self, identity: int) -> np.ndarray:
        person = self.identities[identity]
        disk = None
        if self.uv_cache_dir is not None:
            disk = Path(self.uv_cache_dir) / f"uv_{person.identity}_{self.tex_size}.npy"
            if disk.is_file():
                try:
                    return np.load(disk)
                except (OSError, ValueError):
                    disk.unlink(missing_ok=True)  # a damaged cache entry is rebuilt below
        image = read_image(person.uv_path, size=(self.tex_size, self.tex_size))
        array = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if disk is not None:
            write_npy(disk, array, what="UV cache file")
        return array

    # ------------------------------------------------------------------ batches
    def training_batch(self, step: int, rank: int = 0) -> dict:
        """The batch of ``step`` for data-parallel ``rank`` (see the module docstring)."""
        seed = step_seed(self.seed, rank, step)
        gen = torch.Generator().manual_seed(seed)
        frame, image, bad = self._training_frame(int(torch.randint(len(self.train_indices), (1,), generator=gen)))
        mask = (image.amax(dim=-1) > 1.0 / 255.0).float() if self.sampler.mask_share > 0 else None
        xy = sample_pixels(self.sampler, self.K.height, self.K.width, step, self.landmarks_xy(frame), mask, gen)
        person = int(self.frames.identity[frame])
        return {
            "rays": pixel_rays(self.K, self.pose(frame), xy.float(), self.near, self.far, self.pixel_center),
            "rgb": gather_pixels(image, xy),  # [N, 3]
            "shape": torch.from_numpy(np.asarray(self.identities[person].shape_code, np.float32))[None],
            "uv": self.uv(person),
            "expression": torch.tensor([int(self.frames.expression[frame])]),
            "identity": torch.tensor([person]),
            "frame": torch.tensor([frame]),
            "seed": seed,
            "bad_frames": bad,
        }

    def _training_frame(self, start: int) -> tuple[int, Tensor, list[int]]:
        """Training frame number ``start`` and its image ``[H, W, 3]``; with ``skip_bad_images`` an
        unreadable one is replaced by the next training frame. Returns (frame, image, skipped frames)."""
        n, bad = len(self.train_indices), []
        for k in range(n if self.skip_bad_images else 1):
            frame = int(self.train_indices[(start + k) % n])
            if not self.readable(frame):
                bad.append(frame)
                continue
            try:
                return frame, self.image(frame), bad
            except FaceNerfError:
                if not self.skip_bad_images:
                    raise
                self._bad.add(frame)
                bad.append(frame)
        raise FaceNerfError(f"none of the {n} training images can be read (e.g. {self.frames.image_paths[bad[0]]}); "
                            "re-render the data with render.py")

    def frame_rays(self, frame: int, scale: float = 1.0) -> tuple[RayBundle, Intrinsics]:
        """All rays of ``frame`` at ``scale`` times the training resolution (row-major)."""
        K = self.K.scaled(scale) if scale != 1.0 else self.K
        return image_rays(K, self.pose(frame), self.near, self.far, scaled_pixel_center(self.pixel_center, scale)), K

    def frame_image(self, frame: int, K: Intrinsics) -> Tensor:
        """Ground truth of ``frame`` at the size of ``K`` (float32 [H, W, 3]).

        Raises a :class:`FaceNerfError` that names the file and the fix when it cannot be read.
        """
        try:
            return torch.from_numpy(read_image(self.frames.image_paths[frame], size=(K.width, K.height)))
        except FaceNerfError as err:
            if self.skip_bad_images:
                self._bad.add(frame)
            raise FaceNerfError(f"bad training data: {err}; replace or delete the file, or set "
                                "skip_bad_images = true to train without it") from err

    def mean_colour(self, max_frames: int = 64) -> Tensor:
        """Mean RGB over (up to ``max_frames``, evenly spread) training images: the baseline.

        With ``skip_bad_images`` unreadable images are left out.
        """
        picks = self.train_indices[np.linspace(0, len(self.train_indices) - 1,
                                               min(max_frames, len(self.train_indices))).astype(int)]
        means = []
        for i in picks:
            try:
                means.append(self.image(int(i)).reshape(-1, 3).mean(0))
            except FaceNerfError:
                if not self.skip_bad_images:
                    raise
        if not means:
            raise FaceNerfError("none of the sampled training images can be read; re-render the data with render.py")
        return torch.stack(means).mean(0)

    def validation_frames(self, n: int) -> list[int]:
        """``n`` held-out frames spread evenly over identities and expressions (deterministic).

        They come from the validation views when the data has its own (``render.py --val_views``),
        else from the test views (the original's val = test), else from the training views.
        """
        pool = next(p for p in (self.val_indices, self.test_indices, self.train_indices) if len(p))
        order = np.lexsort((self.frames.expression[pool], self.frames.identity[pool]))
        picks = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
        return [int(pool[order[i]]) for i in picks]


class _Steps(torch.utils.data.Dataset):
    """Map-style view ``i -> batch of step start + i`` (lets a DataLoader prefetch)."""

    def __init__(self, data: MoFaNeRFData, rank: int, start: int, stop: int):
        self.data, self.rank, self.start, self.stop = data, rank, start, stop

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __getitem__(self, i: int) -> dict:
        try:
            return self.data.training_batch(self.start + i, self.rank)
        except FaceNerfError as err:   # passed on as data: re-raised whole (one line) by StepBatches
            return {"error": str(err)}


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


class StepBatches:
    """``batches(step) -> batch`` for the Trainer, prefetched by ``num_workers`` processes.

    Asking for a step other than the next one (e.g. after a resume) restarts the prefetch
    from that step. Frames skipped as unreadable (``skip_bad_images``) are collected in
    :attr:`bad_images` (paths) and each is announced once through ``report``.
    """

    def __init__(self, data: MoFaNeRFData, max_steps: int, rank: int = 0, num_workers: int = 0, prefetch: int = 4,
                 report: Callable[[str], None] | None = None):
        self.data, self.max_steps, self.rank = data, max_steps, rank
        self.num_workers, self.prefetch = num_workers, prefetch
        self.report = report
        self.bad_images: set[str] = set()
        self._iterator, self._next = None, None

    def _start(self, step: int) -> None:
        loader = torch.utils.data.DataLoader(
            _Steps(self.data, self.rank, step, max(self.max_steps, step + 1)), batch_size=None, shuffle=False,
            num_workers=self.num_workers, worker_init_fn=_single_thread_worker if self.num_workers else None,
            prefetch_factor=self.prefetch if self.num_workers else None, persistent_workers=False)
        self._iterator, self._next = iter(loader), step

    def __call__(self, step: int) -> dict:
        if self.num_workers == 0:
            batch = self.data.training_batch(step, self.rank)
        else:
            if self._iterator is None or self._next != step:
                self._start(step)
            batch = next(self._iterator)
            self._next = step + 1
        if "error" in batch:
            self._iterator = None   # the next call restarts the prefetch
            raise FaceNerfError(batch["error"])
        self._note_bad(batch.pop("bad_frames", []))
        return batch

    def _note_bad(self, frames: list[int]) -> None:
        for frame in frames:
            path = str(self.data.frames.image_paths[frame])
            if path not in self.bad_images:
                self.bad_images.add(path)
                if self.report is not None:
                    self.report(f"note: skipping unreadable training image {path} (skip_bad_images = true)")


# ---------------------------------------------------------------------- from the FaceScape parser
def _sorted_ids(ids) -> list[str]:
    return sorted(ids, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


# The original code's valid-identity rule for real FaceScape (reference section 4): from the ids in
# numeric order it takes the first 359 and replaces 13 identities whose data was invalid by
# substitutes from the test range, then trains on the first person_num of that list.
FACESCAPE_INVALID_IDS = ("39", "52", "69", "295", "307", "413", "417", "587", "237", "353", "356", "440", "363")
FACESCAPE_SUBSTITUTE_IDS = ("615", "616", "619", "620", "622", "623", "624", "626", "627", "722", "725", "728",
                            "733")
ORIGINAL_ID_POOL = 359
VALID_ID_RULES = ("auto", "original", "first")
REAL_FACESCAPE_ABOVE = 600   # ids above this exist only in real FaceScape data (the substitutes are 615-733)


def identity_rule(ids, rule: str) -> str:
    """``original`` or ``first``: ``auto`` is ``original`` when the data holds ids above 600 (real FaceScape)."""
    if rule not in VALID_ID_RULES:
        raise FaceNerfError(f"valid_ids = {rule!r}: use one of {', '.join(VALID_ID_RULES)}")
    if rule != "auto":
        return rule
    return "original" if any(i.isdigit() and int(i) > REAL_FACESCAPE_ABOVE for i in ids) else "first"


def select_identities(ids, person_num: int, person_list=(), rule: str = "auto", where: str = "the data") -> list[str]:
    """The identities a run trains on, in order.

    ``person_list`` (the original's ``--personList``) names them. Otherwise ``first`` takes the
    first ``person_num`` ids in numeric order, and ``original`` applies the original code's rule
    (:data:`FACESCAPE_INVALID_IDS` replaced in place by :data:`FACESCAPE_SUBSTITUTE_IDS` among the
    first 359 ids; beyond 359 the next ids follow, each id once).
    """
    ordered = _sorted_ids(ids)
    if person_list:
        wanted = [str(i) for i in person_list]
        missing = [i for i in wanted if i not in ids]
        if missing:
            raise FaceNerfError(f"personList names identities not in {where}: {', '.join(missing)}; "
                                f"it holds {', '.join(ordered[:8])}{' ...' if len(ordered) > 8 else ''}")
        return list(dict.fromkeys(wanted))
    if identity_rule(ids, rule) == "first":
        return ordered[:person_num]
    substitute = dict(zip(FACESCAPE_INVALID_IDS, FACESCAPE_SUBSTITUTE_IDS))
    chosen: list[str] = []
    for position, identity in enumerate(ordered):
        if len(chosen) >= person_num:
            break
        if position < ORIGINAL_ID_POOL and identity in substitute:
            if substitute[identity] not in ids:
                raise FaceNerfError(f"valid_ids = original: identity {identity} is replaced by {substitute[identity]}, "
                                    f"which is not in {where}; add it, or set valid_ids = first or personList")
            identity = substitute[identity]
        if identity not in chosen:
            chosen.append(identity)
    return chosen


def every_nth_per_identity(frames: list, step: int) -> list:
    """The original's ``testskip``: every ``step``-th frame of each identity, in file order (0 or 1 = all)."""
    if step <= 1:
        return frames
    seen: dict[str, int] = {}
    kept = []
    for frame in frames:
        k = seen.get(frame.identity, 0)
        seen[frame.identity] = k + 1
        if k % step == 0:
            kept.append(frame)
    return kept


def _frame_arrays(frames: list, index_of: dict[str, int], is_test: bool, is_val: bool = False) -> dict:
    """Parallel arrays of parsed frame records (hidden 2D landmarks become NaN)."""
    lm = []
    for f in frames:
        if f.landmarks_2d is None:
            lm.append(None)
            continue
        xy = np.array(f.landmarks_2d, dtype=np.float32)
        if f.landmarks_visible is not None:
            xy[~np.asarray(f.landmarks_visible, dtype=bool)] = np.nan
        lm.append(xy)
    return {"paths": [f.image_path for f in frames], "identity": [index_of[f.identity] for f in frames],
            "expression": [f.expression for f in frames], "c2w": [f.c2w for f in frames],
            "is_test": [is_test] * len(frames), "is_val": [is_val] * len(frames), "lm": lm,
            "K": {f.intrinsics for f in frames}, "pixel_center": {f.pixel_center for f in frames}}


def _scaled_poses(c2w: np.ndarray, scale: float) -> np.ndarray:
    """The original's ``--scale``: camera translations ``[F, 3]`` divided by ``scale``."""
    if scale == 1.0:
        return c2w
    c2w = c2w.copy()
    c2w[:, :3, 3] /= scale
    return c2w


def _identity_data(record, shape_dim: int, source: str) -> IdentityData:
    if record.shape_code is None:
        raise FaceNerfError(f"no shape code for identity {record.identity}: factors_id.npy not found next to "
                            f"{source}; pass --shape_codes path/to/factors_id.npy")
    if record.shape_code.shape[-1] != shape_dim:
        raise FaceNerfError(f"shape codes have {record.shape_code.shape[-1]} dims but input_ch_shapeCodes = "
                            f"{shape_dim}; set input_ch_shapeCodes = {record.shape_code.shape[-1]}")
    if record.uv_texture is None:
        raise FaceNerfError(f"no neutral UV texture for identity {record.identity} (looked for {{id}}/1_neutral.jpg "
                            "next to the data); pass --uv_dir")
    return IdentityData(str(record.identity), record.shape_code, Path(record.uv_texture), record.landmarks_3d)


def _own_validation_frames(datadir, ids: list[str], options: dict, test) -> list:
    """Validation frames that are not test frames (``render.py --val_views``); [] when val = test."""
    from facenerf.data.facescape import parse_multiview

    try:
        val = parse_multiview(datadir, "val", ids=ids, **options)
    except FaceNerfError:
        return []
    test_paths = {f.image_path for f in test.frames(ids)} if test is not None else set()
    return [f for f in val.frames(ids) if f.image_path not in test_paths]


@dataclass(frozen=True)
class SourceSelection:
    """Which identities and views a run reads (the original's ``person_num``, ``personList``,
    ``testskip`` and ``scale``; see :func:`select_identities`)."""

    person_num: int = 300
    person_list: tuple = ()
    valid_ids: str = "auto"
    testskip: int = 1          # every N-th test / validation view of each identity
    pose_scale: float = 1.0    # camera translations are divided by this


def load_mofanerf_sources(datadir: str | Path, selection: SourceSelection, shape_dim: int, n_expressions: int,
                          shape_codes: str = "", landmarks: str = "", uv_dir: str = ""
                          ) -> tuple[FrameTable, list[IdentityData]]:
    """Frames (training, held-out test and separately rendered validation views) and identities
    chosen by ``selection``.

    Uses :func:`facenerf.data.facescape.parse_multiview` on ``datadir``; ``shape_codes``
    (factors_id.npy), ``landmarks`` (3D landmarks) and ``uv_dir`` (UV textures) are looked up
    next to ``datadir`` when empty. Every shape code must have ``shape_dim`` entries and every
    frame's expression index must be below ``n_expressions``.
    """
    from facenerf.data.facescape import parse_multiview

    options = dict(factors_path=shape_codes or None, landmarks_path=landmarks or None,
                   texture_roots=[uv_dir] if uv_dir else None)
    train = parse_multiview(datadir, "train", **options)
    ids = select_identities(train.identities, selection.person_num, selection.person_list, selection.valid_ids,
                            str(datadir))
    try:
        test = parse_multiview(datadir, "test", ids=ids, **options)
    except FaceNerfError:
        test = None  # no held-out views: validation falls back to training frames
    index_of = {identity: i for i, identity in enumerate(ids)}
    parts = [_frame_arrays(train.frames(ids), index_of, False)]
    if test is not None:
        parts.append(_frame_arrays(every_nth_per_identity(test.frames(ids), selection.testskip), index_of, True))
    val = every_nth_per_identity(_own_validation_frames(datadir, ids, options, test), selection.testskip)
    if val:
        parts.append(_frame_arrays(val, index_of, False, True))
    n_train = len(parts[0]["paths"])
    if n_train == 0:
        raise FaceNerfError(f"no training images found in {datadir} ({len(train.problems)} listed images "
                            "are missing); run render.py or fix --datadir")
    bad = [f for p in parts for f in p["expression"] if f >= n_expressions]
    if bad:
        raise FaceNerfError(f"frames use expression index {max(bad)} but n_expressions = {n_expressions}; "
                            f"set n_expressions = {max(bad) + 1}")
    sizes = set().union(*(p["K"] for p in parts))
    if len(sizes) != 1:
        raise FaceNerfError(f"images of different sizes/cameras in {datadir}: re-render all at one resolution")
    centres = set().union(*(p["pixel_center"] for p in parts))
    if len(centres) != 1:
        raise FaceNerfError(f"images in {datadir} were rendered with different pixel conventions "
                            f"(pixel_center {sorted(centres)}): re-render them all with one render.py --pixel_center")
    lm = [x for p in parts for x in p["lm"]]
    frames = FrameTable(
        image_paths=[x for p in parts for x in p["paths"]],
        identity=np.asarray([x for p in parts for x in p["identity"]], dtype=np.int64),
        expression=np.asarray([x for p in parts for x in p["expression"]], dtype=np.int64),
        c2w=_scaled_poses(np.stack([x for p in parts for x in p["c2w"]]).astype(np.float32), selection.pose_scale),
        is_test=np.asarray([x for p in parts for x in p["is_test"]], dtype=bool),
        is_val=np.asarray([x for p in parts for x in p["is_val"]], dtype=bool),
        intrinsics=sizes.pop(),
        landmarks_2d=np.stack(lm) if all(x is not None for x in lm) else None,
        pixel_center=centres.pop())
    people = [_identity_data(train.identities[i], shape_dim, str(datadir)) for i in ids]
    return frames, people
