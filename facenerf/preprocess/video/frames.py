"""Frame extraction with the ffmpeg binary that ships with imageio-ffmpeg.

Frames are resampled to a constant rate (25 fps by default) with ffmpeg's ``fps`` filter, and
ffmpeg's ``vfrdet`` filter measures, in the same decoding pass, how many input frames arrive at
irregular intervals (a variable frame rate). They are written as ``ori_imgs/<i>.jpg``,
numbered from 0.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError
from facenerf.io import write_image

IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif")
HDR_TRANSFERS = {"arib-std-b67": "HLG", "smpte2084": "PQ"}  # ffmpeg's names of HDR transfer functions (BT.2020)
# HDR -> SDR: BT.709 primaries and transfer, the HDR reference white (203 cd/m2, ITU-R BT.2408) at SDR's
# full scale; brighter highlights clip. benchmarks/results/video_inputs_cpu.md: HLG clips made from SDR
# ones come back at 28.8-30.5 dB, against 19.1-21.7 dB when the HLG values are read as if they were SDR;
# PQ clips 21.8-22.5 dB (a little bright) against 14.5-16.8 dB.
HDR_TO_SDR = "zscale=tin={tin}:pin=bt2020:min=bt2020nc:t=bt709:p=bt709:m=bt709:r=tv:npl=203,format=yuv420p,"
HDR_TAGS = {"HLG": "arib-std-b67", "PQ": "smpte2084"}  # the filter's input transfer, set whatever the tags say
# interlaced video (broadcast, older camcorders): each frame's two fields, a moment apart, are
# combined by motion-adaptive deinterlacing (bwdif) into one frame per frame, before any scaling.
# A 50 fields/s synthetic talking head came out at 42.3 dB (41.3 at worst) against its progressive
# frames, 41.8 dB (39.0 at worst, the fastest motion) without it (video_inputs_cpu.md).
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=interlaced,"


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reports about a file's first video stream. ``width`` and ``height`` are those
    of the frames as shown: a phone video stored sideways with a rotation tag (``rotation``,
    degrees; ffmpeg turns the frames upright as it decodes them) has them swapped relative to the
    coded size, and a video of non-square pixels (``pixel_aspect`` = their width / height) is
    shown ``pixel_aspect`` times as wide, which :func:`extract_frames` scales it to."""

    width: int
    height: int
    fps: float | None        # nominal frame rate
    duration: float | None   # seconds
    container: str
    rotation: float = 0.0
    pixel_aspect: float = 1.0   # of the upright frames
    transfer: str | None = None  # "HLG" or "PQ" for HDR video, else None
    interlaced: bool = False     # the stream's field order says interlaced (top or bottom field first)

    def output_size(self, max_side: int = 0) -> tuple[int, int]:
        """``(width, height)`` of the extracted frames: the shown size, scaled down (even sides, the
        aspect kept) so that the longer side is at most ``max_side`` (0: no limit)."""
        if max_side <= 0 or max(self.width, self.height) <= max_side:
            return self.width, self.height
        factor = max_side / max(self.width, self.height)  # even sides, rounded down: never over the limit
        return max(2, int(self.width * factor / 2.0 + 1e-9) * 2), max(2, int(self.height * factor / 2.0 + 1e-9) * 2)

    def scale_filter(self, max_side: int = 0) -> str:
        """ffmpeg filters that deinterlace (:data:`DEINTERLACE`), convert HDR video to SDR
        (:data:`HDR_TO_SDR`) and give square pixels at :meth:`output_size` ("" when nothing is to
        change)."""
        hdr = (DEINTERLACE if self.interlaced else "") + \
            (HDR_TO_SDR.format(tin=HDR_TAGS[self.transfer]) if self.transfer else "")
        size = self.output_size(max_side)
        if size == (self.width, self.height) and abs(self.pixel_aspect - 1.0) < 1e-3:
            return hdr
        shrink = ":flags=area" if size != (self.width, self.height) else ""
        return hdr + f"scale={size[0]}:{size[1]}{shrink},setsar=1,"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe_video(path: Path) -> VideoInfo:
    """Read the header of ``path``; a one-line error when it is missing or not a video."""
    if not path.is_file():
        raise FaceNerfError(f"video not found: {path} (check the path)")
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")
    text = done.stderr
    container = re.search(r"Input #0, ([\w,]+), from", text)
    stream = re.search(r"Stream #0:\d+.*?: Video: (.*)", text)
    if container is None or stream is None:
        raise FaceNerfError(f"{path} is not a video (ffmpeg finds no video stream); pass an .mp4/.mov/.avi file")
    if container.group(1).split(",")[0] in IMAGE_FORMATS:
        raise FaceNerfError(f"{path} is a still image, not a video; pass a video file (.mp4, .mov, .avi)")
    size = re.search(r"(\d{2,5})x(\d{2,5})", stream.group(1))
    fps = re.search(r"([\d.]+) fps", stream.group(1))
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    seconds = None
    if duration:
        h, m, s = duration.groups()
        seconds = 3600 * int(h) + 60 * int(m) + float(s)
    if size is None:
        raise FaceNerfError(f"{path}: ffmpeg reports no frame size for the video stream; re-encode the video")
    width, height, rotation = int(size.group(1)), int(size.group(2)), _rotation(text)
    sar = re.search(r"\[SAR (\d+):(\d+)", stream.group(1))
    aspect = int(sar.group(1)) / int(sar.group(2)) if sar and int(sar.group(1)) and int(sar.group(2)) else 1.0
    if round(rotation) % 180 == 90:   # ffmpeg turns the frames upright as it decodes them
        width, height, aspect = height, width, 1.0 / aspect
    if abs(aspect - 1.0) >= 1e-3:
        width = max(2, int(round(width * aspect / 2.0)) * 2)
    transfer = next((name for tag, name in HDR_TRANSFERS.items() if tag in stream.group(1)), None)
    interlaced = re.search(r"\b(top|bottom) (first|coded first)", stream.group(1)) is not None
    return VideoInfo(width, height, float(fps.group(1)) if fps else None, seconds, container.group(1), rotation,
                     aspect, transfer, interlaced)


def _rotation(header: str) -> float:
    """Degrees of the first video stream's rotation tag (display matrix, or the older ``rotate``)."""
    found = re.search(r"rotation of (-?[\d.]+) degrees", header) or re.search(r"^\s*rotate\s*:\s*(-?[\d.]+)",
                                                                              header, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass(frozen=True)
class Extraction:
    n_frames: int
    width: int
    height: int
    vfr_ratio: float | None   # share of input frames with irregular timing (None: unknown)
    source_fps: float | None
    hdr: str | None = None    # "HLG" or "PQ": the frames were converted from HDR to SDR
    deinterlaced: bool = False  # the video was interlaced; its frames were deinterlaced
    shown_size: tuple[int, int] | None = None  # the video's (width, height) when the frames were scaled down


def _vfr_ratio(log: str) -> float | None:
    found = re.findall(r"VFR:([\d.]+) \((\d+)/(\d+)\)", log)
    if not found:
        return None
    _, variable, constant = found[-1]
    total = int(variable) + int(constant)
    return int(variable) / total if total else None


def extract_frames(path: Path, out_dir: Path, fps: float = 25.0, quality: int = 95,
                   progress: bool = True, max_side: int = 0) -> Extraction:
    """Decode ``path`` at ``fps`` into ``out_dir/<i>.jpg`` (longer side at most ``max_side``, 0:
    the shown size); returns counts, sizes and the VFR measure."""
    from tqdm import tqdm

    info = probe_video(path)
    width, height = info.output_size(max_side)
    frame_bytes = width * height * 3
    expected = int(round(info.duration * fps)) if info.duration else None
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:v:0",
               "-vf", f"vfrdet,{info.scale_filter(max_side)}fps={fps}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    count = 0
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        try:
            with tqdm(total=expected, desc="frames", unit="frame", disable=None if progress else True) as bar:
                while True:
                    chunk = process.stdout.read(frame_bytes)
                    if len(chunk) < frame_bytes:
                        break
                    target = out_dir / f"{count}.jpg"
                    if not target.is_file():     # a resumed run keeps the frames already written
                        image = np.frombuffer(chunk, np.uint8).reshape(height, width, 3)
                        write_image(target, image, quality)
                    count += 1
                    bar.update(1)
        finally:
            process.stdout.close()
            status = process.wait()
        log.seek(0)
        text = log.read()
    if status != 0 and count == 0:
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["unknown error"]
        if info.transfer and "zscale" in text:
            raise FaceNerfError(f"ffmpeg cannot convert the {info.transfer} HDR video {path} to SDR: {last[0].strip()}; "
                                "convert it to SDR H.264 first (e.g. with your phone's export)")
        raise FaceNerfError(f"ffmpeg cannot decode {path}: {last[0].strip()}; re-encode it (e.g. to H.264 MP4)")
    return Extraction(count, width, height, _vfr_ratio(text), info.fps, info.transfer, info.interlaced,
                      (info.width, info.height) if (width, height) != (info.width, info.height) else None)
