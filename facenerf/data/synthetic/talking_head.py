"""Synthetic talking-head videos in the NeRFBlendShape dataset layout, with their ground truth.

``python -m facenerf.tools.talking_head --out data/talk --frames 200 --size 96``
renders one procedural subject (hair, neck, a torso that follows the head, a static room, a
fixed webcam) speaking: speech-like blendshape trajectories
(:mod:`facenerf.data.synthetic.speech`) over the :data:`BLENDSHAPES` and small head motion. It
writes (``i`` = frame index from 0, ``NAME`` = the output folder's name)::

    {out}/NAME.mp4                     the video (H.264, --fps)
    {out}/ori_imgs/i.jpg, i.lms        frames; 68 (x, y) landmarks per line "x y"
    {out}/gt_imgs/i.jpg                frames with the background replaced by bc.jpg (= frames here)
    {out}/head_imgs/i.jpg              head (face + hair) over bc.jpg: the head model's target
    {out}/head_masks/i.png             255 = head
    {out}/torso_imgs/i.png             RGBA: neck + torso without the head, alpha = their coverage
    {out}/parsing/i.png                RGB labels: head (0,0,255), neck (0,255,0), torso (255,0,0), white else
    {out}/bc.jpg                       the static background
    {out}/transforms_{train,val,all}.json   intrinsics + per-frame camera-to-head pose; last --test_num frames = val
    {out}/expr.npy [N, K], expr_max.npy / expr_min.npy [K + 1] (1.0 first), expr_names.txt
    {out}/ground_truth/                truth for evaluation (see :func:`write_ground_truth`)

Transforms follow RAD-NeRF/NeRFBlendShape (`focal_len`, `cx`, `cy`; per frame `img_id`,
`aud_id`, `transform_matrix`, `face_rect`, `lip_rect`) plus `h`, `w`, `fx`, `fy`, `near`,
`far`, `aabb` (head box in the head frame) and `fps`. `transform_matrix` is the camera-to-head
pose in the OpenGL convention, scene units (1 = 50 mm). ``expr_max``/``expr_min`` are
element-wise over the training frames with 1.0 prepended (the mean table's coefficient), as
the unofficial NeRFBlendShape code writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.config import option
from facenerf.data.synthetic import blendshapes as bs
from facenerf.data.synthetic import identity as syn
from facenerf.data.synthetic import speech
from facenerf.data.synthetic import talking_scene as ts
from facenerf.data.video import write_expressions, write_frame_files, write_transforms
from facenerf.errors import FaceNerfError
from facenerf.io import VIDEO_FPS, remove_stale_temporaries, write_image, write_json, write_npy, write_video


@dataclass(frozen=True)
class TalkingHeadSettings:
    """What :func:`generate_talking_head` writes (the options of ``python -m facenerf.tools.talking_head``)."""

    out: Path = option(Path("data/talk"), "output folder (the video is OUT/NAME.mp4)")
    frames: int = option(200, "number of frames")
    size: int = option(96, "frame width = height in pixels")
    fps: int = option(VIDEO_FPS, "frame rate of the video and the trajectories")
    test_num: int | None = option(None, "last frames held out (default: 10%, at least 1)")
    seed: int = option(0, "random seed of the performance, room and torso")
    subject: int = option(2, "procedural identity of the speaker (1, 2, ...; see identity.sample_identity)")
    texture_size: int = option(512, "albedo texture size in pixels")
    n_vertices: int = option(syn.DEFAULT_VERTICES, "approximate head vertex count", key="vertices")
    jpeg_quality: int = option(95, "JPEG quality of the frames (1-100)")
    background: Path | None = option(None, "an image behind the speaker, resized to the frame (default: a "
                                           "procedural room drawn from --seed)")
    dataset: bool = option(True, "write the dataset layout; false writes only the video and the ground truth")
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.background is not None:
            object.__setattr__(self, "background", Path(self.background))

    @property
    def n_test(self) -> int:
        return max(1, round(0.1 * self.frames)) if self.test_num is None else int(self.test_num)

    def check(self) -> None:
        if self.frames < 2:
            raise FaceNerfError(f"--frames must be at least 2, got {self.frames}")
        if not 32 <= self.size <= 2048:
            raise FaceNerfError(f"--size must be 32..2048 pixels, got {self.size}")
        if not 1 <= self.n_test < self.frames:
            raise FaceNerfError(f"--test_num must be 1..{self.frames - 1} (frames - 1), got {self.n_test}")
        if self.fps < 1 or self.subject < 1:
            raise FaceNerfError("--fps and --subject must be at least 1")
        if self.background is not None and not self.background.is_file():
            raise FaceNerfError(f"--background image not found: {self.background} (check the path)")


@dataclass
class Performance:
    """The animation: per-frame coefficients, head motion and poses."""

    coefficients: np.ndarray   # [N, K] in [0, 1]
    euler_deg: np.ndarray      # [N, 3] (pitch, yaw, roll)
    shift_mm: np.ndarray       # [N, 3]
    head_pose: np.ndarray      # [N, 4, 4] head-to-world
    torso_pose: np.ndarray     # [N, 4, 4] torso-to-world
    phrases: list              # [(start, end)] seconds of speech


def perform(frames: int, fps: float, seed: int) -> Performance:
    """The deterministic animation of a clip (same ``seed`` -> same performance)."""
    rng = np.random.default_rng([int(seed), 11])
    settings = speech.SpeechSettings(fps=float(fps))
    coefficients, spans = speech.expression_track(frames, rng, settings)
    euler, shift = speech.head_motion(frames, rng, spans, settings)
    heads = np.stack([ts.head_pose(e, s) for e, s in zip(euler, shift)])
    torsos = np.stack([ts.torso_pose(e, s) for e, s in zip(euler, shift)])
    return Performance(coefficients, euler, shift, heads, torsos, spans)


def project(points_world: np.ndarray, camera_c2w: np.ndarray, K) -> np.ndarray:
    """``[N, 2]`` (x, y) pixels of world points seen by an OpenGL camera (no half-pixel offset)."""
    cam = (points_world - camera_c2w[:3, 3]) @ camera_c2w[:3, :3]
    depth = -cam[:, 2]
    return np.stack([K.cx + K.fx * cam[:, 0] / depth, K.cy - K.fy * cam[:, 1] / depth], 1)


@dataclass
class _Subject:
    """The fixed parts of a clip: head grid and identity, texture, torso, renderer inputs."""

    topology: object
    chart: tuple
    shape: object
    texture: np.ndarray
    neck: np.ndarray           # [V] bool
    torso: ts.Torso
    landmark_index: np.ndarray  # [68]

    @classmethod
    def make(cls, cfg: TalkingHeadSettings) -> "_Subject":
        topology = syn.head_topology(cfg.n_vertices)
        chart = topology.vertex_chart()
        person = syn.sample_identity(cfg.seed, cfg.subject)
        neutral = bs.head_vertices(topology, person.shape, np.zeros(len(bs.BLENDSHAPES)), chart)
        torso = ts.Torso.make(np.random.default_rng([int(cfg.seed), 12]))
        return cls(topology, chart, person.shape, syn.texture_image(person, topology, cfg.texture_size),
                   ts.neck_vertices(neutral, chart[0]), torso, syn.sx.landmark_indices(topology))


class _Recorder:
    """Per-frame ground truth collected while rendering."""

    def __init__(self, n: int):
        self.landmarks_2d = np.zeros((n, 68, 2))
        self.landmarks_3d = np.zeros((n, 68, 3))   # head frame, scene units
        self.box = np.array([np.inf] * 3 + [-np.inf] * 3)


def _render_frames(cfg: TalkingHeadSettings, subject: _Subject, perf: Performance, background: np.ndarray,
                   record: _Recorder):
    """Yield the video frames (float ``[S, S, 3]``), writing every per-frame file on the way."""
    from tqdm import tqdm

    K, camera = ts.webcam(cfg.size)
    renderer = ts.TalkingHeadRenderer(K, camera, subject.topology, subject.texture, subject.neck, subject.torso)
    faces = subject.topology.faces()
    torso_local = subject.torso.vertices / ts.MM_PER_UNIT + ts.TORSO_CENTRE
    try:
        for i in tqdm(range(cfg.frames), desc="talking head", unit="frame", disable=None if cfg.progress else True):
            vertices = bs.head_vertices(subject.topology, subject.shape, perf.coefficients[i], subject.chart)
            local = vertices / ts.MM_PER_UNIT
            world = ts.transform(local, perf.head_pose[i])
            layers = renderer.render(world, ts.shading(vertices, faces), ts.transform(torso_local, perf.torso_pose[i]))
            head_part = local[~subject.neck]
            record.box = np.concatenate([np.minimum(record.box[:3], head_part.min(0)),
                                         np.maximum(record.box[3:], head_part.max(0))])
            record.landmarks_3d[i] = local[subject.landmark_index]
            record.landmarks_2d[i] = project(world[subject.landmark_index], camera, K)
            frame = layers.composite(background)
            write_image(cfg.out / "ground_truth" / "labels" / f"{i}.png", layers.labels)
            if cfg.dataset:
                write_frame_files(cfg.out, i, frame, layers.labels, background, layers.torso_straight(),
                                  record.landmarks_2d[i], cfg.jpeg_quality)
            yield frame
    finally:
        renderer.close()


def camera_to_head(perf: Performance, camera_c2w: np.ndarray) -> np.ndarray:
    """``[N, 4, 4]`` camera-to-head poses: the fixed webcam seen from the moving head."""
    return np.linalg.inv(perf.head_pose) @ camera_c2w[None]


def write_ground_truth(cfg: TalkingHeadSettings, perf: Performance, record: _Recorder, camera_c2w: np.ndarray,
                       K) -> None:
    """``ground_truth/``: the truth behind the video, for evaluating trackers and models.

    ``coefficients.npy [N, K]``, ``euler_deg.npy [N, 3]`` (pitch, yaw, roll),
    ``shift_mm.npy [N, 3]``, ``head_pose.npy [N, 4, 4]`` (head-to-world),
    ``camera_to_head.npy [N, 4, 4]`` (= each frame's ``transform_matrix``),
    ``landmarks_2d.npy [N, 68, 2]`` (x, y) pixels, ``landmarks_3d.npy [N, 68, 3]`` (head frame,
    scene units), ``labels/i.png`` (0 background, 1 head, 2 neck, 3 torso) and ``info.json``
    (settings, names, camera, phrases).
    """
    gt = cfg.out / "ground_truth"
    write_npy(gt / "coefficients.npy", perf.coefficients.astype(np.float32))
    write_npy(gt / "euler_deg.npy", perf.euler_deg)
    write_npy(gt / "shift_mm.npy", perf.shift_mm)
    write_npy(gt / "head_pose.npy", perf.head_pose)
    write_npy(gt / "camera_to_head.npy", camera_to_head(perf, camera_c2w))
    write_npy(gt / "landmarks_2d.npy", record.landmarks_2d)
    write_npy(gt / "landmarks_3d.npy", record.landmarks_3d)
    info = {"generator": "facenerf.data.synthetic.talking_head", "frames": cfg.frames, "size": cfg.size,
            "fps": cfg.fps, "seed": cfg.seed, "subject": cfg.subject, "test_num": cfg.n_test,
            "blendshapes": list(bs.BLENDSHAPES), "labels": list(ts.LABEL_NAMES),
            "intrinsics": {"fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy, "w": K.width, "h": K.height},
            "camera_c2w_world": camera_c2w.tolist(), "units": "scene units, 1 = 50 mm",
            "rotation": "head R = Rz(roll) @ Ry(yaw) @ Rx(pitch)", "phrases_s": [list(p) for p in perf.phrases]}
    write_json(gt / "info.json", info, indent=1)


def room(cfg: TalkingHeadSettings) -> np.ndarray:
    """The static background ``[S, S, 3]`` float32 in [0, 1]: ``cfg.background`` resized (cropped to
    a square about its centre first), else the procedural room of ``cfg.seed``."""
    if cfg.background is None:
        return ts.background_image(cfg.size, np.random.default_rng([int(cfg.seed), 13]))
    from facenerf.io import read_image, resize_image

    image = read_image(cfg.background)                  # one-line error when missing or unreadable
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize_image(image[top:top + side, left:left + side], (cfg.size, cfg.size)).astype(np.float32)


def generate_talking_head(cfg: TalkingHeadSettings) -> dict:
    """Render the clip and write the video, the dataset layout and the ground truth; returns a summary."""
    cfg.check()
    background = room(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cfg.out, recursive=True)       # left by a killed earlier run
    subject = _Subject.make(cfg)
    perf = perform(cfg.frames, cfg.fps, cfg.seed)
    K, camera = ts.webcam(cfg.size)
    record = _Recorder(cfg.frames)
    video = cfg.out / f"{cfg.out.name}.mp4"
    write_video(video, _render_frames(cfg, subject, perf, background, record), fps=cfg.fps)
    write_ground_truth(cfg, perf, record, camera, K)
    c2w = camera_to_head(perf, camera)
    distance = np.linalg.norm(c2w[:, :3, 3], axis=1)
    radius = float(np.abs(record.box).max()) * 1.1
    if cfg.dataset:
        write_image(cfg.out / "bc.jpg", background, cfg.jpeg_quality)
        write_transforms(cfg.out, K, list(zip(range(cfg.frames), c2w, record.landmarks_2d)), cfg.n_test, cfg.fps,
                         max(distance.min() - radius, 0.1), distance.max() + radius, record.box)
        write_expressions(cfg.out, perf.coefficients, range(cfg.frames - cfg.n_test), bs.BLENDSHAPES)
    return {"video": str(video), "frames": cfg.frames, "train": cfg.frames - cfg.n_test, "val": cfg.n_test,
            "blendshapes": list(bs.BLENDSHAPES), "out": str(cfg.out)}
