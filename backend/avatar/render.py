"""Render posed avatar Gaussians to images: SH colour per view, or a splatted Neural Gaussian Texture decoded
by the avatar's neural renderer.

The rasteriser is `backend.render.rasterize_gaussians` (gsplat on CUDA, a portable one elsewhere) unless
another function with its signature is passed:
`rasterize(means [N, 3], quats [N, 4], scales [N, 3], opacities [N], features [N, D] or [C, N, D], K [C, 3, 3],
world_to_camera [C, 4, 4], width, height, *, near, far) -> (features [C, H, W, D], alpha [C, H, W, 1],
depth [C, H, W, 1], ...)`. The background is composited here (features are splatted over zero).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import Tensor

from backend.render import CameraTensors

from .gaussians import Gaussians
from .model import GaussianAvatar
from .sh import eval_sh


@dataclasses.dataclass(frozen=True, eq=False)
class AvatarRender:
    """Images of an avatar, one per (frame, camera) pair.

    Attributes:
        rgb: [B, H, W, 3] colour over `background` (not clamped; the neural renderer may overshoot [0, 1]).
        alpha: [B, H, W, 1] accumulated opacity.
        depth: [B, H, W, 1] as the rasteriser returns it.
        features: [B, H, W, D] the splatted Neural Gaussian Texture (premultiplied; its first 3 channels are
            the RGB that PortraitGen supervises directly), None for SH avatars.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    features: Tensor | None


def render_avatar(avatar: GaussianAvatar, gaussians: Gaussians, cameras: CameraTensors, *,
                  background: Tensor | None = None, rasterize: Callable[..., Any] | None = None) -> AvatarRender:
    """Render posed Gaussians (from `avatar.gaussians_at`) through cameras (from `backend.render.camera_tensors`).

    Frames and cameras pair up: B frames with B cameras (frame b through camera b), one frame through C
    cameras, or B frames through one shared camera.

    Args:
        avatar: the avatar the Gaussians belong to (its neural renderer decodes neural textures).
        gaussians: B posed frames.
        cameras: C cameras sharing one image size.
        background: [3] colour behind the head (default black).
        rasterize: a function with `rasterize_gaussians`' signature (default: that one).
    """
    if not isinstance(gaussians, Gaussians):
        raise TypeError(f"gaussians must be Gaussians (from avatar.gaussians_at), got {type(gaussians).__name__}")
    if not isinstance(cameras, CameraTensors):
        raise TypeError(f"cameras must be CameraTensors (from backend.render.camera_tensors), "
                        f"got {type(cameras).__name__}")
    if rasterize is None:
        from backend.render import rasterize_gaussians as rasterize  # the Gaussian rasteriser is optional here
    frames, views = gaussians.batch_size, cameras.K.shape[0]
    if frames != views and 1 not in (frames, views):
        raise ValueError(f"{frames} frames and {views} cameras do not pair up (equal counts, or one of them 1)")
    if frames == 1:
        calls = [(0, slice(0, views))]
    else:
        calls = [(b, slice(0, 1) if views == 1 else slice(b, b + 1)) for b in range(frames)]
    device = gaussians.means.device
    images, alphas, depths = [], [], []
    for frame, view in calls:
        K, world_to_camera = cameras.K[view].to(device), cameras.world_to_camera[view].to(device)
        means = gaussians.means[frame]  # [N, 3]
        if gaussians.sh is not None:
            rotation, translation = world_to_camera[:, :3, :3], world_to_camera[:, :3, 3]  # [C, 3, 3], [C, 3]
            centres = -(rotation.transpose(1, 2) @ translation[..., None])[..., 0]  # [C, 3]
            features = eval_sh(gaussians.sh[None], means[None] - centres[:, None])  # [C, N, 3]
        else:
            features = gaussians.features  # [N, D]
        out = rasterize(means, gaussians.quats[frame], gaussians.scales[frame], gaussians.opacities[frame], features,
                        K, world_to_camera, cameras.width, cameras.height, near=float(cameras.near[view].min()),
                        far=float(cameras.far[view].max()))
        images.append(out.features)
        alphas.append(out.alpha)
        depths.append(out.depth)
    splatted, alpha, depth = torch.cat(images), torch.cat(alphas), torch.cat(depths)  # [B, H, W, *]
    rgb = splatted if avatar.renderer is None else avatar.renderer(splatted)  # [B, H, W, 3]
    if background is not None:
        rgb = rgb + (1.0 - alpha) * background.to(rgb)
    return AvatarRender(rgb=rgb, alpha=alpha, depth=depth, features=None if avatar.renderer is None else splatted)
