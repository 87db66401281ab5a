"""Cameras as batched tensors, and the world -> camera transform the rasterizers share.

Convention (OpenCV, as `shared_proto.types.Camera`): x right, y down, z forward; `K` in pixels; the
continuous image coordinates put (0, 0) at the top-left corner of pixel (0, 0), so pixel (i, j) (row i,
column j) covers [j, j + 1) x [i, i + 1) and is sampled at its centre (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from shared_proto.types import Camera


class CameraTensors(NamedTuple):
    """A batch of cameras sharing one image size, in the order `rasterize_mesh` takes them after the mesh."""

    K: Tensor
    """[B, 3, 3] intrinsics in pixels."""
    world_to_camera: Tensor
    """[B, 4, 4] rigid world -> camera transforms."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    near: Tensor
    """[B] near clip distances (camera-space z)."""
    far: Tensor
    """[B] far clip distances (camera-space z)."""


def camera_tensors(
    cameras: Camera | Sequence[Camera],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> CameraTensors:
    """Stack `shared_proto` cameras (one per frame) into batched tensors.

    Args:
        cameras: one `Camera` or a non-empty sequence of them; all must share width and height.
        device: where the tensors live (default: torch's default device).
        dtype: floating dtype of the tensors.

    Returns:
        `CameraTensors` with B = number of cameras.
    """
    if isinstance(cameras, Camera):
        cameras = [cameras]
    if isinstance(cameras, (str, bytes)) or not isinstance(cameras, Sequence) or not cameras:
        raise TypeError(f"cameras must be a Camera or a non-empty sequence of Camera, got {cameras!r}")
    bad = [f"{i}: {type(c).__name__}" for i, c in enumerate(cameras) if not isinstance(c, Camera)]
    if bad:
        raise TypeError(f"cameras must all be shared_proto.types.Camera; not at index {', '.join(bad[:5])}")
    sizes = sorted({(c.width, c.height) for c in cameras})
    if len(sizes) != 1:
        raise ValueError(f"cameras in one batch must share an image size (width, height), got {sizes}")
    width, height = sizes[0]

    def stack(values: list) -> Tensor:
        return torch.as_tensor(np.stack(values), dtype=dtype, device=device)

    return CameraTensors(
        K=stack([c.K for c in cameras]),
        world_to_camera=stack([c.world_to_camera for c in cameras]),
        width=width,
        height=height,
        near=stack([np.float64(c.near) for c in cameras]),
        far=stack([np.float64(c.far) for c in cameras]),
    )


def world_to_camera_points(points: Tensor, world_to_camera: Tensor) -> Tensor:
    """Apply rigid transforms to batched points.

    Args:
        points: [B, N, 3] world points.
        world_to_camera: [B, 4, 4].

    Returns:
        [B, N, 3] camera-space points.
    """
    rotation = world_to_camera[:, :3, :3]  # [B, 3, 3]
    translation = world_to_camera[:, None, :3, 3]  # [B, 1, 3]
    return points @ rotation.transpose(1, 2) + translation  # [B, N, 3]
