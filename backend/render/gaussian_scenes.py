"""Synthetic Gaussian scenes with a realistic per-tile load, for benchmarks and parity tests."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class GaussianScene:
    """Gaussians and C cameras, in the argument order of `rasterize_gaussians`."""

    means: Tensor
    """[N, 3] world positions in metres."""
    quats: Tensor
    """[N, 4] wxyz, not normalised."""
    scales: Tensor
    """[N, 3] linear standard deviations in metres."""
    opacities: Tensor
    """[N] in [0, 1]."""
    features: Tensor
    """[N, D] uniform in [0, 1]."""
    K: Tensor
    """[C, 3, 3] intrinsics in pixels."""
    world_to_camera: Tensor
    """[C, 4, 4] OpenCV."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""


def head_scene(
    num_gaussians: int,
    width: int,
    height: int,
    *,
    num_cameras: int = 1,
    channels: int = 3,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> GaussianScene:
    """A head-sized avatar: Gaussians on an ellipsoid (16 x 22 x 20 cm) at the origin, scales 2-5 mm,
    opacities 0.3-1, seen from 0.6 m by cameras spread over ±20° of yaw, the head filling ~70% of the height.
    """
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(num_gaussians, 3, generator=generator), dim=-1)
    means = directions * torch.tensor([0.08, 0.11, 0.10])  # [N, 3]
    quats = torch.randn(num_gaussians, 4, generator=generator)  # [N, 4]
    scales = 0.002 + 0.003 * torch.rand(num_gaussians, 3, generator=generator)  # [N, 3]
    opacities = 0.3 + 0.7 * torch.rand(num_gaussians, generator=generator)  # [N]
    features = torch.rand(num_gaussians, channels, generator=generator)  # [N, D]

    focal = 1.9 * height
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]).repeat(num_cameras, 1, 1)
    yaw = torch.linspace(-0.35, 0.35, num_cameras) if num_cameras > 1 else torch.zeros(1)  # [C]
    world_to_camera = torch.eye(4).repeat(num_cameras, 1, 1)  # [C, 4, 4]
    world_to_camera[:, 0, 0], world_to_camera[:, 0, 2] = torch.cos(yaw), torch.sin(yaw)
    world_to_camera[:, 2, 0], world_to_camera[:, 2, 2] = -torch.sin(yaw), torch.cos(yaw)
    world_to_camera[:, 2, 3] = 0.6
    return GaussianScene(*(t.to(device=device, dtype=dtype) for t in
                           (means, quats, scales, opacities, features, K, world_to_camera)), width, height)
