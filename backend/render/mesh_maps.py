"""Geometry maps for diffusion guidance, from rasterized mesh fragments (MagicPortrait convention).

All maps are [B, H, W, C] float in [0, 1] with a black (zero) background, ready for RGB / 255 style input:

- `depth_map`: camera z min-max normalised per frame over the foreground, nearest = 1, farthest = 0, grey in
  3 channels.
- `normal_map`: smooth camera-aligned normals in view axes (x right, y up, z towards the viewer, as DECA renders
  them for MagicPortrait; a surface facing the camera is (0, 0, 1), blue), negative components clipped to 0.
  `camera_normal_map` gives the signed unit normals in OpenCV camera axes (facing the camera: (0, 0, -1)).
- `uv_map`: interpolated texture coordinates.
- `render_map`: albedo x SH shading (`sh.py`), clamped to [0, 1].

Normals are flipped per face to face the camera: a face seen from its back side (open meshes, the inside of the
mouth) shows the normal of the side that is seen.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import describe
from .mesh_attributes import interpolate, vertex_normals
from .mesh_rasterizer import MeshFragments
from .sh import frontal_sh, sh_shading

_OPENCV_TO_VIEW = (1.0, -1.0, -1.0)
"""Axis signs from OpenCV camera axes (x right, y down, z forward) to view axes (x right, y up, z to viewer)."""


def depth_map(fragments: MeshFragments) -> Tensor:
    """MagicPortrait depth: per frame, (z_far - z) / (z_far - z_near) over the foreground; background 0.

    A frame whose foreground has a single depth (a plane facing the camera) is 1 everywhere on it.

    Args:
        fragments: from `rasterize_mesh`.

    Returns:
        [B, H, W, 3] grey depth in [0, 1].
    """
    _check_fragments(fragments)
    depth, mask = fragments.depth, fragments.mask  # [B, H, W]
    zero = torch.zeros((), dtype=depth.dtype, device=depth.device)
    farthest = torch.where(mask, depth, zero).amax(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    nearest = torch.where(mask, depth, farthest).amin(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    span = farthest - nearest  # [B, 1, 1]
    flat = span <= 0
    relative = (farthest - depth) / torch.where(flat, torch.ones_like(span), span)  # [B, H, W]
    relative = torch.where(flat, torch.ones_like(relative), relative)
    grey = torch.where(mask, relative, zero)  # [B, H, W]
    return grey[..., None].expand(-1, -1, -1, 3).contiguous()  # [B, H, W, 3]


def camera_normal_map(fragments: MeshFragments, faces: Tensor) -> Tensor:
    """Smooth unit normals in OpenCV camera axes, facing the camera; background 0.

    Args:
        fragments: from `rasterize_mesh`.
        faces: [F, 3] the rasterized faces.

    Returns:
        [B, H, W, 3] signed unit normals (a plane facing the camera gives (0, 0, -1)).
    """
    _check_fragments(fragments)
    verts = fragments.vertices_camera  # [B, V, 3]
    smooth = interpolate(vertex_normals(verts, faces), fragments, faces)  # [B, H, W, 3]
    faces = faces.to(device=verts.device, dtype=torch.long)
    corners = verts[:, faces]  # [B, F, 3, 3]
    edge1, edge2 = corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]  # [B, F, 3]
    face_normals = torch.linalg.cross(edge1, edge2)  # [B, F, 3] same winding as the vertex normals
    back_faces = (face_normals * corners[:, :, 0]).sum(-1) > 0  # [B, F] normal points away from the camera
    face_id = fragments.face_id.clamp(min=0)  # [B, H, W]
    if back_faces.shape[1] == 0:
        return smooth
    seen_from_back = back_faces.gather(1, face_id.flatten(1)).view_as(face_id)  # [B, H, W]
    oriented = torch.where(seen_from_back[..., None], -smooth, smooth)  # [B, H, W, 3]
    return torch.nn.functional.normalize(oriented, dim=-1, eps=1e-20)  # background stays 0


def normal_map(fragments: MeshFragments, faces: Tensor) -> Tensor:
    """MagicPortrait normals: view axes (x right, y up, z towards the viewer), negatives clipped to 0.

    Args:
        fragments: from `rasterize_mesh`.
        faces: [F, 3] the rasterized faces.

    Returns:
        [B, H, W, 3] in [0, 1] (a plane facing the camera gives (0, 0, 1)).
    """
    return _to_view_axes(camera_normal_map(fragments, faces)).clamp(min=0.0)  # [B, H, W, 3]


def uv_map(fragments: MeshFragments, uvs: Tensor, uv_faces: Tensor) -> Tensor:
    """Texture coordinates per pixel; background 0.

    Args:
        fragments: from `rasterize_mesh`.
        uvs: [T, 2] or [B, T, 2] texture coordinates (OBJ convention, v up).
        uv_faces: [F, 3] indices into `uvs` per rasterized face (the mesh faces when UVs are per vertex).

    Returns:
        [B, H, W, 2].
    """
    if not isinstance(uvs, Tensor) or uvs.shape[-1:] != (2,):
        raise ValueError(f"uvs must be a tensor [T, 2] or [B, T, 2], got {describe(uvs)}")
    return interpolate(uvs, fragments, uv_faces)  # [B, H, W, 2]


def render_map(fragments: MeshFragments, faces: Tensor, albedo: Tensor, sh_coefficients: Tensor | None = None
               ) -> Tensor:
    """Shaded render: albedo x SH irradiance of the smooth normals, clamped to [0, 1]; background 0.

    Args:
        fragments: from `rasterize_mesh`.
        faces: [F, 3] the rasterized faces.
        albedo: [B, H, W, 3] per-pixel albedo in [0, 1], e.g. `sample_texture(texture, uv_map(...))` or
            `interpolate(vertex_colors, fragments, faces)`.
        sh_coefficients: [B, 9, 3] or [9, 3] (`sh.py` convention); default `frontal_sh()`.

    Returns:
        [B, H, W, 3] in [0, 1].
    """
    _check_fragments(fragments)
    if not isinstance(albedo, Tensor) or albedo.shape != (*fragments.face_id.shape, 3):
        raise ValueError(f"albedo must be a tensor [B, H, W, 3] = {[*fragments.face_id.shape, 3]}, got "
                         f"{describe(albedo)}")
    normals = _to_view_axes(camera_normal_map(fragments, faces))  # [B, H, W, 3]
    if sh_coefficients is None:
        sh_coefficients = frontal_sh(device=normals.device, dtype=normals.dtype)
    shaded = (albedo.to(normals) * sh_shading(normals, sh_coefficients)).clamp(0.0, 1.0)  # [B, H, W, 3]
    return torch.where(fragments.mask[..., None], shaded, torch.zeros((), dtype=shaded.dtype, device=shaded.device))


def _to_view_axes(normals: Tensor) -> Tensor:
    """[..., 3] OpenCV camera axes -> view axes (x right, y up, z towards the viewer)."""
    return normals * normals.new_tensor(_OPENCV_TO_VIEW)


def _check_fragments(fragments: object) -> None:
    if not isinstance(fragments, MeshFragments):
        raise TypeError(f"fragments must be MeshFragments, got {type(fragments).__name__}")
