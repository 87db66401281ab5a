"""Per-vertex and per-texel attributes carried onto rasterized pixels: vertex normals, barycentric
interpolation, texture lookup."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import checked_faces, describe
from .mesh_rasterizer import MeshFragments


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Smooth unit normals: the area-weighted sum of the adjacent faces' normals.

    A face (v0, v1, v2) contributes (v1 - v0) x (v2 - v0), so counter-clockwise faces seen from outside give
    outward normals. Vertices with no (non-degenerate) face get a zero normal.

    Args:
        vertices: [B, V, 3] or [V, 3].
        faces: [F, 3] integer vertex indices.

    Returns:
        [B, V, 3] or [V, 3], like `vertices`.
    """
    if not isinstance(vertices, Tensor) or not vertices.is_floating_point() or vertices.ndim not in (2, 3) \
            or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a float tensor [B, V, 3] or [V, 3], got {describe(vertices)}")
    faces = checked_faces("faces", faces, vertices.shape[-2], vertices.device)
    batch = vertices if vertices.ndim == 3 else vertices[None]
    corners = batch[:, faces]  # [B, F, 3, 3]
    edge1, edge2 = corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]  # [B, F, 3]
    face_normals = torch.linalg.cross(edge1, edge2)  # [B, F, 3] length = twice the face area
    per_corner = face_normals[:, :, None].expand(-1, -1, 3, -1).reshape(batch.shape[0], -1, 3)  # [B, F * 3, 3]
    summed = torch.zeros_like(batch).index_add(1, faces.reshape(-1), per_corner)  # [B, V, 3]
    normals = F.normalize(summed, dim=-1, eps=1e-20)  # [B, V, 3]
    return normals if vertices.ndim == 3 else normals[0]


def interpolate(attributes: Tensor, fragments: MeshFragments, faces: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex attributes at every pixel (zero on background).

    `faces` need not be the rasterized mesh's faces, only index the same faces in the same order: for UVs with
    seams pass the UV table [T, 2] and the UV faces [F, 3] (the OBJ `vt` / `f v/vt` layout FLAME ships).

    Args:
        attributes: [B, V, D] or [V, D] values per vertex (B may be 1 for all frames).
        fragments: from `rasterize_mesh`.
        faces: [F, 3] integer indices into `attributes`, one row per rasterized face.

    Returns:
        [B, H, W, D], differentiable w.r.t. `attributes` and `fragments.bary`.
    """
    if not isinstance(fragments, MeshFragments):
        raise TypeError(f"fragments must be MeshFragments, got {type(fragments).__name__}")
    if not isinstance(attributes, Tensor) or not attributes.is_floating_point() or attributes.ndim not in (2, 3):
        raise ValueError(f"attributes must be a float tensor [B, V, D] or [V, D], got {describe(attributes)}")
    face_id, bary = fragments.face_id, fragments.bary
    batch = face_id.shape[0]
    attributes = (attributes if attributes.ndim == 3 else attributes[None]).to(face_id.device)
    if attributes.shape[0] not in (1, batch):
        raise ValueError(f"attributes have batch {attributes.shape[0]}, fragments have {batch}")
    faces = checked_faces("faces", faces, attributes.shape[1], face_id.device)
    most = int(face_id.max()) if face_id.numel() else -1
    if most >= faces.shape[0]:
        raise ValueError(f"fragments reference face {most} but faces has only {faces.shape[0]} rows")
    dtype = torch.promote_types(attributes.dtype, bary.dtype)
    out_shape = (*face_id.shape, attributes.shape[-1])
    if most < 0:
        return torch.zeros(out_shape, dtype=dtype, device=face_id.device)
    per_face = attributes.to(dtype)[:, faces]  # [1 or B, F, 3, D]
    row = face_id.clamp(min=0)  # [B, H, W]
    if per_face.shape[0] > 1:
        row = row + torch.arange(batch, device=face_id.device)[:, None, None] * faces.shape[0]
    corners = per_face.flatten(0, 1).flatten(1).index_select(0, row.flatten())  # [B * H * W, 3 * D]
    corners = corners.view(*face_id.shape, 3, -1)  # [B, H, W, 3, D]
    values = torch.einsum("bhwk,bhwkd->bhwd", bary.to(dtype), corners)  # [B, H, W, D]
    return torch.where(fragments.mask[..., None], values, torch.zeros((), dtype=dtype, device=values.device))


def sample_texture(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear texture lookup.

    UVs follow the OBJ / FLAME convention: (0, 0) is the bottom-left corner of the texture, (1, 1) the top-right,
    and texture row 0 is the top. Lookups outside [0, 1] clamp to the border.

    Args:
        texture: [Ht, Wt, C] or [B, Ht, Wt, C] float texels.
        uv: [B, H, W, 2] texture coordinates (e.g. `uv_map`).

    Returns:
        [B, H, W, C], differentiable w.r.t. `texture` and `uv`.
    """
    if not isinstance(texture, Tensor) or not texture.is_floating_point() or texture.ndim not in (3, 4):
        raise ValueError(f"texture must be a float tensor [Ht, Wt, C] or [B, Ht, Wt, C], got {describe(texture)}")
    if not isinstance(uv, Tensor) or not uv.is_floating_point() or uv.ndim != 4 or uv.shape[-1] != 2:
        raise ValueError(f"uv must be a float tensor [B, H, W, 2], got {describe(uv)}")
    texture = (texture if texture.ndim == 4 else texture[None]).to(device=uv.device)
    if texture.shape[0] not in (1, uv.shape[0]):
        raise ValueError(f"texture has batch {texture.shape[0]}, uv has {uv.shape[0]}")
    dtype = torch.promote_types(texture.dtype, uv.dtype)
    image = texture.to(dtype).permute(0, 3, 1, 2).expand(uv.shape[0], -1, -1, -1)  # [B, C, Ht, Wt]
    grid = torch.stack([2.0 * uv[..., 0] - 1.0, 1.0 - 2.0 * uv[..., 1]], dim=-1).to(dtype)  # [B, H, W, 2]
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)  # [B, C, H, W]
    return sampled.permute(0, 2, 3, 1)  # [B, H, W, C]
