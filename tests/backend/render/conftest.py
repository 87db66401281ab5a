"""Meshes and cameras the mesh-rendering tests share."""

from __future__ import annotations

import math

import pytest
import torch


def _icosphere(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere: [V, 3] float64 vertices, [F, 3] int64 faces (counter-clockwise seen from outside)."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    base = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
            [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
             [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [torch.tensor(v, dtype=torch.float64) for v in base]
    verts = [v / v.norm() for v in verts]
    for _ in range(level):
        midpoints: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoints:
                m = verts[a] + verts[b]
                verts.append(m / m.norm())
                midpoints[key] = len(verts) - 1
            return midpoints[key]

        refined = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            refined += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = refined
    return torch.stack(verts), torch.tensor(faces)


@pytest.fixture(scope="session")
def icosphere():
    """Factory: icosphere(level) -> (vertices [V, 3] float64, faces [F, 3])."""
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def make(level: int) -> tuple[torch.Tensor, torch.Tensor]:
        if level not in cache:
            cache[level] = _icosphere(level)
        return cache[level]

    return make


def intrinsics(focal: float, width: int, height: int, dtype=torch.float64) -> torch.Tensor:
    """[3, 3] pinhole K with the principal point at the image centre."""
    return torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype)


@pytest.fixture(scope="session")
def make_intrinsics():
    return intrinsics
