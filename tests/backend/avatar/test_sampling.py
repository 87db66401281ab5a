"""Surface sampling: per triangle, total count by 3D or UV area, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar.sampling import AREA_SHARE, sample_surface

# two triangles of equal 3D area whose UV areas are 3 : 1
QUAD = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
QUAD_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])
QUAD_UVS = np.array([[[0.0, 0.0], [0.75, 0.0], [0.75, 1.0]], [[0.0, 0.0], [0.25, 1.0], [0.0, 1.0]]])


def test_same_seed_same_points_other_seed_other_points(sphere_head):
    def sample(seed):
        return sample_surface(sphere_head.v_template, sphere_head.faces, count=500, seed=seed)

    first, again, other = sample(3), sample(3), sample(4)
    assert torch.equal(first.faces, again.faces) and torch.equal(first.barycentric, again.barycentric)
    assert not torch.equal(first.barycentric, other.barycentric)


def test_per_triangle_mode(sphere_head):
    n_faces = sphere_head.faces.shape[0]
    one = sample_surface(sphere_head.v_template, sphere_head.faces, per_triangle=1)
    assert torch.equal(one.faces, torch.arange(n_faces))
    torch.testing.assert_close(one.barycentric, torch.full((n_faces, 3), 1 / 3, dtype=torch.float64))
    three = sample_surface(sphere_head.v_template, sphere_head.faces, per_triangle=3)
    assert torch.equal(three.faces, torch.arange(n_faces).repeat_interleave(3))
    assert len({tuple(row) for row in three.barycentric[:3].tolist()}) == 3


def test_barycentric_coordinates_are_valid(sphere_head):
    samples = sample_surface(sphere_head.v_template, sphere_head.faces, count=2000, seed=1)
    assert (samples.barycentric >= 0).all()
    torch.testing.assert_close(samples.barycentric.sum(1), torch.ones(2000, dtype=torch.float64))


def test_counts_follow_area_and_uv_area():
    by_area = sample_surface(QUAD, QUAD_FACES, count=1000, seed=0)
    assert torch.bincount(by_area.faces, minlength=2).tolist() == [500, 500]
    by_uv = sample_surface(QUAD, QUAD_FACES, count=1000, face_uvs=QUAD_UVS, seed=0)
    share = (1 - AREA_SHARE) * 0.75 + AREA_SHARE * 0.5
    counts = torch.bincount(by_uv.faces, minlength=2)
    assert abs(int(counts[0]) - 1000 * share) <= 1  # systematic sampling: floor or ceil of the expectation
    # spacing = sqrt(area / expected points on the triangle)
    torch.testing.assert_close(by_uv.spacing[by_uv.faces == 0][0], torch.tensor(np.sqrt(0.5 / (1000 * share)),
                                                                             dtype=torch.float64))


def test_uv_sampling_follows_the_texture_layout(sphere_head):
    """Lat-long UVs stretch the poles: per 3D area they get more Gaussians than the equator."""
    from backend.avatar import read_head_texture

    texture = read_head_texture(sphere_head)
    samples = sample_surface(sphere_head.v_template, sphere_head.faces, count=20_000, seed=0,
                             face_uvs=texture.face_uvs())
    corners = sphere_head.v_template.double()[sphere_head.faces[samples.faces]]
    heights = (samples.barycentric[:, :, None] * corners).sum(1)[:, 1] / 0.1  # y / radius
    polar, equatorial = (heights.abs() > 0.9).double().mean(), (heights.abs() < 0.1).double().mean()
    # equal-height bands have equal area on a sphere, so uniform 3D sampling would give a ratio of 1
    assert polar / equatorial > 1.5


def test_empty_or_flat_meshes_are_refused():
    with pytest.raises(ValueError, match="no triangles"):
        sample_surface(QUAD, torch.zeros(0, 3, dtype=torch.long), count=10)
    with pytest.raises(ValueError, match="zero area"):
        sample_surface(QUAD, torch.tensor([[0, 0, 1]]), count=10)
