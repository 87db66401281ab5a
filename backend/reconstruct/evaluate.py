"""Held-out quality of an avatar: PSNR and SSIM of its renders against dataset frames.

Definitions (what every Keyface reconstruction number means):
- region "full": every pixel of the frame, RGB, the render clamped to [0, 1] and composited over the dataset's
  background (as the frames are), at the dataset's resolution;
- region "mask": PSNR over the pixels whose foreground mask is > 0.5; SSIM averaged over the window centres
  inside the mask;
- PSNR = -10 log10(MSE) with peak 1, SSIM as `losses.ssim_map` (11 x 11 Gaussian window, valid positions);
  both computed per frame, then averaged over the frames.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from . import losses
from .dataset import FrameDataset

REGIONS = ("full", "mask")
CHUNK = 4
"""Frames rendered together."""


def frame_metrics(rgb: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """([B] PSNR dB, [B] SSIM) of renders rgb [B, H, W, 3] (clamped here) against target [B, H, W, 3], over the
    whole frame or, with mask [B, H, W], the region "mask" (module docstring)."""
    rgb = rgb.clamp(0.0, 1.0)
    psnr = losses.psnr(rgb, target, mask)
    ssim_map = losses.ssim_map(rgb, target).mean(dim=-1)  # [B, h, w]
    if mask is None:
        return psnr, ssim_map.flatten(1).mean(dim=1)
    border = losses.SSIM_WINDOW // 2
    inside = (mask[:, border:-border, border:-border] > 0.5).to(ssim_map)  # [B, h, w]
    return psnr, (ssim_map * inside).flatten(1).sum(dim=1) / inside.flatten(1).sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def evaluate_frames(render: Callable[[list[int]], Tensor], dataset: FrameDataset, indices: list[int],
                    region: Literal["full", "mask"] = "full") -> dict[str, float]:
    """{"psnr", "ssim", "frames"} averaged over dataset frames `indices`; `render(indices)` -> [B, H, W, 3]."""
    indices = list(indices)
    if not indices or any(not 0 <= i < len(dataset) for i in indices):
        raise ValueError(f"indices must be a non-empty list of frames in [0, {len(dataset) - 1}], got {indices[:8]}")
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if region == "mask" and dataset.masks is None:
        raise ValueError("region 'mask' needs a dataset with masks")
    psnrs, ssims = [], []
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start:start + CHUNK]
        rgb = render(chunk)
        target = dataset.images[chunk].to(rgb)
        mask = None if region == "full" else dataset.masks[chunk].to(rgb)  # type: ignore[index]
        psnr, ssim = frame_metrics(rgb, target, mask)
        psnrs.append(psnr)
        ssims.append(ssim)
    return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean()), "frames": len(indices)}
