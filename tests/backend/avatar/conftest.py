"""A small textured head in FLAME `.npz` layout (a UV sphere), cameras, and a dense Gaussian splatter.

The sphere (radius `RADIUS`, y up, front +z) has lat-long UVs with a seam (`vt` / `ft`) and a texture whose
colour at (u, v) is (u, v, 0.5), so a Gaussian's colour tells where on the atlas it sits. Skinning: the upper
hemisphere follows the root joint, the lower one the jaw (no pose correctives); the landmark-free model has
4 shape and 6 expression components.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.avatar.geometry import quaternion_to_matrix
from backend.flame import BUILTIN_HEAD_PATH, FlameModel

RADIUS = 0.1
N_LAT, N_LON = 12, 24
TEXTURE_HEIGHT, TEXTURE_WIDTH = 32, 64


def sphere_arrays(n_lat: int = N_LAT, n_lon: int = N_LON, seed: int = 0) -> dict[str, np.ndarray]:
    """FLAME-layout arrays of a UV sphere, plus `vt`, `ft` and `texture`."""
    rng = np.random.default_rng(seed)
    vertices = [[0.0, RADIUS, 0.0]]
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon
            vertices.append([RADIUS * math.sin(theta) * math.sin(phi), RADIUS * math.cos(theta),
                             RADIUS * math.sin(theta) * math.cos(phi)])
    vertices.append([0.0, -RADIUS, 0.0])
    vertices = np.array(vertices)
    south = len(vertices) - 1

    def ring(i: int, j: int) -> int:  # vertex id on ring i (1..n_lat-1), column j (wraps)
        return 1 + (i - 1) * n_lon + j % n_lon

    def tex(i: int, j: int) -> int:  # vt id on row i (0..n_lat), column j (0..n_lon, seam duplicated)
        return i * (n_lon + 1) + j

    vt = np.array([[j / n_lon, 1.0 - i / n_lat] for i in range(n_lat + 1) for j in range(n_lon + 1)])
    faces, uv_faces = [], []
    for j in range(n_lon):  # counter-clockwise seen from outside
        faces.append([0, ring(1, j), ring(1, j + 1)])
        uv_faces.append([tex(0, j), tex(1, j), tex(1, j + 1)])
        faces.append([south, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
        uv_faces.append([tex(n_lat, j), tex(n_lat - 1, j + 1), tex(n_lat - 1, j)])
        for i in range(1, n_lat - 1):
            a, b, c, d = ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1)
            ta, tb, tc, td = tex(i, j), tex(i + 1, j), tex(i + 1, j + 1), tex(i, j + 1)
            faces += [[a, b, c], [a, c, d]]
            uv_faces += [[ta, tb, tc], [ta, tc, td]]
    n = len(vertices)
    weights = np.zeros((n, 5))
    weights[vertices[:, 1] > 0, 0] = 1.0
    weights[vertices[:, 1] <= 0, 2] = 1.0
    rows = (np.arange(TEXTURE_HEIGHT) + 0.5) / TEXTURE_HEIGHT
    cols = (np.arange(TEXTURE_WIDTH) + 0.5) / TEXTURE_WIDTH
    texture = np.stack(np.broadcast_arrays(cols[None, :], 1.0 - rows[:, None], np.full((1, 1), 0.5)), axis=-1)
    return {
        "v_template": vertices,
        "f": np.array(faces, dtype=np.int64),
        "shapedirs": rng.normal(size=(n, 3, 10)) * 2e-3,
        "n_shape": np.array(4),
        "posedirs": np.zeros((n, 3, 36)),
        "J_regressor": np.full((5, n), 1.0 / n),
        "kintree_table": np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "weights": weights,
        "vt": vt,
        "ft": np.array(uv_faces, dtype=np.int64),
        "texture": np.round(texture * 255).astype(np.uint8),
    }


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tensors are small: one intra-op thread is faster than two fighting over shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sphere_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the textured sphere head `.npz`."""
    path = tmp_path_factory.mktemp("sphere") / "sphere_head.npz"
    np.savez(path, **sphere_arrays())
    return path


@pytest.fixture(scope="session")
def sphere_head(sphere_npz: Path) -> FlameModel:
    return FlameModel.from_file(sphere_npz)


@pytest.fixture
def builtin_head() -> FlameModel:
    """Keyface's built-in head; skips while the asset has not been generated."""
    if not BUILTIN_HEAD_PATH.is_file():
        pytest.skip(f"built-in head asset {BUILTIN_HEAD_PATH} not generated yet")
    return FlameModel.builtin()


def expected_color(points: torch.Tensor) -> torch.Tensor:
    """[N, 3] texture colour (u, v, 0.5) at the lat-long UV of points on the sphere."""
    x, y, z = points.double().unbind(-1)
    u = torch.remainder(torch.atan2(x, z) / (2 * math.pi), 1.0)
    v = 1.0 - torch.acos((y / points.double().norm(dim=-1)).clamp(-1, 1)) / math.pi
    return torch.stack([u, v, torch.full_like(u, 0.5)], dim=-1)


def front_camera(size: int = 48, distance: float = 0.5, focal: float = 150.0) -> SimpleNamespace:
    """K [1, 3, 3] and world_to_camera [1, 4, 4] of a camera on +z looking at the origin (OpenCV axes)."""
    K = torch.tensor([[[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]])
    # camera x = world x, camera y = -world y, camera z = -world z; the origin sits `distance` ahead
    world_to_camera = torch.tensor([[[1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, -1.0, distance], [0, 0, 0, 1.0]]])
    return SimpleNamespace(K=K, world_to_camera=world_to_camera, width=size, height=size)


def dense_splat(means, quats, scales, opacities, features, K, world_to_camera, width, height, *, near, far,
                background=None):
    """Reference EWA splatting, every Gaussian against every pixel, sorted front to back (tests only).

    Same signature and outputs as `backend.render.rasterize_gaussians` (features, alpha, depth); features
    [N, D] or [C, N, D]; pixel (i, j) is sampled at (j + 0.5, i + 0.5).
    """
    images, alphas, depths = [], [], []
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([cols, rows], dim=-1).reshape(-1, 2).double()  # [P, 2]
    for c in range(K.shape[0]):
        rotation, translation = world_to_camera[c, :3, :3].double(), world_to_camera[c, :3, 3].double()
        cam = means.double() @ rotation.T + translation  # [N, 3]
        keep = (cam[:, 2] > near) & (cam[:, 2] < far)
        order = torch.argsort(torch.where(keep, cam[:, 2], torch.full_like(cam[:, 2], math.inf)))[:int(keep.sum())]
        cam = cam[order]
        x, y, z = cam.unbind(-1)
        fx, fy, cx, cy = K[c, 0, 0].double(), K[c, 1, 1].double(), K[c, 0, 2].double(), K[c, 1, 2].double()
        rot = quaternion_to_matrix(quats[order].double())  # [M, 3, 3]
        cov = rot @ torch.diag_embed(scales[order].double() ** 2) @ rot.transpose(1, 2)  # [M, 3, 3]
        cov = rotation @ cov @ rotation.T
        jac = torch.zeros(len(order), 2, 3, dtype=torch.float64)
        jac[:, 0, 0], jac[:, 0, 2] = fx / z, -fx * x / z**2
        jac[:, 1, 1], jac[:, 1, 2] = fy / z, -fy * y / z**2
        cov2 = jac @ cov @ jac.transpose(1, 2) + 0.3 * torch.eye(2, dtype=torch.float64)  # [M, 2, 2]
        centre = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [M, 2]
        delta = pixels[None] - centre[:, None]  # [M, P, 2]
        power = -0.5 * torch.einsum("mpi,mij,mpj->mp", delta, torch.linalg.inv(cov2), delta)
        alpha = (opacities[order].double()[:, None] * power.exp()).clamp(max=0.99)  # [M, P]
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:1]), 1 - alpha[:-1]]), dim=0)
        weight = alpha * transmittance  # [M, P]
        feats = (features[c] if features.ndim == 3 else features)[order].double()  # [M, D]
        images.append((weight.T @ feats).reshape(height, width, -1))
        alphas.append(weight.sum(0).reshape(height, width, 1))
        depths.append((weight.T @ z[:, None]).reshape(height, width, 1))
    return SimpleNamespace(features=torch.stack(images).float(), alpha=torch.stack(alphas).float(),
                           depth=torch.stack(depths).float())


@pytest.fixture(scope="session")
def splat():
    """`dense_splat`, the reference rasteriser."""
    return dense_splat


@pytest.fixture(scope="session")
def camera():
    """`front_camera(size=48, distance=0.5, focal=150.0)`."""
    return front_camera


@pytest.fixture(scope="session")
def sphere_color():
    """`expected_color(points [N, 3]) -> [N, 3]`, the sphere texture's colour at points on the sphere."""
    return expected_color
