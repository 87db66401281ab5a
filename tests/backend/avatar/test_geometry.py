"""Triangle frames, quaternion algebra and 3DGS spherical harmonics."""

from __future__ import annotations

import math

import pytest
import torch

from backend.avatar.geometry import face_frames, matrix_to_quaternion, quaternion_multiply, quaternion_to_matrix
from backend.avatar.sh import C0, eval_sh, rgb_to_sh, sh_degree_of, sh_to_rgb


def random_quaternions(n: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=-1)


def test_face_frame_of_a_known_triangle():
    vertices = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    centroids, rotations, scales = face_frames(vertices, torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(centroids[0, 0], torch.tensor([2 / 3, 1 / 3, 0.0]))
    # x along v0 -> v1, y the normal (x × (v2 - v0)), z = x × y
    torch.testing.assert_close(rotations[0, 0], torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]))
    torch.testing.assert_close(scales[0, 0], torch.tensor([1.5]))  # (edge 2 + height 1) / 2


def test_face_frames_are_rotations_and_follow_rigid_motion():
    generator = torch.Generator().manual_seed(1)
    vertices = torch.randn(1, 30, 3, generator=generator, dtype=torch.float64)
    faces = torch.randint(0, 30, (40, 3), generator=generator)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    centroids, rotations, scales = face_frames(vertices, faces)
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, eye)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(rotations.shape[:2], dtype=torch.float64))
    turn = quaternion_to_matrix(random_quaternions(1, seed=2))[0]
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    moved = face_frames(vertices @ turn.T + shift, faces)
    torch.testing.assert_close(moved[0], centroids @ turn.T + shift)
    torch.testing.assert_close(moved[1], turn @ rotations)
    torch.testing.assert_close(moved[2], scales)


def test_degenerate_triangles_stay_finite():
    vertices = torch.zeros(1, 3, 3, requires_grad=True)
    centroids, rotations, scales = face_frames(vertices, torch.tensor([[0, 1, 2]]))
    (centroids.sum() + rotations.sum() + scales.log().sum()).backward()
    assert torch.isfinite(scales.log()).all() and torch.isfinite(vertices.grad).all()


def test_matrix_quaternion_round_trip_including_half_turns():
    quaternions = random_quaternions(500)
    half_turns = torch.nn.functional.normalize(torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                                                             [1e-9, 1, 1, 0]], dtype=torch.float64), dim=-1)
    quaternions = torch.cat([quaternions, half_turns])
    back = matrix_to_quaternion(quaternion_to_matrix(quaternions))
    same_sign = torch.where(quaternions[:, :1] < 0, -quaternions, quaternions)
    assert (back[:, 0] >= 0).all()
    torch.testing.assert_close(quaternion_to_matrix(back), quaternion_to_matrix(quaternions))
    torch.testing.assert_close(back[:500], same_sign[:500])


def test_quaternion_product_composes_rotations():
    a, b = random_quaternions(50, seed=3), random_quaternions(50, seed=4)
    torch.testing.assert_close(quaternion_to_matrix(quaternion_multiply(a, b)),
                               quaternion_to_matrix(a) @ quaternion_to_matrix(b))


def test_sh_dc_conversions_and_degree():
    rgb = torch.rand(10, 3)
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(rgb)), rgb)
    assert rgb_to_sh(torch.full((3,), 0.5)).abs().max() == 0
    assert [sh_degree_of(k) for k in (1, 4, 9, 16)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="1, 4, 9 or 16"):
        sh_degree_of(5)
    coefficients = torch.zeros(4, 16, 3)
    coefficients[:, 0] = 1.0
    torch.testing.assert_close(eval_sh(coefficients, torch.randn(4, 3)), torch.full((4, 3), 0.5 + C0))


def test_sh_basis_is_orthonormal():
    """The 16 basis functions eval_sh uses are orthonormal over the sphere (Fibonacci-lattice quadrature)."""
    count = 20_000
    index = torch.arange(count, dtype=torch.float64) + 0.5
    height, azimuth = 1 - 2 * index / count, math.pi * (1 + math.sqrt(5)) * index
    ring = (1 - height**2).sqrt()
    directions = torch.stack([ring * azimuth.cos(), ring * azimuth.sin(), height], dim=1)  # [P, 3], equal areas
    basis = []
    for k in range(16):
        coefficients = torch.zeros(16, 3, dtype=torch.float64)
        coefficients[0, 0] = 100.0  # lifts the colour above the clamp at 0
        coefficients[k, 0] += 1.0
        basis.append(eval_sh(coefficients, directions)[:, 0] - 0.5 - 100.0 * C0)
    basis = torch.stack(basis, dim=1)  # [P, 16]
    gram = basis.T @ basis / directions.shape[0] * 4 * math.pi
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-3, rtol=0)
