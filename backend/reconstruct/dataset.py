"""`FrameDataset`: the frames an avatar is optimised on — images, masks, cameras, FLAME parameters, hold-out split.

Built from a tracked sequence on disk (`from_tracked`) or from tensors in memory (`from_tensors`). Images are
float [T, H, W, 3] in [0, 1], composited over `background` wherever a mask says "not head", so a render over the
same background is compared like for like. Frame images can be replaced (`replace`): the editing stage
(iterative dataset update) swaps in edited frames while the trainer keeps running.

Hold-out: the last `holdout_fraction` of the frames (at least one, and at least one frame left to train on) are
never trained on; `evaluate` reports on them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.avatar.render_job import resized
from backend.render import describe
from backend.track.importers import TrackedSequence
from shared_proto import Camera, FlameSequence

HOLDOUT_FRACTION = 0.1
"""Share of the frames, taken from the end, held out for evaluation."""
MAX_PIXELS = 4096 * 4096
"""Largest source image accepted (pixels); bigger images are refused before they are decoded."""


class DatasetError(ValueError):
    """The frames cannot be used for reconstruction (unreadable, inconsistent sizes, too few frames)."""


@dataclasses.dataclass(eq=False)
class FrameDataset:
    """Training frames of one subject.

    Attributes:
        images: [T, H, W, 3] float32 in [0, 1], over `background` outside the head when masks are known.
        masks: [T, H, W] float32 head coverage in [0, 1], or None (no masks: the whole frame is trained).
        cameras: [T] OpenCV cameras, all of size W x H.
        sequence: the T frames' FLAME parameters.
        background: [3] colour in [0, 1] the images are composited over.
        holdout: how many frames, at the end, are held out.
    """

    images: Tensor
    masks: Tensor | None
    cameras: tuple[Camera, ...]
    sequence: FlameSequence
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    holdout: int = 1

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[-1] != 3 or not images.is_floating_point():
            raise TypeError(f"images must be a float tensor [T, H, W, 3], got {describe(images)}")
        frames, height, width = images.shape[:3]
        if self.masks is not None and (not isinstance(self.masks, Tensor)
                                       or tuple(self.masks.shape) != (frames, height, width)):
            raise ValueError(f"masks must be a tensor [{frames}, {height}, {width}] or None, got "
                             f"{describe(self.masks)}")
        if not isinstance(self.sequence, FlameSequence) or len(self.sequence) != frames:
            raise ValueError(f"sequence must be a FlameSequence of {frames} frames, got "
                             f"{len(self.sequence) if isinstance(self.sequence, FlameSequence) else self.sequence!r}")
        self.cameras = tuple(self.cameras)
        if len(self.cameras) != frames or any(not isinstance(c, Camera) for c in self.cameras):
            raise ValueError(f"cameras must be {frames} Camera objects, got {len(self.cameras)}")
        sizes = sorted({(c.width, c.height) for c in self.cameras})
        if sizes != [(width, height)]:
            raise ValueError(f"every camera must be {width}x{height} like the images, got sizes {sizes}")
        background = tuple(float(c) for c in self.background)
        if len(background) != 3 or not all(0.0 <= c <= 1.0 for c in background):
            raise ValueError(f"background must be 3 numbers in [0, 1], got {self.background!r}")
        self.background = background  # type: ignore[assignment]
        if frames < 2:
            raise DatasetError(f"reconstruction needs at least 2 frames (one to train on, one held out), got {frames}")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, int) or not 1 <= self.holdout < frames:
            raise ValueError(f"holdout must be an integer in [1, {frames - 1}], got {self.holdout!r}")
        self.images = images.float().contiguous()
        self.masks = None if self.masks is None else self.masks.float().contiguous()

    # --- building -----------------------------------------------------------------------------------------------

    @classmethod
    def from_tensors(cls, images: Tensor, cameras: list[Camera] | tuple[Camera, ...], sequence: FlameSequence, *,
                     masks: Tensor | None = None, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     holdout_fraction: float = HOLDOUT_FRACTION, composite: bool = True) -> FrameDataset:
        """A dataset from frames in memory.

        Args:
            images: [T, H, W, 3] float in [0, 1].
            cameras: [T] cameras of size W x H.
            sequence: T frames of FLAME parameters.
            masks: [T, H, W] head coverage in [0, 1], or None.
            background: [3] colour behind the head.
            holdout_fraction: share of the frames held out at the end (`holdout_count`).
            composite: blend the images over `background` outside the masks (off when they already are).
        """
        if masks is not None and composite:
            colour = images.new_tensor(background)
            images = images * masks[..., None] + (1.0 - masks[..., None]) * colour
        return cls(images=images, masks=masks, cameras=tuple(cameras), sequence=sequence, background=background,
                   holdout=holdout_count(images.shape[0], holdout_fraction))

    @classmethod
    def from_tracked(cls, tracked: TrackedSequence, *, resolution: int = 512, max_frames: int | None = None,
                     background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     holdout_fraction: float = HOLDOUT_FRACTION) -> FrameDataset:
        """Read a tracked sequence's frames (and masks) from disk.

        Images are scaled so their longer side is `resolution` (never enlarged), K follows. Masks come from the
        tracked mask files, else from the images' alpha channel, else there are none. `max_frames` keeps every
        k-th frame (evenly spaced over the whole sequence) so at most that many remain.

        Raises:
            DatasetError: a frame or mask is missing or unreadable, the frames differ in size from each other or
                from their cameras, or fewer than 2 frames remain.
        """
        if not isinstance(tracked, TrackedSequence):
            raise TypeError(f"tracked must be a TrackedSequence, got {type(tracked).__name__}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 16 <= resolution <= 4096:
            raise ValueError(f"resolution must be an integer in [16, 4096], got {resolution!r}")
        rows = frame_rows(len(tracked), max_frames)
        missing = [str(tracked.image_paths[t]) for t in rows if tracked.image_paths[t] is None]
        if missing:
            raise DatasetError(f"{len(missing)} tracked frames have no image path; the tracked dataset must name "
                               f"its images")
        sizes = sorted({(tracked.cameras[t].width, tracked.cameras[t].height) for t in rows})
        if len(sizes) != 1:
            raise DatasetError(f"the tracked cameras have different image sizes {sizes}; one size per sequence")
        width, height = sizes[0]
        scale = min(1.0, resolution / max(width, height))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        images, masks = [], []
        for t in rows:
            image, alpha = _read_image(tracked.image_paths[t], (width, height))
            mask_path = tracked.mask_paths[t]
            mask = _read_mask(mask_path, (width, height)) if mask_path is not None and mask_path.is_file() else alpha
            images.append(_resize(image, size))
            masks.append(None if mask is None else _resize(mask[..., None], size)[..., 0])
        if any(m is None for m in masks) and not all(m is None for m in masks):
            raise DatasetError("some frames have a foreground mask and others do not; give masks for every frame "
                               "or for none")
        mask_tensor = None if masks[0] is None else torch.stack(masks)
        cameras = tuple(resized(tracked.cameras[t], *size) for t in rows)
        return cls.from_tensors(torch.stack(images), cameras, sequence_rows(tracked.sequence, rows), masks=mask_tensor,
                                background=background, holdout_fraction=holdout_fraction)

    # --- access -------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    @property
    def train_indices(self) -> list[int]:
        """Frames the avatar is optimised on (all but the last `holdout`)."""
        return list(range(len(self) - self.holdout))

    @property
    def holdout_indices(self) -> list[int]:
        """The last `holdout` frames, never trained on."""
        return list(range(len(self) - self.holdout, len(self)))

    def replace(self, index: int, image: Tensor) -> None:
        """Swap frame `index`'s image for `image` [H, W, 3] float in [0, 1] (e.g. an edited frame), as is."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self):
            raise ValueError(f"index must be an integer in [0, {len(self) - 1}], got {index!r}")
        if not isinstance(image, Tensor) or tuple(image.shape) != (self.height, self.width, 3):
            raise ValueError(f"image must be a tensor [{self.height}, {self.width}, 3], got {describe(image)}")
        if not torch.isfinite(image).all():
            raise ValueError(f"image for frame {index} has non-finite values")
        self.images[index] = image.to(self.images)


def holdout_count(frames: int, fraction: float = HOLDOUT_FRACTION) -> int:
    """Frames held out: ceil(fraction * T), at least 1 and at most T - 1."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction!r}")
    if frames < 2:
        raise DatasetError(f"reconstruction needs at least 2 frames (one to train on, one held out), got {frames}")
    return min(frames - 1, max(1, math.ceil(fraction * frames - 1e-9)))


def frame_rows(frames: int, max_frames: int | None) -> list[int]:
    """Rows kept when at most `max_frames` of `frames` are used: evenly spaced, first and last included."""
    if max_frames is None or max_frames >= frames:
        return list(range(frames))
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
        raise ValueError(f"max_frames must be an integer >= 2, got {max_frames!r}")
    return sorted({round(i * (frames - 1) / (max_frames - 1)) for i in range(max_frames)})


def sequence_rows(sequence: FlameSequence, rows: Sequence[int]) -> FlameSequence:
    """The frames `rows` of `sequence` (row indices, in the order given), one identity; `frame_start` becomes the
    timeline frame of `rows[0]`."""
    if len(rows) == 0:
        raise ValueError("sequence_rows needs at least one row")
    rows = list(rows)

    def take(name: str) -> np.ndarray | None:
        value = getattr(sequence, name)
        return None if value is None else value[rows]

    return FlameSequence(shape=sequence.shape, expression=take("expression"), rotation=take("rotation"),
                         neck=take("neck"), jaw=take("jaw"), eyes=take("eyes"), translation=take("translation"),
                         eyelids=take("eyelids"), fps=sequence.fps, frame_start=sequence.frame_start + rows[0])


def _open(path: Path, size: tuple[int, int], what: str) -> PIL.Image.Image:
    """The image file at `path`, checked to be `size` (width, height) before it is decoded."""
    try:
        image = PIL.Image.open(path)
    except FileNotFoundError:
        raise DatasetError(f"{what} {path} does not exist") from None
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise DatasetError(f"{what} {path} is not a readable image ({type(error).__name__}: {error})") from None
    if image.size[0] * image.size[1] > MAX_PIXELS:
        raise DatasetError(f"{what} {path} is {image.size[0]}x{image.size[1]}, larger than {MAX_PIXELS} pixels")
    if image.size != size:
        raise DatasetError(f"{what} {path} is {image.size[0]}x{image.size[1]} but its camera says "
                           f"{size[0]}x{size[1]}; every frame of a sequence must have its camera's size")
    return image


def _read_image(path: Path, size: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """([H, W, 3] float RGB, [H, W] alpha or None) of an image file."""
    image = _open(Path(path), size, "frame")
    try:
        with image:
            has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
            array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"frame {path} cannot be decoded ({type(error).__name__}: {error})") from None
    tensor = torch.from_numpy(array)
    return tensor[..., :3].contiguous(), (tensor[..., 3].contiguous() if has_alpha else None)


def _read_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """[H, W] float mask in [0, 1] of a mask image (grey, or the first channel)."""
    image = _open(Path(path), size, "mask")
    try:
        with image:
            array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"mask {path} cannot be decoded ({type(error).__name__}: {error})") from None
    return torch.from_numpy(array)


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """[H, W, C] -> [h, w, C] with size = (w, h), antialiased bilinear (area-like when shrinking)."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    out = F.interpolate(image.permute(2, 0, 1)[None], size=(size[1], size[0]), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0.0, 1.0).contiguous()
