"""Monocular FLAME tracking: a video or an image folder in, a VHAP-style tracked folder out.

    result = track(Path("clip.mp4"), Path("tracked/clip"), FlameModel.builtin(), TrackConfig(resolution=512))

Steps (each reports `progress(stage, step, total, message)`; the callback may raise to cancel):

1. `frames`: decode the source (`video.FrameSource`) and detect MediaPipe face-mesh landmarks on every frame;
   frames without a face (or unreadable images) are skipped and reported.
2. `crop`: one square box per frame around the landmarks (`crop_scale` x their extent), smoothed over time
   when the frames are a sequence (all the same size), mapped to R x R.
3. `fit`: the landmark fit (`fit_landmarks`): one shape and focal length, per-frame pose, expression, jaw, gaze.
4. `write`: decode again, crop, segment the person (MediaPipe selfie segmentation) and write images and masks.
5. `photometric` (optional): refine against the crops (`photometric.refine`).
6. `save`: FLAME parameters, cameras and the report (`writer`); the folder appears at `out_dir` in one rename.

Cameras: one physical camera with focal length f x (the source frame's larger side) and its principal point at
the frame's centre; each crop's K is that camera seen through the crop box (`crop.crop_matrix`), so frames of
different sizes (a folder of mixed photos) each get a correct K. The world is FLAME's, recentred so the mean
head translation is 0; the camera is fixed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from shared_proto import Camera, FlameSequence

from ..atomic import atomic_path
from ..flame import FlameModel
from .crop import CropBox, crop_image, face_box, smooth_boxes
from .fit_landmarks import CAMERA_ROTATION, FitConfig, LandmarkFit, LandmarkTargets, fit_landmarks
from .landmarks import FaceLandmarker
from .photometric import PhotometricConfig, refine
from .segment import Segmenter
from .video import FrameSource, TrackInputError
from .writer import REPORT, write_frame, write_tracking

Progress = Callable[..., None]


@dataclasses.dataclass(frozen=True)
class TrackConfig:
    """Settings of `track` (defaults: 512 crops, every frame, landmark fit only)."""

    resolution: int = 512
    """Side R of the square face crops, in pixels (16..4096)."""
    max_frames: int | None = None
    """Track at most this many frames (after `fps` sampling); None: all (up to video.MAX_SOURCE_FRAMES)."""
    fps: float | None = None
    """Sampling rate in frames per second; None keeps every frame."""
    folder_fps: float = 25.0
    """Frame rate of an image folder (images carry no timestamps)."""
    crop_scale: float = 2.0
    """Crop side / extent of the face-mesh landmarks (2 frames the head with some hair and neck)."""
    crop_smoothing: float = 2.0
    """Gaussian smoothing of the crop boxes over time, in frames (0: none; never across mixed sizes)."""
    min_face_px: float = 32.0
    """Frames whose detected face (landmark extent) is smaller than this many source pixels are skipped."""
    masks: bool = True
    """Segment the person in every crop (fg_masks/); False writes all-foreground masks."""
    photometric: bool = False
    """Refine the landmark fit against the images (`refine`)."""
    fit: FitConfig = FitConfig()
    """The landmark fit: iterations, priors, smoothness weights, initial focal length."""
    refine: PhotometricConfig = PhotometricConfig()
    """The photometric refinement (used when `photometric` is True)."""
    seed: int = 0
    """Seed of torch's generator (the photometric refinement samples frames)."""
    device: str = "cpu"
    """Torch device of the fit ('cpu', 'cuda', 'cuda:1', 'mps')."""

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) \
                or not 16 <= self.resolution <= 4096:
            raise ValueError(f"TrackConfig.resolution must be an integer in 16..4096, got {self.resolution!r}")
        for name in ("crop_scale", "crop_smoothing", "min_face_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"TrackConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.crop_scale < 1.0:
            raise ValueError(f"TrackConfig.crop_scale must be >= 1 (the crop holds the face), got {self.crop_scale}")
        if not isinstance(self.fit, FitConfig) or not isinstance(self.refine, PhotometricConfig):
            raise TypeError("TrackConfig.fit must be a FitConfig and TrackConfig.refine a PhotometricConfig")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"TrackConfig.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"TrackConfig.device must be a torch device string, got {self.device!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class TrackResult:
    """What `track` produced.

    Attributes:
        folder: the tracked folder (`out_dir`).
        frames_used: [T] ids of the tracked frames, in order (the folder's `timestep_id`s: "frame_00012" for
            video frame 12, the file stem for images).
        frames_skipped: (frame id, reason) of every frame left out.
        reprojection_px: mean over the tracked frames of the mean distance between the fitted head's landmarks
            and the detected face-mesh points they match, in crop pixels (at `TrackConfig.resolution`).
        seconds: wall-clock time of the whole track.
        sequence: the fitted FLAME parameters, exactly as written (T frames, fps of the kept frames).
        cameras: [T] the OpenCV camera of each crop, exactly as written.
        focal: the fitted focal length over the source frame's larger side.
        boxes: [T] crop box of each tracked frame in its source frame's pixels.
    """

    folder: Path
    frames_used: tuple[str, ...]
    frames_skipped: tuple[tuple[str, str], ...]
    reprojection_px: float
    seconds: float
    sequence: FlameSequence
    cameras: tuple[Camera, ...]
    focal: float
    boxes: tuple[CropBox, ...]


@dataclasses.dataclass
class _Detection:
    index: int
    name: str
    points: np.ndarray  # [478, 2] source pixels
    size: tuple[int, int]  # source (width, height)


def _progress(progress: Progress | None, stage: str, step: int, total: int, message: str = "") -> None:
    """Report to `progress` if there is one (its exceptions, e.g. cancellation, propagate)."""
    if progress is not None:
        progress(stage, step, total, message)


def _detect(source: FrameSource, config: TrackConfig, progress: Progress | None
            ) -> tuple[list[_Detection], list[tuple[str, str]]]:
    """Landmarks of every usable frame, and (id, reason) of the others."""
    found: list[_Detection] = []
    skipped: list[tuple[str, str]] = []
    total = source.expected_frames
    with FaceLandmarker(static_images=True) as landmarker:
        for count, frame in enumerate(source):
            _progress(progress, "frames", count, total, frame.name)
            if frame.image is None:
                skipped.append((frame.name, frame.problem or "unreadable"))
                continue
            points = landmarker.detect(frame.image)
            if points is None:
                skipped.append((frame.name, "no face detected"))
                continue
            extent = float((points.max(0) - points.min(0)).max())
            if extent < config.min_face_px:
                skipped.append((frame.name, f"face too small ({extent:.0f} px, min_face_px is "
                                            f"{config.min_face_px:g})"))
                continue
            height, width = frame.image.shape[:2]
            found.append(_Detection(frame.index, frame.name, points, (width, height)))
    seen = len(found) + len(skipped)
    _progress(progress, "frames", seen, seen, f"{len(found)} with a face")
    return found, skipped


def _boxes(found: list[_Detection], config: TrackConfig) -> list[CropBox]:
    boxes = [face_box(d.points, config.crop_scale) for d in found]
    one_size = len({d.size for d in found}) == 1
    return smooth_boxes(boxes, config.crop_smoothing) if one_size else boxes


def _targets(found: list[_Detection], boxes: list[CropBox], resolution: int) -> LandmarkTargets:
    points = np.stack([box.to_crop(d.points, resolution) for d, box in zip(found, boxes)])  # [T, 478, 2]
    focal_scale = np.array([max(d.size) * resolution / box.size for d, box in zip(found, boxes)])  # [T]
    principal = np.stack([box.to_crop(np.array(d.size) / 2.0, resolution) for d, box in zip(found, boxes)])
    same_size = np.array([a.size == b.size for a, b in zip(found[:-1], found[1:])], dtype=np.float64)
    gaps = np.array([b.index - a.index for a, b in zip(found[:-1], found[1:])], dtype=np.float64)
    neighbours = same_size / np.maximum(gaps, 1.0)  # [T - 1] skipped frames in between weaken the link
    return LandmarkTargets(points=points, focal_scale=focal_scale, principal=principal, resolution=resolution,
                           neighbours=neighbours)


def _cameras(fit: LandmarkFit, targets: LandmarkTargets, config: TrackConfig, centre: np.ndarray) -> list[Camera]:
    """[T] crop cameras: K from the focal length and crop, world-to-camera fixed (recentred by `centre`)."""
    pose = np.eye(4)
    pose[:3, :3] = CAMERA_ROTATION
    pose[:3, 3] = CAMERA_ROTATION @ centre + [0.0, 0.0, config.fit.camera_distance]
    cameras = []
    for scale, principal in zip(targets.focal_scale, targets.principal):
        focal = fit.focal * scale
        K = [[focal, 0.0, principal[0]], [0.0, focal, principal[1]], [0.0, 0.0, 1.0]]
        cameras.append(Camera(K=K, world_to_camera=pose, width=config.resolution, height=config.resolution))
    return cameras


def _sequence(fit: LandmarkFit, fps: float) -> tuple[FlameSequence, np.ndarray]:
    """The fit as a FlameSequence with the mean translation moved to the origin, and that mean [3]."""
    centre = fit.translation.mean(axis=0)  # [3]
    frames = fit.translation.shape[0]
    sequence = FlameSequence(shape=fit.shape, expression=fit.expression, rotation=fit.rotation,
                             neck=np.zeros((frames, 3)), jaw=fit.jaw, eyes=fit.eyes,
                             translation=fit.translation - centre, fps=fps)
    return sequence, centre


def _write_frames(source: FrameSource, found: list[_Detection], boxes: list[CropBox], folder: Path,
                  config: TrackConfig, progress: Progress | None) -> None:
    """Second pass over the source: crop, segment and write every tracked frame."""
    wanted = {d.index: t for t, d in enumerate(found)}
    written = 0
    segmenter = Segmenter() if config.masks else None
    try:
        for frame in source:
            t = wanted.get(frame.index)
            if t is None:
                continue
            if frame.image is None or frame.image.shape[1::-1] != found[t].size:
                raise TrackInputError(source.path, f"frame {frame.name} decoded differently the second time",
                                      "The source changed while it was being tracked")
            crop, valid = crop_image(frame.image, boxes[t], config.resolution)
            mask = segmenter.mask(crop, valid) if segmenter is not None else np.where(valid, 255, 0).astype(np.uint8)
            write_frame(folder, t, crop, mask)
            written += 1
            _progress(progress, "write", written, len(found), frame.name)
    finally:
        if segmenter is not None:
            segmenter.close()
    if written != len(found):
        raise TrackInputError(source.path, f"only {written} of {len(found)} tracked frames could be decoded again",
                              "The source changed while it was being tracked")


def track(source: Path, out_dir: Path, head: FlameModel, config: TrackConfig = TrackConfig(),
          progress: Progress | None = None) -> TrackResult:
    """Track `head` through a video file, an image folder or one image, and write a tracked folder.

    Args:
        source: a video file (anything ffmpeg decodes), a folder of PNG / JPEG frames, or one image.
        out_dir: the tracked folder to create (replaced as a whole if it exists; nothing half-written is ever
            left there).
        head: `FlameModel.builtin()` or an official FLAME model loaded with a MediaPipe landmark embedding.
        config: see `TrackConfig`.
        progress: `progress(stage, step, total, message)`, e.g. `JobContext.progress`; exceptions it raises
            (cancellation) propagate and leave `out_dir` untouched.

    Raises:
        TrackInputError: (a ValueError) the source is missing, empty, undecodable or too large, or no frame
            shows a face; the message names the file.
        ValueError / TypeError: bad arguments, or a head without MediaPipe landmark correspondences.
    """
    started = time.monotonic()
    if not isinstance(head, FlameModel):
        raise TypeError(f"head must be a FlameModel, got {type(head).__name__}")
    if not isinstance(config, TrackConfig):
        raise TypeError(f"config must be a TrackConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    frames = FrameSource(source, fps=config.fps, max_frames=config.max_frames, folder_fps=config.folder_fps)
    found, skipped = _detect(frames, config, progress)
    if not found:
        reasons = sorted({reason for _, reason in skipped})
        raise TrackInputError(frames.path, f"no face found in any of its {len(skipped)} frames "
                              f"({'; '.join(reasons)[:300]})", "Track a video or images that show one face")
    boxes = _boxes(found, config)
    targets = _targets(found, boxes, config.resolution)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    device_head = head if head.v_template.device == device else copy.deepcopy(head).to(device)
    fit = fit_landmarks(device_head, targets, config.fit,
                        progress=lambda step, total: _progress(progress, "fit", step, total))
    with atomic_path(out_dir) as temp:
        temp.mkdir()
        _write_frames(frames, found, boxes, temp, config, progress)
        photometric = None
        if config.photometric:
            fit, photometric = refine(device_head, targets, fit, temp, config.fit, config.refine,
                                      progress=lambda step, total: _progress(progress, "photometric", step, total))
        sequence, centre = _sequence(fit, frames.fps)
        cameras = _cameras(fit, targets, config, centre)
        names = [d.name for d in found]
        seconds = time.monotonic() - started
        report = _report_json(head, frames, config, found, skipped, boxes, fit, seconds)
        if photometric is not None and photometric.size:
            report["photometric_l1"] = {"first_steps": float(photometric[:10].mean()),
                                        "last_steps": float(photometric[-10:].mean())}
        write_tracking(temp, sequence, cameras, names, report)
        _progress(progress, "save", 1, 1, str(out_dir))
    return TrackResult(folder=out_dir, frames_used=tuple(names), frames_skipped=tuple(skipped),
                       reprojection_px=float(fit.errors.mean()), seconds=time.monotonic() - started,
                       sequence=sequence, cameras=tuple(cameras), focal=fit.focal, boxes=tuple(boxes))


def _report_json(head: FlameModel, frames: FrameSource, config: TrackConfig, found: list[_Detection],
                 skipped: list[tuple[str, str]], boxes: list[CropBox], fit: LandmarkFit,
                 seconds: float) -> dict[str, Any]:
    return {
        "format": "keyface_track", "version": 1, "report": REPORT,
        "head": str(head.source), "source": str(frames.path), "source_kind": frames.kind, "fps": frames.fps,
        "resolution": config.resolution, "focal": fit.focal,
        "frames": [{"id": d.name, "source_index": d.index, "source_size": list(d.size),
                    "box": [box.x0, box.y0, box.size], "reprojection_px": float(error)}
                   for d, box, error in zip(found, boxes, fit.errors)],
        "skipped": [{"id": name, "reason": reason} for name, reason in skipped],
        "reprojection_px": float(fit.errors.mean()), "seconds": seconds,
        "config": dataclasses.asdict(config),
    }
