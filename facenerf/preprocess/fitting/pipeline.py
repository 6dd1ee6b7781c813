"""Wild-photo preprocessing for single-image fitting: detect, align, pose, segment, relight.

For every photo ``<name>.<ext>`` in the input folder the batch writes, under the output folder
(default: the input folder; input files are never overwritten)::

    aligned/<name>.png     photo aligned to the 512^2 training-render template (black outside the photo)
    landmarks/<name>.txt   68 lines "x y": landmarks in the aligned image (pixels)
    mask/<name>.png        colour-coded labels: face red, hair blue, neck cyan, clothing green, background black
    segRes/<name>.png      aligned photo with background and clothing removed (black)
    segRelRes/<name>.png   segRes relit to the training lighting: the image to fit
    pose_<name>.npy        {"pose": 4x4 camera-to-world (OpenGL, scene units), "kp": 68x2 (row, col),
                            "kp_xy": 68x2 (x, y), "sh": 9 estimated SH lighting (reference basis order),
                            "rmse_px": landmark reprojection error, "image_size": int,
                            "preprocess": the resume record, see facenerf.preprocess.fitting.resume}
    contact/contact_sheet.png   input | landmarks + pose | mask | segmented | relit, one row per photo

``run_fit.py --filePath <out>/segRelRes/<name>.png`` finds ``<out>/pose_<name>.npy`` two folders
up, as in the reference. Photos that cannot be used (not an image, unreadable, too small, no
face) are skipped with one line each and the batch ends with a summary.

Every file is written atomically and the pose file last, with a record of the photo, the
settings and the other outputs' sizes (:mod:`facenerf.preprocess.fitting.resume`): a rerun
after Ctrl-C or ``kill -9`` skips the photos already done and redoes only the one in progress.
An output that cannot be written (full disk, read-only folder) stops the batch with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from facenerf.config import option
from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import IMAGE_SUFFIXES, read_image, remove_stale_temporaries, write_array_text, write_image
from facenerf.preprocess.fitting.align import align_to_template, transform_points, transform_scale
from facenerf.preprocess.fitting.contact import draw_landmarks, overlay_labels
from facenerf.preprocess.fitting.detect import FaceDetection, LandmarkDetector
from facenerf.preprocess.fitting.pose import PoseEstimate, estimate_pose
from facenerf.preprocess.fitting.raster import rasterize
from facenerf.preprocess.fitting.relight import RelightSettings, relight_image
from facenerf.preprocess.fitting.segment import (FACE, FaceFrame, Segmentation, SegmentSettings, colour_labels,
                                                 segment_face, skin_sample_mask)
from facenerf.preprocess.fitting.template import FaceTemplate, load_alignment_template, load_template
from facenerf.preprocess.training.rig import BASE_RESOLUTION

OUTPUT_FOLDERS = ("aligned", "landmarks", "mask", "segRes", "segRelRes")
CONTACT_FOLDER = "contact"
RELIGHT_METHODS = ("sh", "dpr", "none")


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that controls one preprocessing run (CLI flags map 1:1 onto these)."""

    image_size: int = option(BASE_RESOLUTION, "side of the aligned outputs (the training renders')")
    template: str = option("", "align to the landmark template of a training checkpoint (.pt) or of a rendered "
                               "dataset folder (its frontal neutral views); empty = the rig's frontal view of the "
                               "real-size mean head")
    upsample: int = option(1, "HOG face detector up-sampling (finds smaller faces)")
    cnn_fallback: bool = option(False, "try dlib's CNN detector when HOG finds no face")
    predictor: str | None = option(None, "dlib 68-landmark predictor file; unset = the copy in "
                                         "face_recognition_models")
    cnn_detector: str | None = option(None, "dlib MMOD detector file; unset = the copy in face_recognition_models")
    detect_max_side: int = 1024         # detection runs on a copy at most this large
    min_side: int = 64                  # smaller photos are skipped
    refine_landmarks: bool = True       # re-predict landmarks on the aligned image
    pose_no_contour: bool = option(False, "estimate the pose without the 17 jaw-contour landmarks "
                                          "(helps for turned heads)")
    segment: SegmentSettings = SegmentSettings()
    relight: str = option("sh", "sh: weights-free SH re-shading to the training lighting; dpr: the original's "
                                "relighting network (needs --dpr_weights); none: copy segRes",
                          choices=RELIGHT_METHODS)
    dpr_weights: str | None = option(None, "the original's relighting weights trained_model_03.t7 (its "
                                           "tools/fit_data_pre/trained_model/), for --relight dpr")
    relight_settings: RelightSettings = RelightSettings()
    parsing_weights: str | None = option(None, "optional face-parsing network weights (BiSeNet, 19 CelebAMask-HQ "
                                               "classes) used instead of the weights-free segmentation")
    device: str = "cpu"                 # where the optional network runs (resolved, not "auto")

    @property
    def pose_use_contour(self) -> bool:
        return not self.pose_no_contour


@dataclass
class ProcessedFace:
    """All results for one photo (arrays in the aligned ``S x S`` frame unless noted)."""

    aligned: np.ndarray        # [S, S, 3] float32
    inside: np.ndarray         # [S, S] bool, pixels from inside the photo
    landmarks: np.ndarray      # [68, 2] (x, y)
    transform: np.ndarray      # [2, 3] photo -> aligned similarity
    detection: FaceDetection   # in photo pixels
    pose: PoseEstimate
    segmentation: Segmentation
    segmented: np.ndarray      # [S, S, 3] float32, background and clothing black
    relit: np.ndarray          # [S, S, 3] float32, segmented + relit
    sh_estimated: np.ndarray   # [9]
    projected: np.ndarray      # [68, 2] template landmarks projected with the estimated pose
    notes: list[str] = field(default_factory=list)


class WildPreprocessor:
    """Holds the detector, template and optional networks; :meth:`process` handles one photo."""

    def __init__(self, settings: PreprocessSettings = PreprocessSettings(), template: FaceTemplate | None = None):
        if settings.relight not in RELIGHT_METHODS:
            raise FaceNerfError(f"unknown --relight {settings.relight!r}: use one of {', '.join(RELIGHT_METHODS)}")
        if settings.image_size < 64:
            raise FaceNerfError(f"--image_size must be at least 64, got {settings.image_size}")
        self.settings = settings
        if template is None:
            alignment = load_alignment_template(settings.template) if settings.template else None
            template = load_template(settings.image_size, alignment)
        self.template = template
        if self.template.image_size != settings.image_size:
            self.template = replace(self.template, image_size=settings.image_size)
        self.detector = LandmarkDetector(settings.predictor, settings.upsample, settings.cnn_fallback,
                                         settings.cnn_detector, settings.detect_max_side)
        self.relighter = None
        if settings.relight == "dpr" and not settings.dpr_weights:
            raise FaceNerfError("--relight dpr needs --dpr_weights FILE (the original code's "
                                "tools/fit_data_pre/trained_model/trained_model_03.t7); or use --relight sh")
        if settings.dpr_weights and settings.relight != "dpr":
            raise FaceNerfError(f"--dpr_weights is read only with --relight dpr (got --relight {settings.relight})")
        if settings.relight == "dpr":
            from facenerf.preprocess.fitting.dpr import DPRRelighter

            self.relighter = DPRRelighter.from_file(settings.dpr_weights, settings.device)
        self.parser = None
        if settings.parsing_weights:
            from facenerf.preprocess.fitting.parsing import FaceParser

            self.parser = FaceParser.from_file(settings.parsing_weights, settings.device)

    def process(self, image: np.ndarray) -> ProcessedFace:
        """Run the whole chain on one ``[H, W, 3]`` float photo; raises :class:`FaceNerfError` if unusable."""
        h, w = image.shape[:2]
        if min(h, w) < self.settings.min_side:
            raise FaceNerfError(f"image too small ({w}x{h}); use a photo at least {self.settings.min_side} px "
                                "on its short side with the face at least 80 px wide")
        detection = self.detector.detect(image)
        size = self.settings.image_size
        aligned, inside, matrix, landmarks = align_to_template(image, detection.landmarks,
                                                               self.template.landmarks_2d, size)
        if self.settings.refine_landmarks:
            landmarks = self._refined_landmarks(aligned, landmarks, detection.box, matrix)
        pose = estimate_pose(landmarks, self.template.landmarks_3d, self.template.intrinsics,
                             self.settings.pose_use_contour)
        segmentation = self._segment(aligned, landmarks, inside)
        keep = segmentation.keep[..., None]
        relit, coeffs, notes = self._relight(aligned, landmarks, pose, segmentation)
        projected = _project(self.template, pose)
        return ProcessedFace(aligned, inside, landmarks, matrix, detection, pose, segmentation,
                             (aligned * keep).astype(np.float32), (relit * keep).astype(np.float32),
                             coeffs, projected, notes)

    def _refined_landmarks(self, aligned: np.ndarray, landmarks: np.ndarray, box: tuple, matrix: np.ndarray
                           ) -> np.ndarray:
        """Re-predict landmarks on the aligned face in the detector's box carried through ``matrix``.

        The warped landmarks are kept if the two disagree badly (more than 5% of the face size).
        """
        centre = transform_points(np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]), matrix)[0]
        half = 0.5 * transform_scale(matrix) * np.array([box[2] - box[0], box[3] - box[1]])
        refined = self.detector.landmarks_in_box(aligned, (*(centre - half), *(centre + half)))
        spread = float(np.linalg.norm(landmarks.max(axis=0) - landmarks.min(axis=0)))
        if np.mean(np.linalg.norm(refined - landmarks, axis=1)) > 0.05 * spread:
            return landmarks
        return refined

    def _segment(self, aligned: np.ndarray, landmarks: np.ndarray, inside: np.ndarray) -> Segmentation:
        if self.parser is not None:
            return self.parser.segment(aligned, landmarks, inside, self.settings.segment.neck_length)
        return segment_face(aligned, landmarks, inside, self.settings.segment)

    def _relight(self, aligned, landmarks, pose, segmentation) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self.settings.relight == "none":
            return aligned, np.full(9, np.nan), []
        if self.relighter is not None:   # the original's network relights the segmented image
            relit, coeffs = self.relighter.relight(aligned * segmentation.keep[..., None])
            return relit, coeffs, []
        raster = rasterize(self.template.vertices, self.template.faces, pose.c2w, self.template.intrinsics)
        frame = FaceFrame.from_landmarks(landmarks)
        skin = (segmentation.labels == FACE) & skin_sample_mask(segmentation.labels.shape, frame)
        result = relight_image(aligned, raster.normals, raster.covered, skin, self.settings.relight_settings)
        return result.image, result.sh_estimated, result.notes


def _project(template: FaceTemplate, pose: PoseEstimate) -> np.ndarray:
    from facenerf.core.cameras import project_points

    return np.asarray(project_points(template.landmarks_3d, pose.c2w, template.intrinsics), dtype=np.float64)


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Where the outputs of photo ``stem`` go (see the module docstring)."""
    root = Path(out_dir)
    paths = {folder: root / folder / f"{stem}.png" for folder in OUTPUT_FOLDERS}
    paths["landmarks"] = root / "landmarks" / f"{stem}.txt"
    paths["pose"] = root / f"pose_{stem}.npy"
    return paths


def write_outputs(face: ProcessedFace, out_dir: str | Path, stem: str, protected: set[Path],
                  record: Callable[[list[Path]], dict] | None = None) -> dict[str, Path]:
    """Write all files of one photo, the pose file last; refuses to overwrite any path in ``protected``.

    ``record(written paths)``, when given, returns the resume record stored in the pose file
    (see :mod:`facenerf.preprocess.fitting.resume`).
    """
    from facenerf.preprocess.fitting.pose import save_pose_file
    from facenerf.preprocess.fitting.resume import RECORD_KEY

    paths = output_paths(out_dir, stem)
    for path in paths.values():
        if path.resolve() in protected:
            raise FaceNerfError(f"output {path} would overwrite an input photo; pass a different --out folder")
    written = [write_image(paths["aligned"], face.aligned),
               write_image(paths["mask"], colour_labels(face.segmentation.labels)),
               write_image(paths["segRes"], face.segmented),
               write_image(paths["segRelRes"], face.relit),
               write_array_text(paths["landmarks"], face.landmarks, fmt="%.2f",
                                header="x y (pixels of aligned/ image)", what="landmark file")]
    extra = {"sh": np.asarray(face.sh_estimated, dtype=np.float32), "rmse_px": float(face.pose.rmse_px),
             "image_size": int(face.aligned.shape[0])}
    if record is not None:
        extra[RECORD_KEY] = record(written)
    save_pose_file(paths["pose"], face.pose.c2w, face.landmarks, extra)
    return paths


def conversion_notes(path: str | Path) -> list[str]:
    """What :func:`facenerf.io.read_image` will convert in this file (greyscale, alpha, EXIF rotation)."""
    from PIL import Image, UnidentifiedImageError

    notes = []
    try:
        with Image.open(path) as handle:
            mode = handle.mode
            orientation = handle.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return notes
    if mode in ("L", "LA", "I", "I;16", "1"):
        notes.append(f"converted greyscale ({mode}) to RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P"):
        notes.append(f"converted {mode} to RGB (transparent parts become black)")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
    if orientation not in (1, None):
        notes.append(f"applied EXIF orientation {orientation} (image rotated upright)")
    return notes


@dataclass
class BatchSummary:
    """Outcome of :func:`preprocess_folder`."""

    out_dir: Path
    ok: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file name, reason)
    contact_sheets: list[Path] = field(default_factory=list)
    done_earlier: list[str] = field(default_factory=list)           # ok photos a previous run had finished

    def lines(self) -> list[str]:
        earlier = f", {len(self.done_earlier)} of them done by an earlier run" if self.done_earlier else ""
        out = [f"summary: {len(self.ok)} ok, {len(self.skipped)} skipped{earlier} (outputs in {self.out_dir})"]
        out += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        out += [f"  contact sheet: {path}" for path in self.contact_sheets]
        return out


def _is_own_output(path: Path) -> bool:
    """Files this tool writes beside the photos (ignored, not reported, when re-run on a folder)."""
    return (path.suffix == ".npy" and path.name.startswith("pose_")) or path.name == "wild_preprocess_config.txt"


def _inputs(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Photos to process and the non-image files to report as skipped."""
    if not folder.is_dir():
        raise FaceNerfError(f"input folder not found: {folder} (pass a folder of photos with --filePath)")
    photos, others = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or _is_own_output(path):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            photos.append(path)
        else:
            others.append((path.name, f"not an image file (suffix '{path.suffix}'); supported: "
                                      + " ".join(IMAGE_SUFFIXES)))
    return photos, others


def _log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporaries of a killed earlier run, in the folders this tool writes to (never elsewhere)."""
    for folder in (out, *(out / name for name in OUTPUT_FOLDERS), out / "landmarks", out / CONTACT_FOLDER):
        remove_stale_temporaries(folder)


@dataclass
class _Batch:
    """What every photo of one :func:`preprocess_folder` call shares."""

    pre: WildPreprocessor
    out: Path
    protected: set[Path]
    key: str                                      # settings hash (resume record)
    summary: BatchSummary
    sheets: object | None                         # ContactSheetWriter or None
    used: dict[str, str] = field(default_factory=dict)


def preprocess_folder(input_dir: str | Path, out_dir: str | Path | None = None,
                      settings: PreprocessSettings = PreprocessSettings(), log: Callable[[str], None] = _log,
                      progress: bool = True, contact_sheet: bool = True,
                      preprocessor: WildPreprocessor | None = None) -> BatchSummary:
    """Preprocess every photo in ``input_dir`` (not recursive); see the module docstring for outputs.

    Each unusable file is skipped with one logged line; the returned summary lists what
    succeeded and why the rest was skipped. Photos an earlier run finished with the same
    settings are not processed again. Raises :class:`FaceNerfError` only for problems that stop
    the whole batch (missing input folder, unwritable output folder, missing model files, an
    output that cannot be written).
    """
    from facenerf.io import ensure_writable_dir
    from facenerf.preprocess.fitting.contact import ContactSheetWriter
    from facenerf.preprocess.fitting.resume import settings_key

    folder = Path(input_dir)
    photos, others = _inputs(folder)
    out = ensure_writable_dir(out_dir if out_dir is not None else folder)
    _remove_stale_temporaries(out)
    summary = BatchSummary(out_dir=out, skipped=list(others))
    for name, reason in others:
        log(f"skipped {name}: {reason}")
    if not photos:
        return summary
    pre = preprocessor if preprocessor is not None else WildPreprocessor(settings)
    batch = _Batch(pre, out, {path.resolve() for path in photos}, settings_key(pre.settings), summary,
                   ContactSheetWriter(out / CONTACT_FOLDER) if contact_sheet else None)
    from tqdm import tqdm

    for path in tqdm(photos, desc="preprocess", unit="photo", disable=None if progress else True):
        log(_process_one(batch, path))
    if batch.sheets is not None:
        summary.contact_sheets = batch.sheets.close()
    return summary


def _done_earlier(batch: _Batch, path: Path) -> str | None:
    """If an earlier run finished ``path`` with these settings, record it and return the line to log."""
    from facenerf.preprocess.fitting.resume import contact_tiles, finished_pose

    paths = output_paths(batch.out, path.stem)
    pose = finished_pose(path, batch.key, batch.out, paths["pose"])
    if pose is None:
        return None
    if batch.sheets is not None:
        try:
            batch.sheets.add(path.stem, contact_tiles(path, paths, pose, batch.pre.template))
        except (FaceNerfError, OSError, ValueError):
            return None   # an output no longer reads back: process the photo again
    batch.used[path.stem] = path.name
    batch.summary.ok.append(path.name)
    batch.summary.done_earlier.append(path.name)
    return f"done {path.name}: finished by an earlier run (outputs kept)"


def _process_one(batch: _Batch, path: Path) -> str:
    """Process one photo, record the outcome in the batch summary; return the line to log."""
    from facenerf.preprocess.fitting.resume import make_record

    stem, summary = path.stem, batch.summary
    if stem in batch.used:
        reason = f"output name '{stem}' is already used by {batch.used[stem]}; rename one of the two files"
        summary.skipped.append((path.name, reason))
        return f"skipped {path.name}: {reason}"
    earlier = _done_earlier(batch, path)
    if earlier is not None:
        return earlier
    try:
        notes = conversion_notes(path)
        image = read_image(path)
        face = batch.pre.process(image)
        write_outputs(face, batch.out, stem, batch.protected,
                      record=lambda written: make_record(path, batch.key, batch.out, written))
    except OutputError:
        raise   # full disk, read-only folder: every further photo would fail the same way
    except FaceNerfError as err:
        summary.skipped.append((path.name, str(err)))
        return f"skipped {path.name}: {err}"
    batch.used[stem] = path.name
    summary.ok.append(path.name)
    if batch.sheets is not None:
        batch.sheets.add(stem, [image, draw_landmarks(face.aligned, face.landmarks, face.projected),
                                overlay_labels(face.aligned, face.segmentation.labels), face.segmented, face.relit])
    notes = notes + face.notes
    extra = f" ({'; '.join(notes)})" if notes else ""
    return (f"ok {path.name}: pose error {face.pose.rmse_px:.1f} px, "
            f"{int(face.segmentation.keep.mean() * 100)}% of the image kept{extra}")
