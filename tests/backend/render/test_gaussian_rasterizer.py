"""`rasterize_gaussians`: closed-form single Gaussian, culling, empty scenes, argument checks (CPU)."""

from __future__ import annotations

import math
import os

import pytest
import torch

from backend.render import gaussian_rasterizer
from backend.render.gaussian_gsplat import ensure_extensions_dir
from backend.render.gaussian_projection import project_gaussians
from backend.render.gaussian_rasterizer import rasterize_gaussians

PORTABLE = ["torch", "reference"]
F64 = torch.float64


def camera(focal=(40.0, 44.0), centre=(17.0, 13.0), angle=0.2, translation=(0.05, -0.02, 0.3)):
    """K [1, 3, 3] and a world_to_camera [1, 4, 4] rotating about y, float64."""
    K = torch.tensor([[[focal[0], 0.0, centre[0]], [0.0, focal[1], centre[1]], [0.0, 0.0, 1.0]]], dtype=F64)
    w2c = torch.eye(4, dtype=F64)[None].clone()
    c, s = math.cos(angle), math.sin(angle)
    w2c[0, :3, :3] = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=F64)
    w2c[0, :3, 3] = torch.tensor(translation, dtype=F64)
    return K, w2c


def gaussians(means, opacities, scale=0.03, channels=3):
    """Gaussians at `means` [N, 3] with `opacities` [N]: (means, quats, scales, opacities, features), float64."""
    means = torch.as_tensor(means, dtype=F64).reshape(-1, 3)
    n = len(means)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64).repeat(n, 1)
    scales = torch.full((n, 3), scale, dtype=F64)
    features = torch.linspace(0.1, 0.9, n * channels, dtype=F64).reshape(n, channels)
    return means, quats, scales, torch.as_tensor(opacities, dtype=F64).reshape(n), features


@pytest.mark.parametrize("backend", PORTABLE)
def test_single_gaussian_matches_closed_form(backend):
    width, height, opacity, colour = 40, 32, 0.8, torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    K, w2c = camera(centre=(20.0, 16.0))
    mean = torch.tensor([-0.2, 0.02, 1.0], dtype=F64)
    axis, angle = torch.tensor([1.0, 2.0, 2.0], dtype=F64) / 3.0, 0.7
    quat = torch.cat([torch.tensor([math.cos(angle / 2)], dtype=F64), math.sin(angle / 2) * axis]) * 2.5  # unnormalised
    scale = torch.tensor([0.1, 0.05, 0.02], dtype=F64)
    render = rasterize_gaussians(mean[None], quat[None], scale[None], torch.tensor([opacity], dtype=F64),
                                 colour[None], K, w2c, width, height, backend=backend)

    # independent closed form: Rodrigues rotation, EWA Jacobian, eps2d blur, 2D Gaussian at pixel centres
    cross = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=F64)
    rotation = torch.eye(3, dtype=F64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    sigma3 = rotation @ torch.diag(scale ** 2) @ rotation.T
    x, y, z = w2c[0, :3, :3] @ mean + w2c[0, :3, 3]
    fx, fy, cx, cy = K[0, 0, 0], K[0, 1, 1], K[0, 0, 2], K[0, 1, 2]
    jacobian = torch.tensor([[fx / z, 0, -fx * x / z ** 2], [0, fy / z, -fy * y / z ** 2]], dtype=F64)
    sigma2 = jacobian @ w2c[0, :3, :3] @ sigma3 @ w2c[0, :3, :3].T @ jacobian.T + 0.3 * torch.eye(2, dtype=F64)
    centre = torch.stack([fx * x / z + cx, fy * y / z + cy])
    rows, cols = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    d = torch.stack([cols + 0.5, rows + 0.5], -1) - centre  # [H, W, 2]
    alpha = opacity * torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(sigma2), d))
    alpha = torch.where(alpha >= 1 / 255, alpha, 0.0)
    border = torch.cat([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert (alpha > 0).sum() > 100 and not border.any()  # a large footprint, inside the image

    torch.testing.assert_close(render.alpha[0, ..., 0], alpha, atol=1e-12, rtol=0)
    torch.testing.assert_close(render.features[0], alpha[..., None] * colour, atol=1e-12, rtol=0)
    torch.testing.assert_close(render.depth[0, ..., 0], torch.where(alpha > 0, z, 0.0), atol=1e-12, rtol=0)
    torch.testing.assert_close(render.means2d[0, 0], centre, atol=1e-12, rtol=0)
    extend = min(3.33, math.sqrt(2 * math.log(255 * opacity)))
    assert render.radii[0, 0] == math.ceil(extend * math.sqrt(max(sigma2[0, 0], sigma2[1, 1])))
    assert render.radii.dtype == torch.int32 and render.visible.tolist() == [[True]]


@pytest.mark.parametrize("backend", PORTABLE)
def test_pixel_centre_convention_and_alpha_clamp(backend):
    """A Gaussian centred on pixel (i, j) = (5, 3) peaks there; opacity 1 is clamped to 0.999."""
    K, w2c = camera(angle=0.0, translation=(0.0, 0.0, 0.0), centre=(8.0, 8.0), focal=(20.0, 20.0))
    mean = torch.tensor([[(3.5 - 8.0) / 20.0, (5.5 - 8.0) / 20.0, 1.0]], dtype=F64)
    render = rasterize_gaussians(*gaussians(mean, [1.0], scale=0.01), K, w2c, 16, 16, backend=backend)
    peak = int(render.alpha[0, ..., 0].argmax())
    assert divmod(peak, 16) == (5, 3)
    assert render.alpha[0, 5, 3, 0].item() == pytest.approx(0.999, abs=1e-15)


@pytest.mark.parametrize("backend", PORTABLE)
def test_culling(backend):
    K, w2c = camera(angle=0.0, translation=(0.0, 0.0, 0.0))
    means = [[0.0, 0.0, -1.0],  # behind the camera
             [0.0, 0.0, 0.005],  # in front of the near plane (0.01)
             [0.0, 0.0, 150.0],  # beyond far (100)
             [3.0, 0.0, 1.0],  # far outside the image
             [0.0, 0.0, 1.0],  # transparent (opacity < 1/255)
             [0.02, 0.01, 1.0]]  # visible
    scene = gaussians(means, [0.9, 0.9, 0.9, 0.9, 0.003, 0.9])
    render = rasterize_gaussians(*scene, K, w2c, 34, 26, backend=backend)
    assert render.visible.tolist() == [[False] * 5 + [True]]
    assert render.radii[0, :5].tolist() == [0] * 5 and render.radii[0, 5] > 0
    alone = rasterize_gaussians(*(t[5:] for t in scene), K, w2c, 34, 26, backend=backend)
    torch.testing.assert_close(render.features, alone.features, atol=0, rtol=0)
    torch.testing.assert_close(render.alpha, alone.alpha, atol=0, rtol=0)
    assert torch.isfinite(render.means2d).all()


@pytest.mark.parametrize("backend", PORTABLE)
@pytest.mark.parametrize("num", [0, 1])
def test_empty_scene(backend, num):
    """No Gaussians, or only culled ones: background everywhere, zero alpha and depth, right shapes."""
    K, w2c = camera()
    K, w2c = K.repeat(2, 1, 1), w2c.repeat(2, 1, 1)
    scene = gaussians([[0.0, 0.0, -5.0]][:num] or torch.zeros(0, 3), [0.5][:num], channels=4)
    background = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    render = rasterize_gaussians(*scene, K, w2c, 20, 10, background=background, backend=backend)
    assert render.features.shape == (2, 10, 20, 4) and render.alpha.shape == render.depth.shape == (2, 10, 20, 1)
    assert render.means2d.shape == (2, num, 2) and render.radii.shape == render.visible.shape == (2, num)
    torch.testing.assert_close(render.features, background.expand(2, 10, 20, 4), atol=0, rtol=0)
    assert not render.alpha.any() and not render.depth.any() and not render.visible.any()


def test_auto_backend_on_cpu_uses_torch():
    K, w2c = camera()
    scene = gaussians([[0.0, 0.0, 1.0], [0.01, 0.0, 1.2]], [0.7, 0.9])
    auto = rasterize_gaussians(*scene, K, w2c, 34, 26)
    tiles = rasterize_gaussians(*scene, K, w2c, 34, 26, backend="torch")
    torch.testing.assert_close(auto.features, tiles.features, atol=0, rtol=0)


def test_means2d_receives_screen_space_gradients():
    K, w2c = camera()
    means, quats, scales, opacities, features = gaussians([[0.0, 0.0, 1.0], [0.01, 0.0, 1.2]], [0.7, 0.9])
    means.requires_grad_(True)
    render = rasterize_gaussians(means, quats, scales, opacities, features, K, w2c, 34, 26)
    render.means2d.retain_grad()
    render.features.sum().backward()
    assert render.means2d.grad is not None and render.means2d.grad.abs().sum() > 0


def test_projection_matches_gsplat_torch_reference():
    """Centres, conics and depths agree with gsplat's own PyTorch projection (CPU)."""
    torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")
    generator = torch.Generator().manual_seed(3)
    n = 200
    means = torch.randn(n, 3, generator=generator, dtype=F64) * 0.3
    quats = torch.randn(n, 4, generator=generator, dtype=F64)
    scales = torch.rand(n, 3, generator=generator, dtype=F64) * 0.05 + 0.005
    opacities = torch.rand(n, generator=generator, dtype=F64)
    K, w2c = camera(translation=(0.0, 0.0, 1.5))
    projected = project_gaussians(means, quats, scales, opacities, K, w2c, 34, 26, near=0.01, far=100.0, eps2d=0.3)
    covars, _ = torch_impl._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    _, means2d, depths, conics, _ = torch_impl._fully_fused_projection(means, covars, w2c, K, 34, 26, eps2d=0.3)
    visible = (projected.radii > 0).all(-1)
    assert visible.sum() > n // 4
    torch.testing.assert_close(projected.means2d[visible], means2d[visible], atol=1e-10, rtol=0)
    torch.testing.assert_close(projected.conics[visible], conics[visible], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(projected.depths, depths, atol=1e-12, rtol=0)


def _bad(change):
    """Valid arguments with `change(kwargs)` applied."""
    K, w2c = camera()
    means, quats, scales, opacities, features = gaussians([[0.0, 0.0, 1.0]] * 5, [0.5] * 5)
    kwargs = dict(means=means, quats=quats, scales=scales, opacities=opacities, features=features, K=K,
                  world_to_camera=w2c, width=20, height=16)
    change(kwargs)
    return kwargs


BAD_INPUTS = [
    (lambda a: a.update(means=a["means"][:, :2]), ValueError, "means must be [N, 3], got torch.float64 [5, 2]"),
    (lambda a: a.update(means=a["means"].long()), TypeError, "means must be a floating-point"),
    (lambda a: a.update(quats=a["quats"][:4]), ValueError, "quats must be [5, 4] for N=5, got torch.float64 [4, 4]"),
    (lambda a: a.update(scales=a["scales"][:, :1]), ValueError, "got torch.float64 [5, 1]"),
    (lambda a: a.update(opacities=a["opacities"] - 3.0), ValueError, "values in [-2.5, -2.5]"),
    (lambda a: a.update(scales=a["scales"].log()), ValueError, "minimum of -3.50"),
    (lambda a: a.update(features=a["features"][None].repeat(3, 1, 1)), ValueError, "C=1"),
    (lambda a: a.update(features=a["features"][:, :0]), ValueError, "D >= 1"),
    (lambda a: a.update(features=a["features"].float()), ValueError, "features: torch.float32 on cpu"),
    (lambda a: a.update(K=a["K"][0]), ValueError, "K must be [C, 3, 3] with C >= 1, got torch.float64 [3, 3]"),
    (lambda a: a.update(world_to_camera=a["world_to_camera"].repeat(2, 1, 1)), ValueError, "C=1 (from K)"),
    (lambda a: a.update(background=torch.zeros(4, dtype=F64)), ValueError, "D=3, got torch.float64 [4]"),
    (lambda a: a.update(background=[0.0, 0.0, 0.0]), TypeError, "background must be a floating-point"),
    (lambda a: a.update(width=0), ValueError, "width must be a positive int, got 0"),
    (lambda a: a.update(height=16.0), ValueError, "height must be a positive int, got 16.0"),
    (lambda a: a.update(tile_size=True), ValueError, "tile_size must be a positive int, got True"),
    (lambda a: a.update(near=2.0, far=1.0), ValueError, "near=2.0, far=1.0"),
    (lambda a: a.update(eps2d=-0.1), ValueError, "eps2d must be >= 0, got -0.1"),
    (lambda a: a.update(backend="cuda"), ValueError, "got 'cuda'"),
    (lambda a: a.update(backend="gsplat"), ValueError, "float32 CUDA tensors, got torch.float64 on cpu"),
]


@pytest.mark.parametrize("change, error, message", BAD_INPUTS)
def test_bad_inputs_raise_with_values(change, error, message):
    with pytest.raises(error) as info:
        rasterize_gaussians(**_bad(change))
    assert message in str(info.value)


def test_gsplat_is_never_called_without_cuda(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("gsplat called for CPU inputs")

    monkeypatch.setattr(gaussian_rasterizer, "rasterize_gsplat", fail)
    with pytest.raises(ValueError, match="gsplat backend needs float32 CUDA tensors"):
        rasterize_gaussians(**_bad(lambda a: a.update(backend="gsplat")))
    rasterize_gaussians(**_bad(lambda a: a.update(backend="auto")))


def test_extensions_dir_goes_to_temp_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    folder = ensure_extensions_dir()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == folder and "keyface-torch-extensions" in folder
    assert not folder.startswith(os.path.expanduser("~"))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert ensure_extensions_dir() == str(tmp_path)
