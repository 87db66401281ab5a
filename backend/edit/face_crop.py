"""Face-aware editing (PortraitGen): a 2D editor sees the face small in a full portrait frame, so the face is also
cropped to a square of `size`² pixels, edited there, pasted back and composited over the full-frame edit with the
head mask.

Boxes are the tracker's `CropBox` squares in continuous pixel coordinates (x0, y0, size) (pixel (i, j) covers
[j, j + 1) x [i, i + 1)).
Cropping and pasting are bilinear resamplings (`grid_sample`, zeros outside the frame), each the other's inverse
up to resampling.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.track import crop as track_crop
from backend.track.crop import CropBox

from .editor import EditContext, Editor

MARGIN = 0.35
"""The box is the landmarks' bounding square grown by this fraction of its side on every side."""
FEATHER = 0.08
"""Fraction of the crop's side over which the pasted face fades into the full-frame edit."""


def face_box(landmarks: Tensor, margin: float = MARGIN) -> CropBox:
    """The square around landmarks [L, 2] (x, y pixels), grown by `margin` of its side on each side (the tracker's
    `backend.track.crop.face_box` at scale 1 + 2 margin)."""
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 2 or landmarks.shape[1] != 2 or landmarks.shape[0] < 2:
        raise ValueError(f"landmarks must be a tensor [L >= 2, 2], got {getattr(landmarks, 'shape', landmarks)!r}")
    if not bool(torch.isfinite(landmarks).all()):
        raise ValueError("landmarks must be finite")
    return track_crop.face_box(landmarks.detach().double().cpu().numpy(), 1 + 2 * margin)


def _grid(box: CropBox, size: int, height: int, width: int, device, dtype) -> Tensor:
    """[1, size, size, 2] normalised frame coordinates (align_corners=False) of the crop's pixel centres."""
    steps = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * box.size  # [size]
    xs = (box.x0 + steps) / width * 2 - 1
    ys = (box.y0 + steps) / height * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [size, size]
    return torch.stack([grid_x, grid_y], dim=-1)[None]


def crop(image: Tensor, box: CropBox, size: int) -> Tensor:
    """image [H, W, C] -> [size, size, C]: the box resampled (zeros outside the frame)."""
    height, width = image.shape[:2]
    grid = _grid(box, size, height, width, image.device, image.dtype)
    return F.grid_sample(image.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0].permute(1, 2, 0)


def paste(cropped: Tensor, box: CropBox, height: int, width: int) -> tuple[Tensor, Tensor]:
    """cropped [s, s, C] back into an [H, W, C] frame; also the [H, W] weight, 1 inside the box fading to 0 over
    `FEATHER` of its side at the edges, 0 outside."""
    device, dtype = cropped.device, cropped.dtype
    xs = ((torch.arange(width, device=device, dtype=dtype) + 0.5 - box.x0) / box.size) * 2 - 1  # [W]
    ys = ((torch.arange(height, device=device, dtype=dtype) + 0.5 - box.y0) / box.size) * 2 - 1  # [H]
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W]
    grid = torch.stack([grid_x, grid_y], dim=-1)[None]  # [1, H, W, 2]
    frame = F.grid_sample(cropped.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[0].permute(1, 2, 0)  # [H, W, C]
    distance = 1 - torch.maximum(grid_x.abs(), grid_y.abs())  # [H, W] 0 at the box edge, 1 at its centre
    weight = (distance / (2 * FEATHER)).clamp(0, 1)  # [H, W]
    return frame, weight


def face_aware_edit(editor: Editor, image: Tensor, source: Tensor, instruction: str, mask: Tensor,
                    context: EditContext, landmarks: Tensor | None, size: int = 512) -> Tensor:
    """Edit the full frame and the face crop, paste the crop back over the full edit inside the head mask.

    Args:
        editor: any `Editor`.
        image, source: [H, W, 3] the render and the original frame.
        instruction: the text.
        mask: [H, W] head mask.
        context: the frame's `EditContext` (its normals are cropped along with the images).
        landmarks: [L, 2] face landmarks in pixels; None edits the full frame only.
        size: side of the face crop in pixels.
    """
    full = editor.edit(image, source, instruction, mask, context=context)  # [H, W, 3]
    if landmarks is None:
        return full
    height, width = image.shape[:2]
    box = face_box(landmarks)
    scale = size / box.size
    normals = None
    if context.normals is not None:
        normals = F.normalize(crop(context.normals.to(image), box, size), dim=-1)  # [s, s, 3]
    crop_context = dataclasses.replace(context, normals=normals,
                                       landmarks=(landmarks - landmarks.new_tensor([box.x0, box.y0])) * scale)
    face = editor.edit(crop(image, box, size), crop(source, box, size), instruction,
                       crop(mask[..., None], box, size)[..., 0], context=crop_context)  # [s, s, 3]
    pasted, weight = paste(face, box, height, width)  # [H, W, 3], [H, W]
    blend = (weight * mask)[..., None]  # [H, W, 1]
    return blend * pasted + (1 - blend) * full
