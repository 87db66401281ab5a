"""`rasterize_mesh`: hand-computable scenes, parity with a brute-force ray caster, batching, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.render import MeshFragments, camera_tensors, interpolate, rasterize_mesh, rasterize_mesh_cameras
from shared_proto.types import Camera


def rotation(axis: tuple[float, float, float], angle: float) -> torch.Tensor:
    """[3, 3] float64 rotation about `axis` (Rodrigues)."""
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    cross = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def pose(rot: torch.Tensor, translation: tuple[float, float, float]) -> torch.Tensor:
    """[4, 4] world_to_camera from a rotation and a translation."""
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = rot
    out[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return out


def unproject(uv: list[tuple[float, float]], depth: float, K: torch.Tensor) -> torch.Tensor:
    """[N, 3] camera-space points at `depth` that project to pixel coordinates `uv`."""
    q = torch.tensor([[u, v, 1.0] for u, v in uv], dtype=torch.float64)
    return depth * q @ torch.linalg.inv(K.to(torch.float64)).T


def pixel_rays(K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[H, W, 3] float64 ray directions (z = 1) through the pixel centres."""
    j, i = torch.meshgrid(torch.arange(width, dtype=torch.float64), torch.arange(height, dtype=torch.float64),
                          indexing="xy")
    q = torch.stack([j + 0.5, i + 0.5, torch.ones_like(j)], dim=-1)  # [H, W, 3]
    return q @ torch.linalg.inv(K.to(torch.float64)).T


def reference_rasterize(points: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, width: int, height: int,
                        near: float, far: float, tol: float = 1e-9):
    """Brute force, float64: every pixel ray against every face (camera-space `points`).

    Returns face_id [H, W], depth [H, W], bary [H, W, 3] and `ambiguous` [H, W]: pixels within `tol` of an edge,
    a clip plane or a depth tie, where either answer is right.
    """
    rays = pixel_rays(K, width, height)  # [H, W, 3]
    x = points.to(torch.float64)[faces]  # [F, 3, 3]
    x0, e1, e2 = x[:, 0], x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]
    n = torch.linalg.cross(e1, e2)  # [F, 3]
    den = rays @ n.T  # [H, W, F]
    t = (x0 * n).sum(-1) / den  # [H, W, F]
    b1 = rays @ torch.linalg.cross(e2, x0).T / den
    b2 = rays @ torch.linalg.cross(x0, e1).T / den
    bary = torch.stack([1 - b1 - b2, b1, b2], dim=-1)  # [H, W, F, 3]
    low = bary.amin(-1)  # [H, W, F]
    hit = (low >= 0) & (t >= near) & (t <= far)
    z = torch.where(hit, t, torch.inf)
    zs, order = z.sort(-1)
    face_id = torch.where(torch.isfinite(zs[..., 0]), order[..., 0], -1)
    near_edge = (low.abs() < tol) & (t > near - tol) & (t < far + tol)
    near_clip = (low > -tol) & (((t - near).abs() < tol) | ((t - far).abs() < tol))
    tie = (zs[..., 1] - zs[..., 0]) < tol if zs.shape[-1] > 1 else torch.zeros_like(face_id, dtype=torch.bool)
    ambiguous = (near_edge | near_clip).any(-1) | tie
    pick = face_id.clamp(min=0)[..., None]
    depth = torch.where(face_id >= 0, t.gather(-1, pick)[..., 0], 0.0)
    chosen = bary.gather(2, pick[..., None].expand(-1, -1, 1, 3))[:, :, 0]
    return face_id, depth, torch.where(face_id[..., None] >= 0, chosen, 0.0), ambiguous


def random_soup(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space triangle soup, some crossing the near/far planes or behind the camera: [3N, 3], [N, 3]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 1, 3, generator=g, dtype=torch.float64) * torch.tensor([2.4, 2.0, 4.5]) \
        - torch.tensor([1.2, 1.0, 0.5])
    sizes = 0.3 + 1.5 * torch.rand(count, 1, 1, generator=g, dtype=torch.float64)
    corners = centres + sizes * (torch.rand(count, 3, 3, generator=g, dtype=torch.float64) - 0.5)
    return corners.reshape(-1, 3), torch.arange(3 * count).reshape(count, 3)


def test_plane_facing_camera_is_exact(make_intrinsics):
    width, height, depth = 64, 48, 2.5
    K = make_intrinsics(100.0, width, height)
    corners = unproject([(10.2, 5.3), (50.7, 5.3), (50.7, 40.1), (10.2, 40.1)], depth, K)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        frags = rasterize_mesh(corners.to(dtype), faces, K.to(dtype), torch.eye(4, dtype=dtype), width, height)
        expected = torch.zeros(1, height, width, dtype=torch.bool)
        expected[0, 5:40, 10:51] = True  # centres (j + 0.5, i + 0.5) inside [10.2, 50.7] x [5.3, 40.1]
        assert torch.equal(frags.mask, expected)
        assert frags.depth.dtype == dtype and frags.bary.dtype == dtype
        torch.testing.assert_close(frags.depth[expected], torch.full_like(frags.depth[expected], depth),
                                   rtol=tol, atol=0)
        assert torch.all(frags.depth[~expected] == 0) and torch.all(frags.bary[~expected] == 0)
        torch.testing.assert_close(frags.bary.sum(-1)[expected], torch.ones_like(frags.depth[expected]))


def test_barycentrics_are_perspective_correct(make_intrinsics):
    width, height = 40, 30
    K = make_intrinsics(35.0, width, height)
    # a plane tilted 60 degrees, spanning depths 1..5: screen-space interpolation would be far off
    points = torch.tensor([[-3.0, -2.0, 1.0], [3.0, -2.0, 1.0], [3.0, 2.0, 5.0], [-3.0, 2.0, 5.0]],
                          dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags = rasterize_mesh(points, faces, K, torch.eye(4, dtype=torch.float64), width, height)
    assert frags.mask.sum() > 200
    surface = interpolate(points, frags, faces)[0]  # [H, W, 3]
    expected = frags.depth[0, ..., None] * pixel_rays(K, width, height)  # the hit point along each ray
    torch.testing.assert_close(surface[frags.mask[0]], expected[frags.mask[0]], rtol=0, atol=1e-12)


def test_triangle_coverage_matches_analytic_area(make_intrinsics):
    width, height = 96, 80
    K = make_intrinsics(80.0, width, height)
    tri_uv = [(7.3, 12.9), (88.1, 30.4), (31.6, 74.2)]
    points = unproject(tri_uv, 3.0, K).to(torch.float32)
    frags = rasterize_mesh(points, torch.tensor([[0, 1, 2]]), K.float(), torch.eye(4), width, height)
    # signed distances (pixels) of every pixel centre to the three edges, inside positive
    a = torch.tensor(tri_uv, dtype=torch.float64)
    centres = torch.stack(torch.meshgrid(torch.arange(width, dtype=torch.float64) + 0.5,
                                         torch.arange(height, dtype=torch.float64) + 0.5, indexing="xy"), -1)
    distances = []
    for p, q in ((a[0], a[1]), (a[1], a[2]), (a[2], a[0])):
        edge = q - p
        cross = edge[0] * (centres[..., 1] - p[1]) - edge[1] * (centres[..., 0] - p[0])
        distances.append(cross / edge.norm())
    inside = torch.stack(distances).amin(0)
    clear = inside.abs() > 1e-3
    assert torch.equal(frags.mask[0][clear], (inside > 0)[clear])
    area = 0.5 * abs(float((a[1, 0] - a[0, 0]) * (a[2, 1] - a[0, 1]) - (a[2, 0] - a[0, 0]) * (a[1, 1] - a[0, 1])))
    perimeter = sum(float((a[k] - a[(k + 1) % 3]).norm()) for k in range(3))
    assert abs(int(frags.mask.sum()) - area) <= perimeter / 2


def test_shared_edges_leave_no_cracks(make_intrinsics):
    width = height = 64
    K = make_intrinsics(64.0, width, height)
    # a square split along its diagonal, which passes exactly through the pixel centres (j + 0.5, j + 0.5)
    square = unproject([(0, 0), (64, 0), (64, 64), (0, 64)], 2.0, K).float()
    frags = rasterize_mesh(square, torch.tensor([[0, 1, 2], [0, 2, 3]]), K.float(), torch.eye(4), width, height)
    assert bool(frags.mask.all())
    # a jittered, tilted grid of 2 x 24 x 24 triangles covering the image, several vertices per pixel edge
    g = torch.Generator().manual_seed(3)
    n = 25
    uu, vv = torch.meshgrid(torch.linspace(-4, 68, n, dtype=torch.float64),
                            torch.linspace(-4, 68, n, dtype=torch.float64), indexing="xy")
    jitter = (torch.rand(n, n, 2, generator=g, dtype=torch.float64) - 0.5) * 2.0
    jitter[[0, -1]] = 0
    jitter[:, [0, -1]] = 0
    uv = torch.stack([uu, vv], -1) + jitter
    depth = 2.0 + 0.02 * uv[..., 0]  # tilted
    q = torch.cat([uv, torch.ones(n, n, 1, dtype=torch.float64)], -1)
    points = (depth[..., None] * q @ torch.linalg.inv(K).T).reshape(-1, 3).float()
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten(), idx[1:, 1:].flatten(), idx[1:, :-1].flatten()
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)])
    frags = rasterize_mesh(points, faces, K.float(), torch.eye(4), width, height)
    assert bool(frags.mask.all())
    # a fan of 7 faces around a vertex on a pixel centre, spokes through other pixel centres
    rim = [(30.5 + 20 * math.cos(a), 30.5 + 20 * math.sin(a)) for a in torch.linspace(0, 2 * math.pi, 8)[:-1]]
    fan = unproject([(30.5, 30.5), (50.5, 30.5), (30.5, 50.5), (10.5, 30.5), (30.5, 10.5)] + rim, 2.0, K).float()
    spokes = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]]
                          + [[0, 5 + k, 5 + (k + 1) % 7] for k in range(7)])
    for faces in (spokes[:4], spokes[4:]):
        frags = rasterize_mesh(fan, faces, K.float(), torch.eye(4), width, height)
        j, i = torch.meshgrid(torch.arange(width) + 0.5, torch.arange(height) + 0.5, indexing="xy")
        assert bool(frags.mask[0][(j - 30.5) ** 2 + (i - 30.5) ** 2 < 13 ** 2].all())  # inside both polygons


def test_sphere_silhouette_and_depth(icosphere, make_intrinsics):
    width = height = 128
    focal, radius, distance = 150.0, 0.6, 2.0
    vertices, faces = icosphere(4)
    K = make_intrinsics(focal, width, height)
    frags = rasterize_mesh((radius * vertices).float(), faces, K.float(),
                           pose(torch.eye(3, dtype=torch.float64), (0.0, 0.0, distance)).float(), width, height)
    expected_radius = focal * radius / math.sqrt(distance ** 2 - radius ** 2)
    assert abs(math.sqrt(float(frags.mask.sum()) / math.pi) - expected_radius) < 1.0
    j, i = torch.meshgrid(torch.arange(width) + 0.5, torch.arange(height) + 0.5, indexing="xy")
    r_px = ((j - width / 2) ** 2 + (i - height / 2) ** 2).sqrt()
    assert bool(frags.mask[0][r_px < expected_radius - 1].all())
    assert not bool(frags.mask[0][r_px > expected_radius + 1].any())
    centre = frags.depth[0, height // 2, width // 2]
    assert abs(float(centre) - (distance - radius)) < 2e-3 * radius  # facets sit slightly inside the sphere


def test_nearest_face_wins(make_intrinsics):
    width, height = 32, 32
    K = make_intrinsics(40.0, width, height)
    near_quad = unproject([(8, 8), (24, 8), (24, 24), (8, 24)], 1.5, K)
    far_quad = unproject([(0, 0), (32, 0), (32, 32), (0, 32)], 3.0, K)
    quads = torch.tensor([[0, 1, 2], [0, 2, 3]])
    for first, second in ((near_quad, far_quad), (far_quad, near_quad)):
        points = torch.cat([first, second]).float()
        faces = torch.cat([quads, quads + 4])
        frags = rasterize_mesh(points, faces, K.float(), torch.eye(4), width, height)
        front = 0 if first is near_quad else 2
        assert bool(frags.mask.all())
        inner = frags.face_id[0, 8:24, 8:24]
        assert bool(((inner == front) | (inner == front + 1)).all())
        torch.testing.assert_close(frags.depth[0, 8:24, 8:24], torch.full((16, 16), 1.5))
        torch.testing.assert_close(frags.depth[0, :8], torch.full((8, 32), 3.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_clipping(seed, make_intrinsics):
    width, height, near, far = 52, 40, 0.3, 3.5
    K = make_intrinsics(30.0, width, height)
    K[0, 1] = 3.0 if seed == 1 else 0.0  # skew
    K[0, 2] += 2.7
    points, faces = random_soup(seed, 80)
    rot = rotation((1.0, -2.0, 0.5), 0.7)
    world_to_camera = pose(rot, (0.1, -0.2, 0.3))
    world = (points - world_to_camera[:3, 3]) @ rot  # camera -> world
    face_id, depth, bary, ambiguous = reference_rasterize(points, faces, K, width, height, near, far)
    assert (face_id >= 0).float().mean() > 0.3 and ambiguous.float().mean() < 0.01
    frags = rasterize_mesh(world, faces, K, world_to_camera, width, height, near=near, far=far)
    clear = ~ambiguous
    assert torch.equal(frags.face_id[0][clear], face_id[clear])
    torch.testing.assert_close(frags.depth[0][clear], depth[clear], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(frags.bary[0][clear], bary[clear], rtol=0, atol=1e-7)
    assert bool((frags.depth[0][frags.mask[0]] >= near).all() and (frags.depth[0] <= far).all())
    # float32 agrees except within a hair of edges
    frags32 = rasterize_mesh(world.float(), faces, K.float(), world_to_camera.float(), width, height, near, far)
    *_, loose = reference_rasterize(points, faces, K, width, height, near, far, tol=1e-4)
    assert torch.equal(frags32.face_id[0][~loose], face_id[~loose])


def test_faces_behind_the_camera_are_invisible(make_intrinsics):
    width, height = 32, 24
    K = make_intrinsics(30.0, width, height)
    # a large triangle fully behind the camera (z < 0); its naive projection would land on the image
    behind = torch.tensor([[-2.0, -2.0, -1.0], [2.0, -2.0, -1.0], [0.0, 2.0, -1.5]])
    frags = rasterize_mesh(behind, torch.tensor([[0, 1, 2]]), K.float(), torch.eye(4), width, height)
    assert not bool(frags.mask.any())
    # between the camera and the near plane
    frags = rasterize_mesh(behind.abs() * 0.01, torch.tensor([[0, 1, 2]]), K.float(), torch.eye(4), width, height,
                           near=0.1)
    assert not bool(frags.mask.any())


def test_empty_scenes_have_no_nans(make_intrinsics):
    K = make_intrinsics(30.0, 16, 12).float()
    vertices = torch.rand(2, 5, 3)
    for faces in (torch.zeros(0, 3, dtype=torch.long), torch.tensor([[0, 1, 2]])):
        offscreen = vertices + torch.tensor([100.0, 0.0, 1.0])
        frags = rasterize_mesh(offscreen, faces, K, torch.eye(4), 16, 12)
        assert frags.face_id.shape == (2, 12, 16) and bool((frags.face_id == -1).all())
        assert frags.bary.shape == (2, 12, 16, 3) and bool((frags.bary == 0).all())
        assert bool((frags.depth == 0).all()) and not bool(frags.mask.any())


def test_batch_equals_single_calls(icosphere, make_intrinsics):
    width, height = 48, 40
    vertices, faces = icosphere(2)
    vertices = vertices.float() * 0.5
    K = torch.stack([make_intrinsics(f, width, height) for f in (40.0, 55.0, 70.0)]).float()
    poses = torch.stack([pose(rotation((0.0, 1.0, 0.2), a), (0.1 * a, 0.0, 2.0 + a)) for a in (0.0, 0.5, 1.0)])
    poses = poses.float()
    meshes = torch.stack([vertices, vertices * 1.2, vertices + 0.1])
    batched = rasterize_mesh(meshes, faces, K, poses, width, height)
    for b in range(3):
        single = rasterize_mesh(meshes[b], faces, K[b], poses[b], width, height)
        assert torch.equal(batched.face_id[b], single.face_id[0])
        torch.testing.assert_close(batched.depth[b], single.depth[0])
        torch.testing.assert_close(batched.bary[b], single.bary[0])
    # one mesh, three cameras (vertices broadcast), per-frame clip distances
    shared = rasterize_mesh(vertices, faces, K, poses, width, height, near=torch.tensor([0.01, 0.01, 2.5]))
    assert shared.face_id.shape == (3, height, width)
    assert torch.equal(shared.face_id[0], rasterize_mesh(vertices, faces, K[0], poses[0], width, height).face_id[0])
    visible = shared.depth[2][shared.mask[2]]
    assert visible.numel() > 0 and bool((visible >= 2.5).all())


def test_camera_objects_follow_camera_project(icosphere):
    width, height = 64, 48
    rot = rotation((0.3, 1.0, -0.2), 0.4)
    camera = Camera(K=np.array([[70.0, 0.0, 30.3], [0.0, 65.0, 25.1], [0.0, 0.0, 1.0]]),
                    world_to_camera=pose(rot, (0.2, -0.1, 3.0)).numpy(), width=width, height=height)
    point = np.array([0.15, -0.2, 0.1])
    u, v, z = camera.project(point[None])[0]
    # a small triangle around the point, facing the camera
    cam_to_world = camera.camera_to_world
    offsets = np.array([[-0.02, -0.02, 0.0], [0.03, -0.01, 0.0], [0.0, 0.03, 0.0]]) @ cam_to_world[:3, :3].T
    vertices = torch.tensor(point + offsets, dtype=torch.float32)
    frags = rasterize_mesh_cameras(vertices, torch.tensor([[0, 1, 2]]), camera)
    assert frags.face_id.shape == (1, height, width)
    assert int(frags.face_id[0, int(v), int(u)]) == 0
    assert abs(float(frags.depth[0, int(v), int(u)]) - z) < 1e-4
    # the same through camera_tensors, with two cameras
    other = Camera(K=camera.K, world_to_camera=pose(torch.eye(3), (0.0, 0.0, 2.0)).numpy(), width=width,
                   height=height, near=0.5, far=10.0)
    tensors = camera_tensors([camera, other])
    assert tensors.K.shape == (2, 3, 3) and tensors.near.tolist() == [pytest.approx(0.01), 0.5]
    both = rasterize_mesh(vertices, torch.tensor([[0, 1, 2]]), *tensors)
    assert torch.equal(both.face_id[0], frags.face_id[0])


def test_depth_and_barycentrics_are_differentiable(make_intrinsics):
    width, height = 16, 16
    K = make_intrinsics(20.0, width, height)
    points = unproject([(-20, -20), (40, -20), (0, 40)], 2.0, K).float().requires_grad_(True)
    frags = rasterize_mesh(points, torch.tensor([[0, 1, 2]]), K.float(), torch.eye(4), width, height)
    assert isinstance(frags, MeshFragments) and bool(frags.mask.all())
    frags.depth[0, 8, 8].backward()
    # moving the whole plane along z moves the hit point by the same amount
    assert float(points.grad[:, 2].sum()) == pytest.approx(1.0, abs=1e-4)
    assert bool(torch.isfinite(points.grad).all())
    # full Jacobian of depth and barycentrics at interior pixels of a tilted face, against finite differences
    tilted = torch.tensor([[-1.0, -1.0, 1.5], [1.5, -0.8, 2.5], [-0.2, 1.4, 2.0]], dtype=torch.float64)

    def sample(vertices: torch.Tensor) -> torch.Tensor:
        frags = rasterize_mesh(vertices, torch.tensor([[0, 1, 2]]), K, torch.eye(4, dtype=torch.float64), 16, 16)
        return torch.cat([frags.depth[0, 7:9, 6:9].flatten(), frags.bary[0, 7:9, 6:9].flatten()])

    assert bool((sample(tilted) != 0).all())
    torch.autograd.gradcheck(sample, (tilted.requires_grad_(True),))


def test_bad_arguments_are_rejected(make_intrinsics):
    K = make_intrinsics(30.0, 16, 12).float()
    vertices, faces, eye = torch.rand(4, 3), torch.tensor([[0, 1, 2]]), torch.eye(4)
    with pytest.raises(TypeError, match="vertices"):
        rasterize_mesh(vertices.numpy(), faces, K, eye, 16, 12)
    with pytest.raises(ValueError, match=r"vertices must be a float tensor.*\[4, 2\]"):
        rasterize_mesh(vertices[:, :2], faces, K, eye, 16, 12)
    with pytest.raises(ValueError, match=r"faces must index 0..3, got indices in \[0, 7\]"):
        rasterize_mesh(vertices, torch.tensor([[0, 1, 7]]), K, eye, 16, 12)
    with pytest.raises(ValueError, match="faces must be an integer tensor"):
        rasterize_mesh(vertices, faces.float(), K, eye, 16, 12)
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        rasterize_mesh(vertices, faces, K, eye, 0, 12)
    with pytest.raises(ValueError, match="0 < near < far"):
        rasterize_mesh(vertices, faces, K, eye, 16, 12, near=2.0, far=1.0)
    with pytest.raises(ValueError, match="batch sizes"):
        rasterize_mesh(torch.rand(2, 4, 3), faces, K.expand(3, 3, 3), eye, 16, 12)
    with pytest.raises(ValueError, match="finite"):
        rasterize_mesh(vertices * torch.nan, faces, K, eye, 16, 12)
    with pytest.raises(ValueError, match="K must be upper triangular"):
        rasterize_mesh(vertices, faces, -K, eye, 16, 12)
    with pytest.raises(TypeError, match="Camera"):
        rasterize_mesh_cameras(vertices, faces, ["not a camera"])
    camera = Camera(K=K.numpy(), world_to_camera=np.eye(4), width=16, height=12)
    wide = Camera(K=K.numpy(), world_to_camera=np.eye(4), width=20, height=12)
    with pytest.raises(ValueError, match=r"share an image size.*\(16, 12\), \(20, 12\)"):
        camera_tensors([camera, wide])
