"""Reading and writing files with clear errors; every output file is written atomically.

In memory an image is ``float32 [H, W, 3]`` in [0, 1]. Greyscale and RGBA inputs are converted
to RGB (RGBA is composited over black, the training renders' background), and EXIF
orientation is applied so phone photos come out upright.

Every file a command writes goes through :func:`atomic_write`: the data is written to a
hidden temporary file in the destination folder (``.{stem}.tmp-{pid}-{random}{suffix}``) and
renamed over the destination only once complete. A crash, Ctrl-C, ``kill -9`` or a full disk
therefore leaves either the previous file or the new one, never a truncated one. A failure
to write raises :class:`~facenerf.errors.OutputError` (one line naming the path and the
cause) and removes the temporary file; temporaries left by a killed process are removed by
:func:`remove_stale_temporaries` when the next run starts. The typed writers below
(``write_image``, ``write_video``, ``write_json``, ``write_text``, ``write_npy``, ...,
``save_torch``) are the only functions in facenerf that create output files.

:func:`load_weights_file` is the one place that reads tensor files (``torch.load(...,
weights_only=True)``); :func:`ensure_writable_dir` checks an output folder before a run starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from facenerf.errors import FaceNerfError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (suffix match is case-insensitive).

    Hidden files (names starting with ``.``, e.g. temporaries of an interrupted write) are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FaceNerfError(f"image folder not found: {root} (check the path)")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


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
        if file.suffix.lower() in (".heic", ".heif"):
            raise FaceNerfError(f"cannot read image {file}: HEIC/HEIF photos are not supported; convert them to JPEG "
                                "or PNG (an iPhone writes JPEG with Settings > Camera > Formats > Most Compatible)") from err
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


def write_image(path: str | Path, image, quality: int = 95) -> Path:
    """Write ``[H, W, 3|4]`` (or ``[H, W]``) float in [0, 1] or uint8 to PNG/JPG atomically; creates parents.

    JPEG files use ``quality``; a 4-channel image keeps its alpha (PNG).
    """
    import imageio.v3 as iio

    file = Path(path)
    suffix = file.suffix.lower() or ".png"
    options = {"quality": int(quality)} if suffix in (".jpg", ".jpeg") else {}
    data = iio.imwrite("<bytes>", to_uint8(image), extension=suffix, **options)
    with atomic_write(file, "image") as tmp:
        tmp.write_bytes(data)
    return file


VIDEO_FPS = 25  # frame rate of every video the toolkit writes unless asked otherwise


def write_video(path: str | Path, frames: Sequence | Iterable, fps: int = VIDEO_FPS) -> Path:
    """Write frames (``[H, W, 3]`` float or uint8) as an H.264 MP4 playable everywhere (atomically)."""
    import imageio.v2 as imageio

    file = Path(path)
    count = 0
    with atomic_write(file, "video") as tmp:
        try:
            with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, pixelformat="yuv420p",
                                    macro_block_size=2, ffmpeg_log_level="quiet") as writer:
                for frame in frames:
                    writer.append_data(to_uint8(frame))
                    count += 1
        except (OSError, RuntimeError) as err:
            raise output_error(file, "video", err) from err
        if count == 0:
            raise FaceNerfError(f"no frames to write to {file}")
        if not mp4_complete(tmp):  # ffmpeg's exit status is not checked by imageio
            raise output_error(file, "video", RuntimeError("ffmpeg could not finish the file"))
    return file


def mp4_complete(path: str | Path) -> bool:
    """True when the MP4's top-level boxes span the whole file and include ``moov`` and ``mdat``.

    ffmpeg writes ``moov`` last, so a file cut short (full disk, killed writer) fails this check.
    """
    file = Path(path)
    try:
        size = file.stat().st_size
        seen, offset = set(), 0
        with file.open("rb") as stream:
            while offset < size:
                stream.seek(offset)
                header = stream.read(16)
                if len(header) < 8:
                    return False
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - offset
                if length < 8:
                    return False
                seen.add(kind)
                offset += length
    except OSError:
        return False
    return offset == size and {b"moov", b"mdat"} <= seen


# ------------------------------------------------------------------------------ atomic writes

TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+(\.[^.]*)?$")
_LEGACY_TEMP_NAMES = (re.compile(r"^\..+\.partial(\.png)?$"), re.compile(r"^\.step_\d+\.pt\..+\.tmp$"))

_FIXES = {
    errno.ENOSPC: "free disk space or choose another output folder",
    errno.EDQUOT: "free disk space (quota exceeded) or choose another output folder",
    errno.EROFS: "the file system is read-only; choose a writable output folder",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.ENOENT: "its folder was removed while the command ran; choose an existing output folder",
    errno.ENOTDIR: "part of the path is a file, not a folder; choose another output path",
    errno.EEXIST: "part of the path is a file, not a folder; choose another output path",
    errno.EISDIR: "it is a folder; pass a file name",
}


def temporary_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path`` with the same suffix (writers that pick a format by suffix still work)."""
    file = Path(path)
    return file.with_name(f".{file.stem}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{file.suffix}")


def _os_error_in(err: BaseException) -> OSError | None:
    """``err`` or the OSError it was raised from (torch turns a failed write into a RuntimeError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def output_error(path: str | Path, what: str, err: BaseException) -> OutputError:
    """One-line :class:`OutputError` naming ``path`` and the cause of ``err``."""
    file = Path(path)
    os_err = _os_error_in(err)
    code = os_err.errno if os_err is not None else None
    if os_err is not None and os_err.strerror:
        reason = os_err.strerror
    elif _nearly_full(file.parent):
        reason, code = os.strerror(errno.ENOSPC), errno.ENOSPC
    else:
        reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]
    return OutputError(f"cannot write {what} {file}: {reason}; {_FIXES.get(code, 'check the output folder')}")


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, what: str = "file", durable: bool = False) -> Iterator[Path]:
    """Context manager: write to the yielded temporary path, then rename it to ``path``.

    The temporary file sits in ``path``'s folder (created if missing) and has its suffix. On
    success it replaces ``path`` in one ``os.replace``; on any error it is deleted and ``path``
    keeps its previous content. An ``OSError`` (full disk, read-only or vanished folder, no
    permission, ``path`` is a folder) becomes :class:`OutputError` naming ``path`` (``what``
    says what it is: "image", "checkpoint", ...). ``durable`` adds an fsync before the rename,
    so the file also survives a power cut (used for checkpoints).
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {what} {target}: it is a folder; pass a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(target, what, err) from err
    tmp = temporary_path(target)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
    except OSError as err:
        _discard(tmp)
        raise output_error(target, what, err) from err
    except BaseException:
        _discard(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_temporary(name: str) -> bool:
    """True for names :func:`atomic_write` (or an older facenerf) gives its temporary files."""
    return bool(_TEMP_NAME.match(name)) or any(p.match(name) for p in _LEGACY_TEMP_NAMES)


def remove_stale_temporaries(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Delete temporaries left in ``folder`` by writers that were killed; return what was removed.

    A temporary whose writing process is still alive is kept (another run may be writing it).
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    walk = os.walk(root) if recursive else [(str(root), [], [e.name for e in os.scandir(root) if e.is_file()])]
    removed = []
    for directory, _, names in walk:
        for name in names:
            match = _TEMP_NAME.match(name)
            if match and (int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1)))):
                continue
            if match or any(p.match(name) for p in _LEGACY_TEMP_NAMES):
                path = Path(directory) / name
                _discard(path)
                removed.append(path)
    return removed


# ------------------------------------------------------------------------------ typed writers

def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) atomically."""
    file = Path(path)
    with atomic_write(file, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return file


def write_bytes(path: str | Path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` atomically."""
    file = Path(path)
    with atomic_write(file, what) as tmp:
        tmp.write_bytes(data)
    return file


def write_json(path: str | Path, payload: Any, indent: int | None = 1, what: str = "JSON file", **kwargs) -> Path:
    """Write ``payload`` as JSON atomically (``indent=None``: compact)."""
    separators = (",", ":") if indent is None else None
    return write_text(path, json.dumps(payload, indent=indent, separators=separators, **kwargs) + "\n", what)


def write_npy(path: str | Path, array: Any, allow_pickle: bool = False, what: str = "array file") -> Path:
    """``np.save`` atomically (``allow_pickle`` only for dict records such as MoFaNeRF's pose files)."""
    file = Path(path)
    with atomic_write(file, what) as tmp:
        with tmp.open("wb") as stream:
            np.save(stream, array, allow_pickle=allow_pickle)
    return file


def write_npz(path: str | Path, what: str = "array file", **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically."""
    file = Path(path)
    with atomic_write(file, what) as tmp:
        with tmp.open("wb") as stream:
            np.savez(stream, **arrays)
    return file


def write_array_text(path: str | Path, array: np.ndarray, fmt: str = "%.6f", header: str = "",
                     what: str = "text file") -> Path:
    """``np.savetxt`` atomically (e.g. landmark files: one row per point)."""
    file = Path(path)
    with atomic_write(file, what) as tmp:
        np.savetxt(tmp, array, fmt=fmt, header=header)
    return file


def copy_file(source: str | Path, path: str | Path, what: str = "file") -> Path:
    """Copy ``source`` to ``path`` atomically; a missing or unreadable source is a FaceNerfError."""
    src, file = Path(source), Path(path)
    try:
        handle = src.open("rb")
    except OSError as err:
        raise FaceNerfError(f"cannot read {src}: {err.strerror or err}; restore the file") from err
    with handle, atomic_write(file, what) as tmp:
        with tmp.open("wb") as out:
            shutil.copyfileobj(handle, out)
    return file


def write_figure(path: str | Path, figure) -> Path:
    """Save a matplotlib figure atomically (the format follows the suffix)."""
    file = Path(path)
    with atomic_write(file, "figure") as tmp:
        figure.savefig(tmp)
    return file


def save_torch(path: str | Path, payload: Any, what: str = "checkpoint", durable: bool = True) -> Path:
    """``torch.save`` atomically; a write failure (which torch reports as RuntimeError) is an OutputError."""
    import torch

    file = Path(path)
    with atomic_write(file, what, durable=durable) as tmp:
        try:
            with tmp.open("wb") as stream:
                torch.save(payload, stream)
        except RuntimeError as err:
            raise output_error(file, what, err) from err
    return file


# ------------------------------------------------------------------------------ folders and tensor files

def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check a file can be written there."""
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
                      fix: str = "delete it and use an earlier checkpoint") -> Any:
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
