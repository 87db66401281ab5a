"""Where Gaussians start: points on a triangle mesh, deterministic for a seed.

Two modes. Per triangle: `per_triangle` points on every triangle (one: its centroid, as GaussianAvatars;
more: stratified random points in it). Total count: `count` points spread over the surface in proportion to
each triangle's *UV* area when UVs are given (so the density follows the texture layout: the face, which
the atlas enlarges, gets more Gaussians than the back of the head), else to its 3D area. Triangles get their
share by systematic sampling (each gets floor or ceil of its expected count, no clumping); inside a
triangle points are uniform and stratified (a randomly shifted low-discrepancy sequence).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

_R2 = np.array([0.7548776662466927, 0.5698402909980532])  # 1 / g, 1 / g^2 with g^3 = g + 1
AREA_SHARE = 0.1
"""With UVs, this fraction of the density still follows 3D area, so triangles with no texels get covered."""


@dataclasses.dataclass(frozen=True, eq=False)
class SurfaceSamples:
    """Points on a mesh.

    Attributes:
        faces: [N] int64 triangle of each point.
        barycentric: [N, 3] float64 barycentric coordinates in that triangle.
        spacing: [N] float64 expected distance to neighbouring points (sqrt of the triangle's area per point),
            in the mesh's units.
    """

    faces: Tensor
    barycentric: Tensor
    spacing: Tensor


def sample_surface(vertices: Tensor, faces: Tensor, *, count: int | None = None, per_triangle: int = 1,
                   face_uvs: np.ndarray | None = None, seed: int = 0) -> SurfaceSamples:
    """Sample points on a triangle mesh.

    Args:
        vertices: [V, 3] rest-pose vertices.
        faces: [F, 3] vertex indices.
        count: total number of points (None: `per_triangle` on every triangle).
        per_triangle: points per triangle when `count` is None.
        face_uvs: [F, 3, 2] UVs of each triangle's corners; weights the total-count mode by UV area.
        seed: random seed; the same inputs and seed give the same points.

    Returns:
        `SurfaceSamples` with N = count or F * per_triangle.
    """
    corners = vertices.detach().cpu().double().numpy()[faces.cpu().numpy()]  # [F, 3, 3]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    n_faces = areas.shape[0]
    if n_faces == 0:
        raise ValueError("cannot sample Gaussians on a mesh with no triangles")
    rng = np.random.default_rng(seed)
    if count is None:
        chosen = np.repeat(np.arange(n_faces), per_triangle)  # [N]
        expected = np.full(n_faces, float(per_triangle))  # [F]
        barycentric = (np.full((chosen.size, 3), 1.0 / 3.0) if per_triangle == 1
                       else _stratified_barycentric(rng, chosen, n_faces))
    else:
        weights = _weights(areas, face_uvs)  # [F], sums to 1
        cumulative = np.cumsum(weights)
        positions = (rng.random() + np.arange(count)) / count  # [N] systematic sampling
        chosen = np.minimum(np.searchsorted(cumulative, positions * cumulative[-1], side="right"), n_faces - 1)
        expected = weights * count  # [F]
        barycentric = _stratified_barycentric(rng, chosen, n_faces)
    spacing = np.sqrt(areas[chosen] / np.maximum(expected[chosen], 1e-12))  # [N]
    return SurfaceSamples(faces=torch.from_numpy(chosen.astype(np.int64)), barycentric=torch.from_numpy(barycentric),
                          spacing=torch.from_numpy(spacing))


def _weights(areas: np.ndarray, face_uvs: np.ndarray | None) -> np.ndarray:
    """[F] share of the points each triangle gets."""
    if areas.sum() <= 0:
        raise ValueError("cannot sample Gaussians on a mesh whose triangles all have zero area")
    by_area = areas / areas.sum()
    if face_uvs is None:
        return by_area
    edges = face_uvs[:, 1:] - face_uvs[:, :1]  # [F, 2, 2]
    uv_areas = 0.5 * np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0])  # [F]
    if uv_areas.sum() <= 0:
        return by_area
    return (1.0 - AREA_SHARE) * uv_areas / uv_areas.sum() + AREA_SHARE * by_area


def _stratified_barycentric(rng: np.random.Generator, chosen: np.ndarray, n_faces: int) -> np.ndarray:
    """[N, 3] barycentric coordinates, uniform over each triangle and evenly spread among its points.

    The j-th point of a triangle takes the j-th point of the R2 low-discrepancy sequence, shifted by a random
    offset per triangle (Cranley-Patterson rotation), mapped to the triangle by the area-preserving square-root
    warp: stratified, so points of one triangle do not clump.
    """
    starts = np.searchsorted(chosen, chosen, side="left")  # chosen is sorted: first row of each triangle
    rank = np.arange(chosen.size) - starts  # [N] index of the point within its triangle
    offsets = rng.random((n_faces, 2))[chosen]  # [N, 2]
    unit = np.mod(offsets + rank[:, None] * _R2, 1.0)  # [N, 2]
    root, other = np.sqrt(unit[:, 0]), unit[:, 1]
    return np.stack([1.0 - root, root * (1.0 - other), root * other], axis=1)
