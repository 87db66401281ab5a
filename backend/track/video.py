"""Frames from a video file, an image folder or one image, with limits and clear errors.

- Videos are decoded by ffmpeg through imageio-ffmpeg (rotation metadata applied, so a portrait phone video
  comes out upright), as RGB uint8, one frame at a time.
- Folders: every `.png` / `.jpg` / `.jpeg` file (any case) in the folder itself, sorted naturally
  (`frame2.png` before `frame10.png`); other files are ignored. EXIF orientation is applied; grey, 16-bit and
  RGBA images become 8-bit RGB (alpha dropped). Images may differ in size: each one is its own frame.
  An image that cannot be decoded is reported and skipped, not fatal.
- One image file is a one-frame source.
- Sampling: `fps` keeps the first frame at or after every 1 / fps seconds of the source's clock (videos: the
  stream's frame rate; folders: `folder_fps`); `max_frames` stops after that many kept frames.

`FrameSource` can be iterated more than once (the tracker reads twice: landmarks first, crops second) and
yields the same frames each time. Every problem with the source itself is a `TrackInputError` (a
`ValueError`) naming the file and what to do; nothing here writes files.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Generator

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files a folder source is made of (compared case-insensitively)."""
MAX_SIDE = 8192
"""Largest frame width or height in pixels (8K UHD is 7680 x 4320)."""
MAX_SOURCE_FRAMES = 20_000
"""Most frames one track may keep after sampling (about 13 minutes at 25 fps)."""
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, Image.DecompressionBombError)
"""What Pillow raises for damaged or unreadable image bytes (its decoders raise these for bad data)."""


class TrackInputError(ValueError):
    """The tracking source is unusable: missing, empty, undecodable, too large, or without a face.

    Attributes:
        path: the file or folder at fault.
    """

    def __init__(self, path: Path | str, problem: str, hint: str = "") -> None:
        super().__init__(f"{path}: {problem}" + (f". {hint}" if hint else ""))
        self.path = Path(path)
        self.problem = problem
        self.hint = hint


@dataclasses.dataclass(frozen=True, eq=False)
class SourceFrame:
    """One frame of a source, or why it cannot be used.

    Attributes:
        index: the frame's position in the whole source (video frame number; sorted image position).
        name: a stable id, used as the tracked folder's `timestep_id` ("frame_00012" or the image's file stem).
        image: [H, W, 3] uint8 RGB, or None when `problem` says why not.
        problem: None, or a sentence on why the frame was skipped.
    """

    index: int
    name: str
    image: np.ndarray | None
    problem: str | None = None


def natural_key(name: str) -> list[object]:
    """Sort key that orders digit runs by value: `img2` < `img10`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class _Sampler:
    """Keeps the first frame at or after each multiple of 1 / fps seconds (every frame when fps is None)."""

    def __init__(self, fps: float | None) -> None:
        self.fps = fps
        self.next_time = -math.inf

    def keep(self, time: float) -> bool:
        if self.fps is None:
            return True
        if time < self.next_time - 1e-9:
            return False
        self.next_time = (math.floor(time * self.fps + 1e-6) + 1) / self.fps
        return True


def sample_times(times: np.ndarray, fps: float | None) -> np.ndarray:
    """[N] bool: keep the first frame at or after each multiple of 1 / fps seconds (all frames when fps is None).

    Args:
        times: [N] non-decreasing frame timestamps in seconds.
    """
    sampler = _Sampler(fps)
    return np.array([sampler.keep(float(time)) for time in times], dtype=bool)


class FrameSource:
    """The frames of a video file, an image folder or a single image (see the module docstring).

    Args:
        path: the video, folder or image.
        fps: sampling rate in frames per second, or None for every frame.
        max_frames: keep at most this many frames (after sampling), or None for up to `MAX_SOURCE_FRAMES`.
        folder_fps: the frame rate of an image folder (its frames have no timestamps).

    Raises:
        TrackInputError: the source does not exist, is empty, or cannot be opened.
    """

    def __init__(self, path: Path | str, fps: float | None = None, max_frames: int | None = None,
                 folder_fps: float = 25.0) -> None:
        self.path = Path(path)
        for name, value in (("fps", fps), ("folder_fps", folder_fps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0.0 < value <= 1000.0):
                raise ValueError(f"{name} must be a number in (0, 1000], got {value!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or not 1 <= max_frames <= MAX_SOURCE_FRAMES):
            raise ValueError(f"max_frames must be an integer in 1..{MAX_SOURCE_FRAMES} or None, got {max_frames!r}")
        self.max_frames = max_frames
        self.sample_fps = None if fps is None else float(fps)
        if self.path.is_dir():
            self.kind = "folder"
            self.files = sorted((p for p in self.path.iterdir() if p.is_file()
                                 and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
            if not self.files:
                raise TrackInputError(self.path, f"the folder has no {'/'.join(IMAGE_SUFFIXES)} images",
                                      "Give a folder of frames or a video file")
            self.source_fps = float(folder_fps)
        elif self.path.is_file():
            if self.path.suffix.lower() in IMAGE_SUFFIXES:
                self.kind = "image"
                self.files = [self.path]
                self.source_fps = float(folder_fps)
            else:
                self.kind = "video"
                self.files = []
                self.source_fps = self._probe_video()
        else:
            raise TrackInputError(self.path, "no such file or folder")
        self.fps = self.source_fps if self.sample_fps is None else min(self.sample_fps, self.source_fps)
        """Frame rate of the kept frames."""
        self.expected_frames = self._expected_frames()
        """How many frames iterating will yield (exact for images; an estimate for videos, 0 if unknown)."""

    def __iter__(self) -> Generator[SourceFrame, None, None]:
        """The kept frames, in order (each call decodes the source again)."""
        frames = self._video_frames() if self.kind == "video" else self._image_frames()
        try:
            for kept, frame in enumerate(frames):
                if kept >= MAX_SOURCE_FRAMES:
                    raise TrackInputError(self.path, f"more than {MAX_SOURCE_FRAMES} frames to track",
                                          "Lower the sampling rate (fps) or set max_frames")
                yield frame
                if self.max_frames is not None and kept + 1 >= self.max_frames:
                    return
        finally:
            frames.close()  # stops ffmpeg at once when iteration ends early

    def _expected_frames(self) -> int:
        if self.kind == "video":
            sampled = self.duration * self.fps
        else:
            sampled = int(sample_times(np.arange(len(self.files)) / self.source_fps, self.sample_fps).sum())
        limit = MAX_SOURCE_FRAMES if self.max_frames is None else self.max_frames
        return int(min(round(sampled), limit))

    # --- images ---

    def _image_frames(self) -> Generator[SourceFrame, None, None]:
        times = np.arange(len(self.files)) / self.source_fps  # [N]
        for index in np.flatnonzero(sample_times(times, self.sample_fps)):
            file = self.files[index]
            try:
                image = read_image(file)
            except TrackInputError as error:
                if self.kind == "image":
                    raise
                yield SourceFrame(int(index), file.stem, None, error.problem)
                continue
            yield SourceFrame(int(index), file.stem, image)

    # --- videos ---

    def _probe_video(self) -> float:
        """The stream's frame rate (raises TrackInputError for files ffmpeg cannot read)."""
        if self.path.stat().st_size == 0:
            raise TrackInputError(self.path, "the file is empty")
        meta, reader = self._open_video()
        reader.close()
        width, height = meta["size"]
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise TrackInputError(self.path, f"the video is {width} x {height} pixels, larger than "
                                  f"{MAX_SIDE} x {MAX_SIDE}", "Scale it down first")
        duration = float(meta.get("duration") or 0.0)
        self.duration = duration if math.isfinite(duration) and duration > 0 else 0.0
        fps = float(meta.get("fps") or 0.0)
        return fps if 0.0 < fps <= 1000.0 else 25.0

    def _open_video(self) -> tuple[dict, Generator]:
        """(ffmpeg's metadata, the generator of raw frames that follow it)."""
        reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration, ValueError, AttributeError, IndexError) as error:
            reader.close()
            detail = _ffmpeg_reason(error)
            raise TrackInputError(self.path, f"cannot be decoded as a video ({detail})",
                                  "Is it a video file? Re-encode it, e.g. with ffmpeg -i in.mov out.mp4") from None
        return meta, reader

    def _video_frames(self) -> Generator[SourceFrame, None, None]:
        meta, reader = self._open_video()
        try:
            width, height = meta["size"]
            sampler, index = _Sampler(self.sample_fps), 0
            while True:
                try:
                    raw = next(reader)
                except StopIteration:
                    break
                except (OSError, RuntimeError) as error:
                    raise TrackInputError(self.path, f"decoding failed at frame {index} "
                                          f"({_ffmpeg_reason(error)})", "The file may be truncated") from None
                if sampler.keep(index / self.source_fps):
                    image = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                    yield SourceFrame(index, f"frame_{index:05d}", image)
                index += 1
            if index == 0:
                raise TrackInputError(self.path, "the video has no frames that ffmpeg can decode")
        finally:
            reader.close()


def _ffmpeg_reason(error: BaseException) -> str:
    """The informative line of an imageio-ffmpeg error (its message embeds ffmpeg's whole log)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if "rror" in line or "nvalid" in line or "not found" in line]
    text = (useful or lines or [type(error).__name__])[-1]
    return text[:200]


def read_image(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB from a PNG / JPEG (EXIF orientation applied; grey, 16-bit and alpha converted).

    Raises:
        TrackInputError: the file cannot be decoded or is larger than `MAX_SIDE`.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                raise TrackInputError(path, f"the image is {width} x {height} pixels, larger than "
                                      f"{MAX_SIDE} x {MAX_SIDE}")
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16") or image.mode in ("I", "F"):
                values = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if image.mode != "F" else max(float(values.max(initial=0.0)), 1e-12)
                grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except TrackInputError:
        raise
    except UnidentifiedImageError:
        raise TrackInputError(path, "not a readable PNG or JPEG image") from None
    except _IMAGE_ERRORS as error:
        raise TrackInputError(path, f"the image cannot be decoded ({type(error).__name__}: {error})") from None
