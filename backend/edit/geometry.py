"""What the editing loop and the flicker bench know about a frame from the avatar's own geometry: the posed head
mesh rasterized through the frame's camera (normals, coverage, depth), its projected landmarks, and where each
Gaussian lands in the image.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor

from backend.avatar import GaussianAvatar
from backend.avatar.sources import flame_inputs
from backend.render import camera_normal_map, camera_tensors, rasterize_mesh_cameras
from shared_proto import Camera, FlameSequence


@dataclasses.dataclass(frozen=True, eq=False)
class FrameGeometry:
    """The posed head mesh seen by each frame's camera.

    Attributes:
        normals: [B, H, W, 3] smooth unit normals in OpenCV camera axes facing the camera, zero off the mesh.
        coverage: [B, H, W] float, 1 where the mesh covers the pixel.
        depth: [B, H, W] camera z of the visible surface (0 off the mesh).
        landmarks: [B, L, 2] the head's landmarks in pixels (x, y).
    """

    normals: Tensor
    coverage: Tensor
    depth: Tensor
    landmarks: Tensor


def flame_rows(avatar: GaussianAvatar, sequence: FlameSequence, rows: Sequence[int]) -> dict[str, Tensor]:
    """The FLAME inputs of `rows` of the sequence as [B, n] tensors on the avatar's device."""
    device, dtype = avatar.shape.device, avatar.shape.dtype
    index = list(rows)
    return {name: torch.as_tensor(value[index], dtype=dtype, device=device)
            for name in flame_inputs(avatar) if (value := getattr(sequence, name)) is not None}


def project(points: Tensor, cameras: Sequence[Camera]) -> tuple[Tensor, Tensor]:
    """(pixels [B, N, 2] as (x, y) with pixel (i, j)'s centre at (j + 0.5, i + 0.5), camera z [B, N]) of world
    points [B, N, 3] through one camera per row."""
    views = camera_tensors(list(cameras), device=points.device, dtype=points.dtype)
    rotation, translation = views.world_to_camera[:, :3, :3], views.world_to_camera[:, :3, 3]  # [B, 3, 3], [B, 3]
    camera_points = points @ rotation.transpose(1, 2) + translation[:, None]  # [B, N, 3]
    z = camera_points[..., 2]  # [B, N]
    image = camera_points @ views.K.transpose(1, 2)  # [B, N, 3]
    return image[..., :2] / z.clamp_min(1e-9)[..., None], z


@torch.no_grad()
def frame_geometry(avatar: GaussianAvatar, sequence: FlameSequence, rows: Sequence[int],
                   cameras: Sequence[Camera]) -> FrameGeometry:
    """Rasterize the avatar's posed head for `rows` of the sequence, frame b through cameras[b]."""
    rows = list(rows)
    if len(cameras) != len(rows):
        raise ValueError(f"{len(cameras)} cameras for {len(rows)} frames")
    output = avatar.head(shape=avatar.shape[None], **flame_rows(avatar, sequence, rows))
    fragments = rasterize_mesh_cameras(output.vertices, avatar.head.faces, list(cameras))
    normals = camera_normal_map(fragments, avatar.head.faces)  # [B, H, W, 3]
    landmarks, _ = project(output.landmarks, cameras)  # [B, L, 2]
    return FrameGeometry(normals=normals, coverage=fragments.mask.to(normals.dtype), depth=fragments.depth,
                         landmarks=landmarks)
