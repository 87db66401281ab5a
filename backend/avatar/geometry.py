"""Triangle frames (GaussianAvatars) and the quaternion algebra the avatar composes rotations with.

Quaternions are (w, x, y, z), Hamilton product, and rotate column vectors: R(a * b) = R(a) @ R(b).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_TRIANGLE_SCALE = 1e-8
"""Floor of a triangle's scale (metres), so degenerate triangles keep finite log-scales."""


def face_frames(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Local frame of every triangle, as GaussianAvatars defines it.

    Origin: the centroid. Axes (columns of the rotation): x along the first edge v0 -> v1, y the normal
    x × (v2 - v0), z = x × y (right-handed). Scale: the mean of the first edge's length and the triangle's
    height over that edge.

    Args:
        vertices: [B, V, 3] posed vertices.
        faces: [F, 3] vertex indices.

    Returns:
        centroids [B, F, 3], rotations [B, F, 3, 3] (columns = local axes in world), scales [B, F, 1].
    """
    corners = vertices[:, faces]  # [B, F, 3, 3]
    v0, v1, v2 = corners.unbind(dim=2)  # 3 x [B, F, 3]
    edge, diagonal = v1 - v0, v2 - v0  # [B, F, 3]
    x_axis = _safe_normalize(edge)  # [B, F, 3]
    y_axis = _safe_normalize(torch.linalg.cross(x_axis, diagonal))  # [B, F, 3]
    z_axis = _safe_normalize(torch.linalg.cross(x_axis, y_axis))  # [B, F, 3]
    rotations = torch.stack([x_axis, y_axis, z_axis], dim=-1)  # [B, F, 3, 3]
    height = (z_axis * diagonal).sum(-1, keepdim=True).abs()  # [B, F, 1]
    scales = ((edge.norm(dim=-1, keepdim=True) + height) / 2).clamp_min(MIN_TRIANGLE_SCALE)  # [B, F, 1]
    return corners.mean(dim=2), rotations, scales


def _safe_normalize(vectors: Tensor) -> Tensor:
    """Unit vectors; a zero vector stays zero (no NaN, finite gradients)."""
    return vectors * torch.rsqrt((vectors * vectors).sum(-1, keepdim=True).clamp_min(1e-20))


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of [..., 4] wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quaternion_to_matrix(quaternions: Tensor) -> Tensor:
    """[..., 4] wxyz quaternions (any norm) -> [..., 3, 3] rotation matrices."""
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*quaternions.shape[:-1], 3, 3)


def matrix_to_quaternion(matrices: Tensor) -> Tensor:
    """[..., 3, 3] rotation matrices -> [..., 4] unit wxyz quaternions with w >= 0.

    Each of the four candidate formulas divides by one of 4w², 4x², 4y², 4z²; the one with the largest
    divisor is used per matrix, so the result is accurate for every rotation.
    """
    m = matrices
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    squares = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)  # [..., 4] = 4w², 4x², 4y², 4z²
    roots = squares.clamp_min(1e-12).sqrt()  # [..., 4] = 2|w|, 2|x|, 2|y|, 2|z|
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    candidates = torch.stack([  # row k: 4 * q * (q_k) for the k-th largest-component formula
        torch.stack([squares[..., 0], d21, d02, d10], dim=-1),
        torch.stack([d21, squares[..., 1], s10, s02], dim=-1),
        torch.stack([d02, s10, squares[..., 2], s21], dim=-1),
        torch.stack([d10, s02, s21, squares[..., 3]], dim=-1),
    ], dim=-2) / (2 * roots[..., :, None])  # [..., 4, 4]
    best = squares.argmax(dim=-1)  # [...]
    chosen = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]  # [..., 4]
    chosen = F.normalize(chosen, dim=-1)
    return torch.where(chosen[..., :1] < 0, -chosen, chosen)
