"""Square face crops: a box around the face from its landmarks, smoothed over time, resampled to R x R.

Pixel convention (as everywhere in Keyface): continuous image coordinates put (0, 0) at the top-left corner of
pixel (0, 0); pixel (i, j) is sampled at (j + 0.5, i + 0.5). A box (x0, y0, size) in source pixels maps to
the crop by u_crop = (u_source - x0) * R / size, so a source camera K becomes `crop_matrix(box, R) @ K`.
Crops may reach outside the frame (a face near the edge): those pixels are black and marked invalid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter1d


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square region of a source frame, in source pixels.

    Attributes:
        x0: left edge.
        y0: top edge.
        size: side length (> 0).
    """

    x0: float
    y0: float
    size: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.size)
        if not all(np.isfinite(values)) or self.size <= 0:
            raise ValueError(f"a crop box needs finite x0, y0 and size > 0, got {values}")

    def to_crop(self, points: np.ndarray, resolution: int) -> np.ndarray:
        """[..., 2] source pixels -> crop pixels."""
        return (np.asarray(points, dtype=np.float64) - [self.x0, self.y0]) * (resolution / self.size)

    def to_source(self, points: np.ndarray, resolution: int) -> np.ndarray:
        """[..., 2] crop pixels -> source pixels."""
        return np.asarray(points, dtype=np.float64) * (self.size / resolution) + [self.x0, self.y0]


def face_box(points: np.ndarray, scale: float) -> CropBox:
    """The square box centred on the landmarks' bounding box, `scale` times its longer side.

    Args:
        points: [N, 2] landmark pixels of one face.
        scale: box side / landmark extent (> 0); MediaPipe's mesh spans brow-top to chin, so about 2 frames
            the whole head.
    """
    low, high = points.min(axis=0), points.max(axis=0)  # [2]
    size = max(float((high - low).max()), 1.0) * scale
    centre = (low + high) / 2.0  # [2]
    return CropBox(float(centre[0] - size / 2.0), float(centre[1] - size / 2.0), size)


def smooth_boxes(boxes: list[CropBox], sigma: float) -> list[CropBox]:
    """Boxes with centres and (log) sizes Gaussian-smoothed over the list (sigma in frames; 0 keeps them)."""
    if sigma <= 0 or len(boxes) < 2:
        return list(boxes)
    sizes = np.array([box.size for box in boxes])  # [T]
    centres = np.array([[box.x0, box.y0] for box in boxes]) + sizes[:, None] / 2.0  # [T, 2]
    centres = gaussian_filter1d(centres, sigma, axis=0, mode="nearest")
    sizes = np.exp(gaussian_filter1d(np.log(sizes), sigma, mode="nearest"))
    return [CropBox(float(c[0] - s / 2.0), float(c[1] - s / 2.0), float(s)) for c, s in zip(centres, sizes)]


def crop_matrix(box: CropBox, resolution: int) -> np.ndarray:
    """[3, 3] A with K_crop = A @ K_source: scale by R / size after moving (x0, y0) to the origin."""
    scale = resolution / box.size
    return np.array([[scale, 0.0, -box.x0 * scale], [0.0, scale, -box.y0 * scale], [0.0, 0.0, 1.0]])


def crop_image(image: np.ndarray, box: CropBox, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample the box of `image` to resolution x resolution (anti-aliased when shrinking).

    Downscaling first averages k x k pixel blocks (k = floor(size / R)), then samples bicubically at each crop
    pixel's centre, so a 4K frame's face is not aliased.

    Args:
        image: [H, W, 3] uint8 RGB.

    Returns:
        ([R, R, 3] uint8 crop, [R, R] bool: True where the crop pixel's centre lies inside the frame).
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    height, width = image.shape[:2]
    step = box.size / resolution
    centres = (np.arange(resolution) + 0.5) * step  # [R] offsets of crop pixel centres from the box corner
    xs, ys = box.x0 + centres, box.y0 + centres  # [R], [R] source coordinates
    valid = ((ys >= 0) & (ys < height))[:, None] & ((xs >= 0) & (xs < width))[None, :]  # [R, R]
    crop = np.zeros((resolution, resolution, 3), dtype=np.uint8)
    if not valid.any():
        return crop, valid
    # the part of the frame the box covers, with a margin for the bicubic kernel (integer, inside the frame)
    margin = 3 * max(1.0, step)
    left, top = max(0, int(np.floor(box.x0 - margin))), max(0, int(np.floor(box.y0 - margin)))
    right = min(width, int(np.ceil(box.x0 + box.size + margin)))
    bottom = min(height, int(np.ceil(box.y0 + box.size + margin)))
    region = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    factor = max(1, int(step))
    if factor > 1:
        region = region.reduce(factor)  # box average; reduced pixel j covers source [j k, (j + 1) k)
    pixels = torch.from_numpy(np.asarray(region, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, 3, h, w]
    h, w = pixels.shape[2:]
    # grid_sample (align_corners=False): -1 is the left edge of pixel 0, +1 the right edge of the last pixel
    gx = torch.from_numpy(2.0 * (xs - left) / factor / w - 1.0)  # [R]
    gy = torch.from_numpy(2.0 * (ys - top) / factor / h - 1.0)  # [R]
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()  # [1, R, R, 2]
    sampled = F.grid_sample(pixels, grid, mode="bicubic", padding_mode="border", align_corners=False)
    rgb = sampled[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()  # [R, R, 3]
    crop[valid] = rgb[valid]
    return crop, valid
