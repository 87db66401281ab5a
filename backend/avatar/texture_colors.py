"""Albedo of surface points, sampled from a head's texture."""

from __future__ import annotations

import torch
from torch import Tensor

from backend.flame.texture import HeadTexture
from backend.render import sample_texture


def surface_colors(texture: HeadTexture | None, faces: Tensor, barycentric: Tensor) -> Tensor:
    """Albedo in [0, 1] at surface points, bilinear.

    Args:
        texture: the head's UVs and image (None, or no image: 0.5 grey).
        faces: [N] triangle of each point.
        barycentric: [N, 3] its barycentric coordinates.

    Returns:
        [N, 3] float32 colours.
    """
    if texture is None or texture.image is None:
        return torch.full((faces.shape[0], 3), 0.5)
    corners = torch.as_tensor(texture.face_uvs())[faces.cpu()]  # [N, 3, 2]
    uv = (barycentric.to(corners.dtype)[:, :, None] * corners).sum(1)  # [N, 2]
    image = torch.as_tensor(texture.image, dtype=torch.float32) / 255.0  # [H, W, 3]
    return sample_texture(image, uv.float()[None, :, None, :])[0, :, 0]  # [N, 3]
