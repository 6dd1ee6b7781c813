"""The video-to-dataset pipeline behind ``data_utils/process.py``: named, resumable, timed stages.

Stages, in order (outputs under ``out/``; intermediate results under ``out/track/``):

========== ============================================================================
frames     ``ori_imgs/<i>.jpg`` at ``fps``; ``track/frames.json``
landmarks  ``track/landmarks.npz`` (dlib, carried or followed through detection misses, smoothed)
tracking   ``track/head.npz``: focal length, per-frame pose and coefficients
masks      ``bc.jpg``, ``head_imgs/``, ``head_masks/``, ``parsing/``, ``torso_imgs/``, ``gt_imgs/``
dataset    ``transforms_{all,train,val}.json``, ``expr.npy``, ``expr_max.npy``, ``expr_min.npy``,
           ``expr_names.txt``, ``ori_imgs/<i>.lms``
preview    ``preview.mp4``
========== ============================================================================

``track/stages.json`` records, per stage, a key (a hash of the settings it depends on and of
the previous stage's key) and its duration. A rerun skips every stage whose key is unchanged
and finished, resumes an unfinished stage with the same key (per-frame files already written
are kept: every write is atomic), and redoes a stage whose key changed, with all later stages.
``report.json`` sums up the run (frames kept, carried and dropped, focal length, timings).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facenerf.config import option
from facenerf.errors import FaceNerfError
from facenerf.io import VIDEO_FPS, remove_stale_temporaries, write_json
from facenerf.preprocess.video.flow import CORNER_WINDOW

STAGES = ("frames", "landmarks", "tracking", "masks", "dataset", "preview")
STAGE_OUTPUTS = {
    "frames": ["ori_imgs", "track/frames.json"],
    "landmarks": ["track/landmarks.npz"],
    "tracking": ["track/head.npz"],
    "masks": ["bc.jpg", "head_imgs", "head_masks", "parsing", "torso_imgs", "gt_imgs", "track/plate.npz"],
    "dataset": ["transforms_all.json", "transforms_train.json", "transforms_val.json", "expr.npy", "expr_max.npy",
                "expr_min.npy", "expr_names.txt"],
    "preview": ["preview.mp4"],
}


OPTIONAL_KEYS = ("expr_fps", "stabilise")  # stage-key settings that count only when set
# longest frame side kept (px). A 4K video's frames cost 8.7 s each in the masks stage and 3.7 MB on disk
# (benchmarks/results/video_inputs_cpu.md); NeRFBlendShape trains at 512 px or less.
MAX_SIDE = 1024


@dataclass
class ProcessSettings:
    """Everything ``data_utils/process.py`` can set (its options: the fields declared with ``option``)."""

    video: Path
    out: Path
    fps: float = option(float(VIDEO_FPS), "frame rate the video is resampled to")
    test_num: int | None = option(None, "last frames held out (default: 10%, at least 1)")
    expr_file: Path | None = option(None, "per-frame coefficients from another tracker (.csv or .npy, one row "
                                          "per frame at --fps, or at --expr_fps)")
    expr_fps: float | None = option(None, "rows per second of --expr_file when it was recorded at another rate "
                                          "(e.g. 60 for Live Link Face): resampled in time to --fps")
    upsample: int | None = option(None, "dlib HOG up-sampling (default: from the frame size)")
    max_gap: int = option(5, "longest detection miss carried over, in frames")
    max_follow: int = option(50, "longest detection miss bridged by following the face from frame to frame, in "
                                 "frames (0: off)")
    smooth_landmarks: float = option(0.7, "temporal smoothing sigma of the landmarks (frames)")
    smooth_pose: float = option(1.0, "temporal smoothing sigma of the pose (frames)")
    smooth_expression: float = option(0.7, "temporal smoothing sigma of the expression (frames)")
    focal: float | None = option(None, "focal length in pixels of the video (default: estimated for the clip)")
    mask_samples: int = option(24, "frames segmented to build the background plate")
    min_frames: int = option(50, "fewest frames with a face to accept")
    preview: bool = option(True, "write preview.mp4")
    jpeg_quality: int = option(95, "JPEG quality of the frames (1-100)")
    max_side: int = option(MAX_SIDE, "frames whose longer side exceeds this are scaled down to it as they are "
                                     "extracted (0: keep the video's size)")
    stabilise: bool = option(False, "hand-held camera: warp every frame onto the first frame's background (a "
                                    "turning camera is undone; a moving one is not)")
    progress: bool = True
    predictor: str | None = option(None, "dlib 68-point model file (default: face_recognition_models)")
    brow_flow: bool = option(True, "follow the eyebrows by optical flow from a reference frame (dlib's brow "
                                   "points barely follow raised or lowered brows)")
    stable_flow: bool = option(True, "follow the nose and eye corners (the points the pose is solved from) by "
                                     "optical flow from a reference frame (dlib moves them with the brows and mouth)")
    corner_window: float = option(CORNER_WINDOW, "flow window at the outer eye corners, as a fraction of the face width "
                                         "(0: as wide as the other points'; a wide one slides with the eye as the "
                                         "head turns)")

    def __post_init__(self) -> None:
        """Refuse out-of-range options when they are parsed, before any stage runs."""
        checks = (("fps", self.fps > 0, "positive"),
                  ("expr_fps", self.expr_fps is None or self.expr_fps > 0, "positive"),
                  ("test_num", self.test_num is None or self.test_num >= 1, "at least 1"),
                  ("upsample", self.upsample is None or self.upsample >= 0, "0 or more"),
                  ("max_gap", self.max_gap >= 0, "0 or more"),
                  ("max_follow", self.max_follow >= 0, "0 or more (0: off)"),
                  ("smooth_landmarks", self.smooth_landmarks >= 0, "0 or more"),
                  ("smooth_pose", self.smooth_pose >= 0, "0 or more"),
                  ("smooth_expression", self.smooth_expression >= 0, "0 or more"),
                  ("focal", self.focal is None or self.focal > 0, "positive"),
                  ("mask_samples", self.mask_samples >= 1, "at least 1"),
                  ("min_frames", self.min_frames >= 1, "at least 1"),
                  ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "between 1 and 100"),
                  ("max_side", self.max_side == 0 or self.max_side >= 64, "0 (no limit) or at least 64"),
                  ("corner_window", 0 <= self.corner_window < 1, "in [0, 1): a fraction of the face width"))
        for name, ok, rule in checks:
            if not ok:
                raise FaceNerfError(f"--{name} must be {rule}, got {getattr(self, name)}")

    def flow_groups(self) -> tuple[str, ...]:
        """The landmark groups followed by optical flow."""
        return tuple(name for name, on in (("brows", self.brow_flow), ("stable", self.stable_flow)) if on)

    def key(self, *names: str) -> str:
        """The settings ``names`` as a stage key; an option still at its "off" value (``None``,
        False) is left out, so adding such an option keeps the stages done before it valid."""
        values = {name: str(getattr(self, name)) for name in names
                  if name not in OPTIONAL_KEYS or getattr(self, name) not in (None, False)}
        return json.dumps(values, sort_keys=True)


@dataclass
class StageLog:
    """``track/stages.json``: key, completion and duration of every stage."""

    path: Path
    entries: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "StageLog":
        try:
            return cls(path, json.loads(path.read_text()) if path.is_file() else {})
        except (OSError, json.JSONDecodeError):
            return cls(path, {})

    def save(self) -> None:
        write_json(self.path, self.entries, indent=1)


def _hash(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


class VideoProcessor:
    """Runs the stages for one video (see the module docstring)."""

    def __init__(self, settings: ProcessSettings):
        self.s = settings
        self.out = settings.out
        self.track = settings.out / "track"
        self.track.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(settings.out, recursive=True)   # left by a killed earlier run
        self.log = StageLog.load(self.track / "stages.json")
        self.notes: list[str] = []
        self._previous_key = ""
        self.ran: list[str] = []

    # ------------------------------------------------------------------ stage bookkeeping
    def _stage(self, name: str, settings_key: str, body) -> None:
        key = _hash(self._previous_key, settings_key)
        self._previous_key = key
        entry = self.log.entries.get(name, {})
        outputs = [self.out / p for p in STAGE_OUTPUTS[name]]
        if entry.get("key") == key and entry.get("done") and all(p.exists() for p in outputs):
            return
        if entry.get("key") != key:
            for path in outputs:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        self.log.entries[name] = {"key": key, "done": False}
        self.log.save()
        start = time.perf_counter()
        body()
        self.log.entries[name] = {"key": key, "done": True, "seconds": round(time.perf_counter() - start, 2)}
        self.log.save()
        self.ran.append(name)

    def note(self, message: str) -> None:
        """Say something the user should know (printed at once, kept in the report)."""
        self.notes.append(message)
        print(f"note: {message}", flush=True)

    def frame_paths(self) -> list[Path]:
        info = json.loads((self.track / "frames.json").read_text())
        return [self.out / "ori_imgs" / f"{i}.jpg" for i in range(info["n_frames"])]

    # ------------------------------------------------------------------------- stages
    def frames(self) -> None:
        from facenerf.preprocess.video.frames import extract_frames, probe_video

        video = probe_video(self.s.video)          # one line for a missing file or a non-video
        stat = self.s.video.stat()
        source = f"{self.s.video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if video.output_size(self.s.max_side) != (video.width, video.height):  # the limit changes these frames
            source += f"|max_side {self.s.max_side}"
        if video.transfer:                         # HDR frames are converted to SDR as they are decoded
            source += "|sdr"
        if video.interlaced:                       # and interlaced ones deinterlaced
            source += "|deinterlaced"

        partial = self.track / "stabilising"  # present while frames are being warped in place

        def body():
            if partial.exists():  # a warp was cut short: its frames are a mix, so extract them again
                shutil.rmtree(self.out / "ori_imgs", ignore_errors=True)
            done = extract_frames(self.s.video, self.out / "ori_imgs", self.s.fps, self.s.jpeg_quality, self.s.progress,
                                  self.s.max_side)
            record = asdict(done)
            if self.s.stabilise and done.n_frames >= max(2, self.s.min_frames):  # a short clip is refused below
                self.track.mkdir(parents=True, exist_ok=True)
                partial.touch()
                record["stabilised"] = self._stabilise(done.n_frames, done.width, done.height)
            write_json(self.track / "frames.json", record)
            partial.unlink(missing_ok=True)

        self._stage("frames", source + self.s.key("fps", "jpeg_quality", "stabilise"), body)
        info = json.loads((self.track / "frames.json").read_text())
        if "stabilised" in info:
            held = info["stabilised"]
            self.note(f"stabilised: every frame warped onto the first frame's background (largest shift "
                      f"{held['largest_shift_px']:.1f} px" + (f"; {held['kept_previous']} frame(s) without enough "
                      "background corners kept the previous frame's warp" if held["kept_previous"] else "") + ")")
        if info["n_frames"] < self.s.min_frames:
            raise FaceNerfError(f"{self.s.video} is too short: {info['n_frames']} frames at {self.s.fps:g} fps; "
                                f"at least {self.s.min_frames} are needed (--min_frames), minutes are better")
        if info.get("shown_size"):
            (w, h), (tw, th) = info["shown_size"], (info["width"], info["height"])
            self.note(f"frames scaled down from {w}x{h} to {tw}x{th} (--max_side {self.s.max_side}; 0 keeps the "
                      "video's size, at the cost of much slower masks and larger files)")
        if info.get("deinterlaced"):
            self.note(f"{self.s.video.name} is interlaced; its frames were deinterlaced (bwdif)")
        if info.get("hdr"):
            self.note(f"{self.s.video.name} is HDR video ({info['hdr']}); its frames were converted to SDR (BT.709, the "
                      "HDR reference white at full scale: brighter highlights clip)")
        ratio = info.get("vfr_ratio")
        if ratio is not None and ratio > 0.01:
            self.note(f"{self.s.video.name} has a variable frame rate ({100 * ratio:.0f}% of its frames arrive "
                              f"off a regular beat); it was resampled to a constant {self.s.fps:g} fps")
        elif info.get("source_fps") and abs(info["source_fps"] - self.s.fps) > 0.01:
            self.note(f"{self.s.video.name} runs at {info['source_fps']:g} fps; resampled to {self.s.fps:g} fps")
        self.info = info

    def focal(self) -> float | None:
        """``--focal`` (pixels of the video) in pixels of the extracted frames, which may be scaled down."""
        if self.s.focal is None or not self.info.get("shown_size"):
            return self.s.focal
        return self.s.focal * self.info["width"] / self.info["shown_size"][0]

    def _stabilise(self, n_frames: int, width: int, height: int) -> dict:
        """Warp the extracted frames onto the first frame's background (:mod:`.stabilise`); the
        speaker, as the plate's segmentation finds them in the first frame, is left out of it."""
        from facenerf.io import read_image
        from facenerf.preprocess.video.landmarks import VideoFaceDetector, choose_upsample
        from facenerf.preprocess.video.masks import dilated, person_region
        from facenerf.preprocess.video.stabilise import SPEAKER_MARGIN, stabilise_frames

        upsample = self.s.upsample if self.s.upsample is not None else choose_upsample(width, height)
        first = read_image(self.out / "ori_imgs" / "0.jpg")
        found = VideoFaceDetector(upsample, self.s.predictor).detect(first, None)
        speaker = None if found is None else dilated(person_region(first, found[2]), SPEAKER_MARGIN)
        held = stabilise_frames(self.out / "ori_imgs", n_frames, speaker, self.s.jpeg_quality, self.s.progress)
        return {"largest_shift_px": round(held.largest_shift(width, height), 2), "kept_previous": held.kept_previous(),
                "transforms": np.round(held.transforms, 6).tolist(), "inliers": held.inliers.tolist()}

    def landmarks(self):
        from facenerf.preprocess.video.landmarks import LandmarkTrack, choose_upsample, track_landmarks

        upsample = self.s.upsample if self.s.upsample is not None else choose_upsample(self.info["width"],
                                                                                         self.info["height"])

        def body():
            track = track_landmarks(self.frame_paths(), upsample, self.s.max_gap, self.s.smooth_landmarks,
                                    self.s.predictor, self.s.progress, self.s.flow_groups(), self.s.max_follow,
                                    self.s.corner_window)
            track.save(self.track / "landmarks.npz")

        self._stage("landmarks", f"{upsample}|" + self.s.key("max_gap", "max_follow", "smooth_landmarks", "predictor",
                                                          "brow_flow", "stable_flow", "corner_window"),
                    body)
        track = LandmarkTrack.load(self.track / "landmarks.npz")
        kept = int(track.valid.sum())
        if 0 < kept < len(track.valid):
            self.note(f"{len(track.valid) - kept} of {len(track.valid)} frames show no face and were dropped "
                      f"(first: frame {int(np.flatnonzero(~track.valid)[0])}); see report.json")
        if kept == 0:
            raise FaceNerfError(f"no face found in any of the {len(track.valid)} frames of {self.s.video.name}; "
                                "use a video that shows one face, frontal and well lit (or try --upsample 1)")
        if kept < self.s.min_frames:
            raise FaceNerfError(f"only {kept} of {len(track.valid)} frames show a face; at least {self.s.min_frames} "
                                "are needed (--min_frames)")
        return track

    def tracking(self, landmarks):
        from facenerf.preprocess.video.tracking import HeadTrack, track_head

        def body():
            track_head(landmarks.landmarks, landmarks.valid, self.info["width"], self.info["height"], self.focal(),
                       self.s.smooth_pose, self.s.smooth_expression, self.s.progress).save(self.track / "head.npz")

        self._stage("tracking", self.s.key("focal", "smooth_pose", "smooth_expression"), body)
        return HeadTrack.load(self.track / "head.npz")

    def masks(self, landmarks, head) -> None:
        from tqdm import tqdm

        from facenerf.data.video import write_frame_files
        from facenerf.io import read_image
        from facenerf.preprocess.video import masks as mk

        settings = mk.MaskSettings(samples=self.s.mask_samples)
        paths = self.frame_paths()
        folders = ("gt_imgs", "head_imgs", "head_masks", "parsing", "torso_imgs")
        suffix = {"gt_imgs": "jpg", "head_imgs": "jpg"}

        def done(i: int) -> bool:
            return all((self.out / f / f"{i}.{suffix.get(f, 'png')}").is_file() for f in folders)

        def body():
            plate = self._plate(paths, landmarks, settings)
            for i in tqdm(np.flatnonzero(landmarks.valid), desc="masks", unit="frame",
                          disable=None if self.s.progress else True):
                if done(i):
                    continue
                image = read_image(paths[i])
                cut = mk.frame_cut(head, i, self.info["width"], self.info["height"], settings)
                labels = mk.frame_labels(image, landmarks.landmarks[i], plate, settings, cut)
                write_frame_files(self.out, int(i), image, labels, plate.image, mk.torso_layer(image, labels), None,
                                  self.s.jpeg_quality, write_frame=False)

        self._stage("masks", "neck cut|" + self.s.key("mask_samples", "jpeg_quality"), body)

    def _plate(self, paths, landmarks, settings):
        from facenerf.io import read_image, write_npz, write_image
        from facenerf.preprocess.video.masks import MOVING_BACKGROUND, MOVING_CAMERA_PX, Plate, background_plate

        stored = self.track / "plate.npz"
        if stored.is_file():
            with np.load(stored, allow_pickle=False) as data:
                change = float(data["change"]) if "change" in data.files else 0.0
                shift = float(data["camera_shift"]) if "camera_shift" in data.files else 0.0
                return Plate(data["image"], data["known"], data["covered"], change, shift)
        kept = np.flatnonzero(landmarks.valid)
        chosen = kept[np.linspace(0, len(kept) - 1, min(settings.samples, len(kept))).astype(int)]
        plate = background_plate([read_image(paths[i]) for i in chosen], [landmarks.landmarks[i] for i in chosen])
        cure = "" if self.s.stabilise else "; for a hand-held camera, rerun with --stabilise"
        if plate.camera_shift > MOVING_CAMERA_PX:
            self.note(f"the camera moved: the background shifts by up to {plate.camera_shift:.1f} px across the plate's "
                      "sample frames, and NeRFBlendShape needs a fixed camera" +
                      (cure or " (what is left after --stabilise: a camera that travels, not only turns)"))
        elif plate.change > MOVING_BACKGROUND:
            self.note(f"the background changes over the clip (by {plate.change:.3f} of the range, typically; a still "
                      "camera gives under 0.004): NeRFBlendShape needs a fixed camera and a still background, and "
                      "the background plate (bc.jpg) of this clip is a blur" + cure)
        write_image(self.out / "bc.jpg", plate.image, self.s.jpeg_quality)
        write_npz(stored, image=plate.image, known=plate.known, covered=plate.covered, change=np.float32(plate.change),
                  camera_shift=np.float32(plate.camera_shift))
        return plate

    def _coefficients(self, head, n_frames: int):
        from facenerf.preprocess.video.exprfile import load_expr_file
        from facenerf.preprocess.video.tracking import landmark_model

        if self.s.expr_file is None:
            return head.coefficients, list(landmark_model()[2])
        return load_expr_file(self.s.expr_file, n_frames, fps=self.s.fps, expr_fps=self.s.expr_fps)

    def dataset(self, landmarks, head) -> None:
        from facenerf.data.video import write_expressions
        from facenerf.io import write_text

        kept = np.flatnonzero(landmarks.valid)
        n_test = self.n_test(len(kept))
        expr_source = ""
        if self.s.expr_file is not None:
            stat = Path(self.s.expr_file).stat() if Path(self.s.expr_file).is_file() else None
            expr_source = f"{Path(self.s.expr_file).resolve()}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"

        def body():
            table, names = self._coefficients(head, len(landmarks.valid))
            table = np.where(landmarks.valid[:, None], table, 0.0)
            for old in (self.out / "ori_imgs").glob("*.lms"):
                old.unlink()
            for i in kept:
                write_text(self.out / "ori_imgs" / f"{i}.lms",
                                  "".join(f"{x:.2f} {y:.2f}\n" for x, y in landmarks.landmarks[i]))
            write_head_transforms(self.out, head, landmarks.landmarks, kept, n_test, self.s.fps, self.info["width"],
                                  self.info["height"], say=self.note)
            write_expressions(self.out, table, kept[: len(kept) - n_test], names or [f"coef_{k}" for k in
                                                                                      range(table.shape[1])])

        self._stage("dataset", expr_source + self.s.key("test_num", "expr_file", "fps", "expr_fps"), body)

    def n_test(self, kept: int) -> int:
        n_test = max(1, round(0.1 * kept)) if self.s.test_num is None else int(self.s.test_num)
        if not 1 <= n_test < kept:
            raise FaceNerfError(f"--test_num {n_test} must be between 1 and {kept - 1}: "
                                f"{kept} frames show a face")
        return n_test

    def preview(self, landmarks, head) -> None:
        from facenerf.preprocess.video.headpose import camera_matrix
        from facenerf.preprocess.video.preview import write_preview

        def body():
            table, names = self._coefficients(head, len(landmarks.valid))
            kmat = camera_matrix(head.focal, self.info["width"], self.info["height"])
            write_preview(self.out / "preview.mp4", self.frame_paths(), landmarks.landmarks, landmarks.valid,
                          head.rvecs, head.tvecs, kmat, table, names, self.s.fps, self.s.progress)

        self._stage("preview", self.s.key("expr_file", "expr_fps"), body)

    # ---------------------------------------------------------------------------- run
    def run(self) -> dict:
        """Run (or resume) every stage; returns the report (also written to ``report.json``)."""
        from facenerf.preprocess.video.exprfile import load_expr_file

        self.frames()
        if self.s.expr_file is not None:                    # check it before the slow stages
            load_expr_file(self.s.expr_file, self.info["n_frames"], say=self.note, fps=self.s.fps,
                           expr_fps=self.s.expr_fps)
        landmarks = self.landmarks()
        self.n_test(int(landmarks.valid.sum()))
        head = self.tracking(landmarks)
        self.masks(landmarks, head)
        self.dataset(landmarks, head)
        if self.s.preview:
            self.preview(landmarks, head)
        return self.report(landmarks, head)

    def report(self, landmarks, head) -> dict:
        valid = landmarks.valid
        dropped = np.flatnonzero(~valid)
        report = {
            "video": str(self.s.video), "out": str(self.out), "fps": self.s.fps,
            "frames": int(len(valid)), "kept": int(valid.sum()), "detected": int(landmarks.detected.sum()),
            "carried": int(landmarks.carried.sum()), "dropped": int(len(dropped)),
            "dropped_frames": dropped.tolist(), "test_num": self.n_test(int(valid.sum())),
            "focal_px": round(head.focal, 2), "width": self.info["width"], "height": self.info["height"],
            "pnp_rmse_px": round(float(np.nanmean(head.rmse)), 3), "vfr_ratio": self.info.get("vfr_ratio"),
            "expressions": ("file " + str(self.s.expr_file) + (f" at {self.s.expr_fps:g} rows/s, resampled"
                                                                if self.s.expr_fps else "")) if self.s.expr_file else "fitted",
            "stage_seconds": {name: self.log.entries.get(name, {}).get("seconds") for name in STAGES},
            "ran": self.ran, "notes": self.notes,
        }
        write_json(self.out / "report.json", report, indent=1)
        return report


def write_head_transforms(out: Path, head, landmarks: np.ndarray, kept: np.ndarray, n_test: int, fps: float,
                          width: int, height: int, say=None) -> None:
    """``transforms_{all,train,val}.json`` of the ``kept`` frames from a :class:`~tracking.HeadTrack`.

    ``landmarks [N, 68, 2]`` give each frame's face and lip rectangles; the last ``n_test`` kept
    frames are held out. The ``aabb`` hint (from which training sizes its scene cube) is the
    procedural head's box grown, in x and y, to hold the outline of the head masks
    (``head_masks/``, when there): hair above or beside the head. Near and far bound that box
    over every camera distance of the clip. ``say(note)`` hears how far the masks grew the box.
    """
    from facenerf.core.cameras import Intrinsics
    from facenerf.data.video import write_transforms
    from facenerf.preprocess.video.tracking import MM_PER_UNIT, head_box, scene_box

    K = Intrinsics(width, height, head.focal, head.focal, width / 2.0, height / 2.0)
    procedural = head_box()
    box = scene_box(procedural, mask_outline(out, head, kept, K))
    grown = (procedural[:3] - box[:3]).max(initial=0.0), (box[3:] - procedural[3:]).max(initial=0.0)
    if say is not None and max(grown) * MM_PER_UNIT >= 5.0:
        say(f"the head masks reach up to {max(grown) * MM_PER_UNIT:.0f} mm beyond the procedural head's box (hair, or a "
            "large head): the scene box (the transforms' aabb) grows to hold them")
    radius = float(np.abs(box).max())
    distance = np.linalg.norm(head.c2w[kept, :3, 3], axis=1)
    write_transforms(out, K, [(i, head.c2w[i], landmarks[i]) for i in kept], n_test, fps,
                     max(distance.min() - radius, 0.05), distance.max() + radius, box)


def mask_outline(out: Path, head, kept: np.ndarray, K) -> np.ndarray | None:
    """The head masks' outline in the head's coronal plane (:func:`~tracking.silhouette_extent`)
    over up to ``SILHOUETTE_FRAMES`` kept frames spread over the clip; None without masks."""
    from facenerf.data.video import read_head_mask
    from facenerf.preprocess.video.tracking import SILHOUETTE_FRAMES, silhouette_extent

    chosen = kept[np.unique(np.linspace(0, len(kept) - 1, min(SILHOUETTE_FRAMES, len(kept))).round().astype(int))]
    chosen = [i for i in chosen if (out / "head_masks" / f"{i}.png").is_file()]
    if not chosen:
        return None
    masks = (read_head_mask(out / "head_masks" / f"{i}.png") > 0.5 for i in chosen)
    return silhouette_extent(masks, head.c2w[chosen], K.fx, K.cx, K.cy)


def process_video(settings: ProcessSettings) -> dict:
    """Turn ``settings.video`` into a NeRFBlendShape dataset in ``settings.out``; returns the report."""
    return VideoProcessor(settings).run()


def default_output(video: Path) -> Path:
    """``data/vids/NAME.mp4`` -> ``data/NAME``; any other ``DIR/NAME.ext`` -> ``DIR/NAME``."""
    parent = video.parent.parent if video.parent.name == "vids" else video.parent
    return parent / video.stem
