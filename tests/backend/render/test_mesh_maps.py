"""Geometry maps on rasterized meshes: normals, MagicPortrait depth, UVs, textures, SH shading."""

from __future__ import annotations

import math

import pytest
import torch

from backend.render import (
    camera_normal_map,
    depth_map,
    frontal_sh,
    interpolate,
    normal_map,
    rasterize_mesh,
    render_map,
    sample_texture,
    sh_basis,
    sh_shading,
    uv_map,
    vertex_normals,
)


def plane(K: torch.Tensor, depth: float, uv_box: tuple[float, float, float, float]) -> torch.Tensor:
    """[4, 3] corners of a camera-facing rectangle at `depth` that projects to (u0, v0, u1, v1)."""
    u0, v0, u1, v1 = uv_box
    q = torch.tensor([[u0, v0, 1.0], [u1, v0, 1.0], [u1, v1, 1.0], [u0, v1, 1.0]], dtype=torch.float64)
    return (depth * q @ torch.linalg.inv(K).T).float()


QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]])


@pytest.fixture(scope="module")
def sphere(icosphere, make_intrinsics):
    """Fragments of a radius-0.5 icosphere 2 m in front of a 96 x 96 camera, plus the scene constants."""
    vertices, faces = icosphere(4)
    K = make_intrinsics(120.0, 96, 96).float()
    world_to_camera = torch.eye(4)
    world_to_camera[2, 3] = 2.0
    frags = rasterize_mesh((0.5 * vertices).float(), faces, K, world_to_camera, 96, 96)
    return frags, faces, K


def test_plane_normals_face_the_camera(make_intrinsics):
    K = make_intrinsics(50.0, 32, 32)
    corners = plane(K, 2.0, (4, 4, 28, 28))
    for faces in (QUAD, QUAD.flip(1)):  # either winding: the side that is seen
        frags = rasterize_mesh(corners, faces, K.float(), torch.eye(4), 32, 32)
        mask = frags.mask[0]
        signed = camera_normal_map(frags, faces)[0]
        torch.testing.assert_close(signed[mask], torch.tensor([0.0, 0.0, -1.0]).expand(int(mask.sum()), 3))
        guidance = normal_map(frags, faces)[0]
        torch.testing.assert_close(guidance[mask], torch.tensor([0.0, 0.0, 1.0]).expand(int(mask.sum()), 3))
        assert bool((signed[~mask] == 0).all() and (guidance[~mask] == 0).all())


def test_sphere_normals_match_the_analytic_normal(sphere):
    frags, faces, K = sphere
    mask = frags.mask[0]
    j, i = torch.meshgrid(torch.arange(96.0) + 0.5, torch.arange(96.0) + 0.5, indexing="xy")
    rays = torch.stack([j, i, torch.ones_like(j)], -1) @ torch.linalg.inv(K).T  # [H, W, 3]
    hits = frags.depth[0, ..., None] * rays
    analytic = torch.nn.functional.normalize(hits - torch.tensor([0.0, 0.0, 2.0]), dim=-1)
    normals = camera_normal_map(frags, faces)[0]
    cosine = (normals[mask] * analytic[mask]).sum(-1).clamp(max=1.0)
    assert math.degrees(float(torch.arccos(cosine).max())) < 3.0
    # guidance map: view axes (y up), negatives clipped
    guidance = normal_map(frags, faces)[0]
    assert float(guidance.min()) == 0.0 and float(guidance.max()) <= 1.0
    assert float(guidance[20, 48, 1]) > 0.5 and float(guidance[76, 48, 1]) == 0.0  # top is green, bottom not
    assert float(guidance[48, 76, 0]) > 0.5 and float(guidance[48, 20, 0]) == 0.0  # right is red
    torch.testing.assert_close(guidance[mask], torch.stack([normals[mask][:, 0], -normals[mask][:, 1],
                                                            -normals[mask][:, 2]], -1).clamp(min=0))


def test_depth_map_is_magicportrait_normalised(sphere, make_intrinsics):
    frags, _, _ = sphere
    depth = depth_map(frags)
    mask = frags.mask[0]
    assert depth.shape == (1, 96, 96, 3)
    assert torch.equal(depth[..., 0], depth[..., 1]) and torch.equal(depth[..., 0], depth[..., 2])
    grey = depth[0, ..., 0]
    assert float(grey.max()) == 1.0 and float(grey[mask].min()) == 0.0 and bool((grey[~mask] == 0).all())
    assert float(grey[48, 48]) > 0.99  # the nearest point faces the camera at the centre
    nearest = frags.depth[0][mask].min()
    farthest = frags.depth[0][mask].max()
    torch.testing.assert_close(grey[mask], (farthest - frags.depth[0][mask]) / (farthest - nearest))
    # a flat foreground is all "nearest"
    K = make_intrinsics(50.0, 16, 16)
    flat = rasterize_mesh(plane(K, 3.0, (2, 2, 14, 14)), QUAD, K.float(), torch.eye(4), 16, 16)
    assert bool((depth_map(flat)[flat.mask] == 1).all())


def test_uv_map_and_texture_lookup(make_intrinsics):
    K = make_intrinsics(40.0, 20, 20)
    frags = rasterize_mesh(plane(K, 2.0, (0, 0, 20, 20)), QUAD, K.float(), torch.eye(4), 20, 20)
    # per-vertex UVs: OBJ convention, v up, so the top of the image is v = 1
    uvs = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    uv = uv_map(frags, uvs, QUAD)
    assert uv.shape == (1, 20, 20, 2)
    torch.testing.assert_close(uv[0, 3, 15], torch.tensor([15.5 / 20, 1 - 3.5 / 20]))
    # per-face-corner UVs (a seam): each triangle gets its own UV table rows
    table = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.5, 1.0], [1.0, 0.0], [0.5, 0.0]])
    seam = uv_map(frags, table, torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert float(seam[0, 15, 2, 0]) >= 0.5 and float(uv[0, 15, 2, 0]) < 0.2
    # texture row 0 is the top: v near 1 samples it
    texture = torch.zeros(2, 2, 3)
    texture[0, :, 0] = 1.0  # top row red
    texture[1, :, 2] = 1.0  # bottom row blue
    colours = sample_texture(texture, uv)
    torch.testing.assert_close(colours[0, 0, 10], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(colours[0, 19, 10], torch.tensor([0.0, 0.0, 1.0]))


def test_render_map_shades_albedo(sphere, make_intrinsics):
    K = make_intrinsics(40.0, 20, 20)
    frags = rasterize_mesh(plane(K, 2.0, (2, 2, 18, 18)), QUAD, K.float(), torch.eye(4), 20, 20)
    albedo = torch.full((1, 20, 20, 3), 0.5)
    render = render_map(frags, QUAD, albedo)  # default: soft frontal light, 1.0 on a facing surface
    torch.testing.assert_close(render[frags.mask], torch.full((int(frags.mask.sum()), 3), 0.5))
    assert bool((render[~frags.mask] == 0).all())
    ambient = torch.zeros(9, 3)
    ambient[0] = torch.tensor([0.5, 1.0, 8.0]) * math.sqrt(4 * math.pi)  # irradiance 0.5, 1, 8 per channel
    torch.testing.assert_close(render_map(frags, QUAD, albedo, ambient)[0, 10, 10], torch.tensor([0.25, 0.5, 1.0]))
    # per-vertex colours as albedo, on the sphere: darker towards the silhouette, never outside [0, 1]
    sphere_frags, faces, _ = sphere
    colours = torch.rand(int(faces.max()) + 1, 3, generator=torch.Generator().manual_seed(0))
    shaded = render_map(sphere_frags, faces, interpolate(colours, sphere_frags, faces))
    assert float(shaded.min()) >= 0.0 and float(shaded.max()) <= 1.0
    grey = render_map(sphere_frags, faces, torch.ones(1, 96, 96, 3))[0, ..., 0]
    facing = -camera_normal_map(sphere_frags, faces)[0, ..., 2]  # cosine to the optical axis
    torch.testing.assert_close(grey[sphere_frags.mask[0]], 0.6 + 0.4 * facing[sphere_frags.mask[0]])
    assert float(grey[48, 48]) > 0.99 and float(grey[48, 78]) < 0.8


def test_sh_basis_and_frontal_light():
    normals = torch.nn.functional.normalize(torch.randn(2, 5, 7, 3, generator=torch.Generator().manual_seed(1)),
                                            dim=-1)
    shading = sh_shading(normals, frontal_sh(ambient=0.3, frontal=0.6))
    torch.testing.assert_close(shading, (0.3 + 0.6 * normals[..., 2:3]).expand(-1, -1, -1, 3))
    basis = sh_basis(torch.tensor([0.0, 0.0, 1.0]))
    assert basis.shape == (9,) and float(basis[1]) == 0.0 and float(basis[8]) > 0
    batched = torch.stack([frontal_sh(), 2 * frontal_sh()])
    torch.testing.assert_close(sh_shading(normals, batched)[1], 2 * sh_shading(normals, frontal_sh())[1])
    with pytest.raises(ValueError, match=r"\[9, 3\] or \[B, 9, 3\], got \[4, 3\]"):
        sh_shading(normals, torch.zeros(4, 3))


def test_vertex_normals(icosphere):
    vertices, faces = icosphere(3)
    normals = vertex_normals(vertices, faces)
    torch.testing.assert_close(normals, vertices, rtol=0, atol=2e-2)  # unit sphere: normal = position
    # point-mirrored copy: edges flip sign, their cross products do not, so the normals now point inwards
    batched = vertex_normals(torch.stack([vertices, -vertices]), faces)
    assert batched.shape == (2, *vertices.shape)
    torch.testing.assert_close(batched[1], normals)
    lonely = vertex_normals(torch.rand(4, 3), torch.tensor([[0, 1, 2]]))
    assert bool((lonely[3] == 0).all())


def test_interpolation_is_differentiable(make_intrinsics):
    K = make_intrinsics(30.0, 16, 16)
    corners = plane(K, 2.0, (-4, -4, 20, 20)).requires_grad_(True)
    frags = rasterize_mesh(corners, QUAD, K.float(), torch.eye(4), 16, 16)
    colours = torch.tensor([[1.0], [0.0], [0.0], [0.0]], requires_grad=True)
    value = interpolate(colours, frags, QUAD).sum()
    value.backward()
    assert bool(torch.isfinite(corners.grad).all()) and float(corners.grad.abs().sum()) > 0
    assert float(colours.grad.sum()) == pytest.approx(256.0)  # barycentrics sum to 1 on each of 256 pixels


def test_maps_of_an_empty_scene_are_black(make_intrinsics):
    K = make_intrinsics(30.0, 12, 10).float()
    faces = torch.tensor([[0, 1, 2]])
    frags = rasterize_mesh(torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]), faces, K,
                           torch.eye(4), 12, 10)
    for image in (depth_map(frags), normal_map(frags, faces), camera_normal_map(frags, faces),
                  uv_map(frags, torch.rand(3, 2), faces), render_map(frags, faces, torch.ones(1, 10, 12, 3))):
        assert bool(torch.isfinite(image).all()) and bool((image == 0).all())


def test_bad_map_arguments_are_rejected(sphere):
    frags, faces, _ = sphere
    with pytest.raises(ValueError, match=r"fragments reference face \d+ but faces has only 2 rows"):
        interpolate(torch.rand(3, 1), frags, torch.tensor([[0, 1, 2], [0, 2, 1]]))
    with pytest.raises(ValueError, match=r"albedo must be a tensor \[B, H, W, 3\] = \[1, 96, 96, 3\]"):
        render_map(frags, faces, torch.ones(96, 96, 3))
    with pytest.raises(TypeError, match="MeshFragments"):
        depth_map(frags.depth)
    with pytest.raises(ValueError, match="uv must be a float tensor"):
        sample_texture(torch.rand(4, 4, 3), torch.rand(96, 96, 2))
