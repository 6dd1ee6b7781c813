"""Reading and writing images, videos, text and weights files with clear errors.

In memory an image is ``float32 [H, W, 3]`` in [0, 1]. Greyscale and RGBA inputs are converted
to RGB (RGBA is composited over black, the training renders' background), and EXIF
orientation is applied so phone photos come out upright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from facenerf.errors import FaceNerfError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (suffix match is case-insensitive)."""
    root = Path(folder)
    if not root.is_dir():
        raise FaceNerfError(f"image folder not found: {root} (check the path)")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _to_rgb(array: np.ndarray) -> np.ndarray:
    """uint8/uint16 greyscale, grey+alpha, RGB or RGBA -> float32 RGB in [0, 1]."""
    if array.dtype == np.uint16:
        image = array.astype(np.float32) / 65535.0
    elif array.dtype == np.uint8:
        image = array.astype(np.float32) / 255.0
    else:
        image = np.clip(array.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels in (2, 4):
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as ``float32 [H, W, 3]`` in [0, 1].

    Args:
        path: image file.
        size: optional ``(width, height)`` to resize to (area filter when shrinking).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"image not found: {file} (check the path)")
    try:
        with Image.open(file) as handle:
            handle = ImageOps.exif_transpose(handle)
            if handle.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                handle = handle.convert("RGBA" if "A" in handle.mode or handle.mode == "P" else "RGB")
            elif handle.mode == "I;16":
                handle = handle.convert("I")
            array = np.asarray(handle)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise FaceNerfError(f"cannot read image {file}: not a valid image file ({err.__class__.__name__})") from err
    if array.dtype == np.int32:
        array = np.clip(array, 0, 65535).astype(np.uint16)
    image = _to_rgb(array)
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = resize_image(image, size)
    return image


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, C]`` float image to ``size = (width, height)``: area when shrinking, cubic else."""
    import cv2

    width, height = size
    shrink = width < image.shape[1] or height < image.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    out = cv2.resize(image, (int(width), int(height)), interpolation=interp)
    if out.ndim == 2:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_uint8(image) -> np.ndarray:
    """float [0, 1] (numpy or torch) or uint8 ``[H, W, C]`` -> uint8 numpy."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | Path, image) -> Path:
    """Write ``[H, W, 3]`` (or ``[H, W]``) float in [0, 1] or uint8 to PNG/JPG; creates parents."""
    import imageio.v3 as iio

    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(file, to_uint8(image))
    except OSError as err:
        raise FaceNerfError(f"cannot write image {file}: {err.strerror or err}") from err
    return file


VIDEO_FPS = 25  # frame rate of every video the toolkit writes unless asked otherwise


def write_video(path: str | Path, frames: Sequence | Iterable, fps: int = VIDEO_FPS) -> Path:
    """Write frames (``[H, W, 3]`` float or uint8) as an H.264 MP4 playable everywhere."""
    import imageio.v2 as imageio

    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with imageio.get_writer(file, fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=2) as writer:
            for frame in frames:
                writer.append_data(to_uint8(frame))
                count += 1
    except OSError as err:
        raise FaceNerfError(f"cannot write video {file}: {err}") from err
    if count == 0:
        raise FaceNerfError(f"no frames to write to {file}")
    return file


# ------------------------------------------------------------------------------ atomic writes

def _temporary_sibling(file: Path) -> Path:
    """A hidden temporary path in ``file``'s folder that keeps its suffix (formats follow it)."""
    import os

    return file.with_name(f".{file.stem}.partial-{os.getpid()}{file.suffix}")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it onto ``path``.

    A crash or an error mid-write leaves the previous ``path`` (or nothing) and no partial
    file. ``OSError`` becomes a one-line :class:`FaceNerfError` naming the path.
    """
    import os

    file = Path(path)
    tmp = _temporary_sibling(file)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, file)
    except OSError as err:
        raise FaceNerfError(f"cannot write {file}: {err.strerror or err}; check the folder and free space") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return file


def write_image_atomic(path: str | Path, image, quality: int = 95) -> Path:
    """Atomically write ``[H, W, 3|4]`` (or ``[H, W]``) float in [0, 1] or uint8 as PNG/JPG.

    JPEG files use ``quality``; a 4-channel image keeps its alpha (PNG only).
    """
    from PIL import Image

    array = to_uint8(image)

    def write(tmp: Path) -> None:
        params = {"quality": int(quality)} if tmp.suffix.lower() in (".jpg", ".jpeg") else {}
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, **params)

    return atomic_write(path, write)


def write_json_atomic(path: str | Path, payload, indent: int | None = None) -> Path:
    """Atomically write ``payload`` as JSON."""
    import json

    text = json.dumps(payload, indent=indent)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_npy_atomic(path: str | Path, array) -> Path:
    """Atomically ``np.save`` an array (no pickles)."""
    data = np.asarray(array)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, data, allow_pickle=False)

    return atomic_write(path, write)


def save_npz_atomic(path: str | Path, **arrays) -> Path:
    """Atomically ``np.savez_compressed`` named arrays."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})

    return atomic_write(path, write)


def write_video_atomic(path: str | Path, frames, fps: int = VIDEO_FPS) -> Path:
    """:func:`write_video` through a temporary file, so an interrupted run leaves no broken MP4."""
    return atomic_write(path, lambda tmp: write_video(tmp, frames, fps))


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check a file can be written there."""
    import os
    import tempfile

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise FaceNerfError(f"cannot write to output directory {folder}: {reason}; "
                            "choose a writable directory") from err
    if not os.access(folder, os.W_OK):
        raise FaceNerfError(f"cannot write to output directory {folder}: permission denied; "
                            "choose a writable directory")
    return folder


def load_weights_file(path: str | Path, what: str = "checkpoint", map_location="cpu",
                      fix: str = "delete it and use an earlier checkpoint"):
    """Read any tensor file with ``torch.load(..., weights_only=True)``; one-line errors only.

    This is the project's single place that calls ``torch.load``. ``what`` names the file in
    messages ("fit file", "VGG-19 weights", ...) and ``fix`` says what to do about a damaged one.
    Raises :class:`FaceNerfError` for a missing file, a file holding Python objects that cannot
    be loaded safely, and a corrupt or truncated file.
    """
    import pickle

    import torch

    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"{what} not found: {file} (check the path)")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise FaceNerfError(
                f"cannot read {what} {file}: it holds Python objects that cannot be loaded safely, so it is "
                f"not a facenerf {what} (re-save it as plain tensors, e.g. a state dict)"
            ) from err
        raise FaceNerfError(f"cannot read {what} {file}: corrupt or truncated ({err}); {fix}") from err
    except Exception as err:  # arbitrary bytes make the unpickler raise almost any error type
        raise FaceNerfError(f"cannot read {what} {file}: corrupt or truncated "
                            f"({err.__class__.__name__}); {fix}") from err
