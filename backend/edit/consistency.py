"""Temporal flicker through the avatar's exact correspondences (used by `bench/edit_consistency.py` and tests).

Every Gaussian is bound to a FLAME triangle and moves rigidly with it, so its posed mean at frame t and at frame
t + 1 is the same surface point. Projected through each frame's camera it gives a pixel correspondence that needs
no optical flow. For consecutive frames (t, t + 1):

    S_t = Gaussians visible in both frames: projected inside the image (half a pixel from the border) and within
          `DEPTH_TOLERANCE` (relative) of the head mesh's rasterized depth at their pixel (not occluded);
    E_t = mean over S_t and RGB of |I_{t+1}(p_{t+1}) - I_t(p_t)|   (bilinear samples, images in [0, 1]);
    warping error = mean over t of E_t.

A sequence whose colours are painted on the surface has a warping error near 0 (only resampling and shading
changes); per-frame independent edits raise it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.avatar import GaussianAvatar
from shared_proto import Camera, FlameSequence

from .geometry import flame_rows, frame_geometry, project

DEPTH_TOLERANCE = 0.004
"""A Gaussian is visible when |its camera z - the mesh depth at its pixel| <= this fraction of that depth."""


def _sample(images: Tensor, pixels: Tensor) -> Tensor:
    """images [B, H, W, C] at pixels [B, N, 2] (x, y, pixel centres at + 0.5) -> [B, N, C], bilinear."""
    height, width = images.shape[1:3]
    grid = torch.stack([pixels[..., 0] / width * 2 - 1, pixels[..., 1] / height * 2 - 1], dim=-1)  # [B, N, 2]
    sampled = F.grid_sample(images.permute(0, 3, 1, 2), grid[:, None], mode="bilinear", padding_mode="border",
                            align_corners=False)  # [B, C, 1, N]
    return sampled[:, :, 0].permute(0, 2, 1)


@torch.no_grad()
def correspondences(avatar: GaussianAvatar, sequence: FlameSequence, cameras: Sequence[Camera]
                    ) -> tuple[Tensor, Tensor]:
    """(pixels [T, N, 2] where each Gaussian lands in each frame, visible [T, N] bool) for the whole sequence."""
    rows = list(range(len(sequence)))
    if len(cameras) != len(rows):
        raise ValueError(f"{len(cameras)} cameras for {len(rows)} frames")
    means = avatar.gaussians_at(flame_rows(avatar, sequence, rows)).means  # [T, N, 3]
    pixels, z = project(means, cameras)  # [T, N, 2], [T, N]
    depth = frame_geometry(avatar, sequence, rows, cameras).depth  # [T, H, W]
    height, width = depth.shape[1:]
    inside = (pixels[..., 0] >= 0.5) & (pixels[..., 0] <= width - 0.5) & (pixels[..., 1] >= 0.5) \
        & (pixels[..., 1] <= height - 0.5)  # [T, N]
    columns = pixels[..., 0].floor().long().clamp(0, width - 1)
    lines = pixels[..., 1].floor().long().clamp(0, height - 1)
    surface = depth.flatten(1).gather(1, lines * width + columns)  # [T, N]
    visible = inside & (surface > 0) & ((z - surface).abs() <= DEPTH_TOLERANCE * surface)
    return pixels, visible


def warping_error(images: Tensor, pixels: Tensor, visible: Tensor) -> tuple[float, list[float]]:
    """(mean over consecutive pairs, per-pair E_t) for images [T, H, W, 3] and `correspondences` output."""
    if images.ndim != 4 or images.shape[0] != pixels.shape[0] or images.shape[0] < 2:
        raise ValueError(f"images must be [T >= 2, H, W, 3] matching {pixels.shape[0]} frames of correspondences, "
                         f"got {list(images.shape)}")
    colours = _sample(images.float(), pixels.float())  # [T, N, 3]
    errors = []
    for t in range(images.shape[0] - 1):
        both = visible[t] & visible[t + 1]  # [N]
        if not bool(both.any()):
            continue
        errors.append(float((colours[t + 1, both] - colours[t, both]).abs().mean()))
    if not errors:
        raise ValueError("no Gaussian is visible in two consecutive frames")
    return sum(errors) / len(errors), errors
