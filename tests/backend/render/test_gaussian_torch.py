"""Tile rasterizer vs the dense reference: forward, gradients, gradcheck, early termination (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from backend.render.gaussian_projection import project_gaussians
from backend.render.gaussian_rasterizer import rasterize_gaussians
from backend.render.gaussian_reference import composite_dense
from backend.render.gaussian_torch import composite_tiles

F64 = torch.float64
WIDTH, HEIGHT = 45, 37  # not multiples of the tile size: partial tiles on the right and bottom


def cameras(count=2, dtype=F64):
    """K [C, 3, 3] and world_to_camera [C, 4, 4]: different focal lengths, yaw and translation per camera."""
    K = torch.zeros(count, 3, 3, dtype=dtype)
    w2c = torch.eye(4, dtype=dtype).repeat(count, 1, 1)
    for c in range(count):
        K[c] = torch.tensor([[50.0 + 6 * c, 0.0, 22.0 + c], [0.0, 48.0 + 4 * c, 18.5], [0.0, 0.0, 1.0]])
        yaw, pitch = 0.25 * c - 0.1, 0.1 * c
        ry = torch.tensor([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        rx = torch.tensor([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
        w2c[c, :3, :3] = rx @ ry
        w2c[c, :3, 3] = torch.tensor([0.03 * c, -0.02, 2.0])
    return K, w2c


def random_scene(n=160, channels=3, seed=0, dtype=F64):
    """Gaussians around the origin: small and large, anisotropic, opacities up to 1, a few culled."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.35, 0.3, 0.3], dtype=dtype)
    means[:3] = torch.tensor([[0.0, 0.0, -2.5], [5.0, 0.0, 0.0], [0.0, 0.0, 200.0]], dtype=dtype)  # culled
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * 2.5 - 5.0)  # 7 mm .. 8 cm
    opacities = torch.rand(n, generator=g, dtype=dtype).clamp_min(0.02)
    opacities[3:8] = 1.0  # clamped to 0.999
    features = torch.rand(n, channels, generator=g, dtype=dtype)
    return [means, quats, scales, opacities, features]


def outputs_and_grads(scene, K, w2c, backend, background=None, **kwargs):
    """Render, then gradients of a fixed random linear function of features, alpha and depth."""
    params = [t.detach().clone().requires_grad_(True) for t in scene]
    render = rasterize_gaussians(*params, K, w2c, WIDTH, HEIGHT, backend=backend, background=background, **kwargs)
    g = torch.Generator().manual_seed(1)
    weights = [torch.rand(t.shape, generator=g, dtype=t.dtype) for t in (render.features, render.alpha, render.depth)]
    loss = sum((w * t).sum() for w, t in zip(weights, (render.features, render.alpha, render.depth)))
    return render, torch.autograd.grad(loss, params)


@pytest.mark.parametrize("channels, per_camera, tile_size", [(3, False, 16), (16, True, 16), (3, True, 8)])
def test_tiles_match_dense_reference(channels, per_camera, tile_size):
    K, w2c = cameras()
    scene = random_scene(channels=channels)
    if per_camera:
        scene[4] = torch.stack([scene[4], scene[4].flip(0)])  # [C, N, D]
    background = torch.linspace(0.2, 0.8, channels, dtype=F64)
    tiles, tile_grads = outputs_and_grads(scene, K, w2c, "torch", background, tile_size=tile_size)
    dense, dense_grads = outputs_and_grads(scene, K, w2c, "reference", background, tile_size=tile_size)

    assert tiles.visible[:, :3].sum() == 0 and tiles.visible.sum() > 200
    assert (tiles.alpha > 0.99).any() and (tiles.alpha == 0).any()
    for name in ("features", "alpha", "depth", "means2d", "radii", "visible"):
        torch.testing.assert_close(getattr(tiles, name), getattr(dense, name), atol=1e-12, rtol=0, msg=name)
    for name, a, b in zip(("means", "quats", "scales", "opacities", "features"), tile_grads, dense_grads):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, atol=1e-10 * b.abs().max().item(), rtol=1e-9, msg=name)


def test_float32_parity():
    K, w2c = cameras(dtype=torch.float32)
    scene = random_scene(dtype=torch.float32)
    tiles, tile_grads = outputs_and_grads(scene, K, w2c, "torch")
    dense, dense_grads = outputs_and_grads(scene, K, w2c, "reference")
    torch.testing.assert_close(tiles.features, dense.features, atol=2e-6, rtol=0)
    torch.testing.assert_close(tiles.alpha, dense.alpha, atol=2e-6, rtol=0)
    torch.testing.assert_close(tiles.depth, dense.depth, atol=1e-5, rtol=1e-5)
    for a, b in zip(tile_grads, dense_grads):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-4)


@pytest.mark.parametrize("per_step, budget", [(3, 256 * 3), (8, 256 * 8 * 3), (7, 256 * 7 * 100)])
def test_small_steps_and_batches_match(per_step, budget):
    """Transmittance carried across steps and tiles batched in any grouping give the same image and grads."""
    K, w2c = cameras()
    scene = random_scene(channels=5, n=100)

    def composite(compositor, **kwargs):
        params = [t.detach().clone().requires_grad_(True) for t in scene]
        projected = project_gaussians(*params[:4], K, w2c, WIDTH, HEIGHT, near=0.01, far=100.0, eps2d=0.3)
        image, alpha = compositor(projected, params[4].expand(2, -1, -1), WIDTH, HEIGHT, **kwargs)
        return image, alpha, torch.autograd.grad((image ** 2).sum() + alpha.sum(), params)

    image, alpha, grads = composite(composite_tiles, evaluations_per_chunk=budget, gaussians_per_chunk=per_step)
    reference_image, reference_alpha, reference_grads = composite(composite_dense)
    torch.testing.assert_close(image, reference_image, atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha, reference_alpha, atol=1e-12, rtol=0)
    for a, b in zip(grads, reference_grads):
        torch.testing.assert_close(a, b, atol=1e-10 * b.abs().max().item(), rtol=1e-9)


def test_no_grad_matches_grad_mode():
    K, w2c = cameras()
    scene = random_scene()
    with torch.no_grad():
        plain = rasterize_gaussians(*scene, K, w2c, WIDTH, HEIGHT, backend="torch")
    tracked, _ = outputs_and_grads(scene, K, w2c, "torch")
    torch.testing.assert_close(plain.features, tracked.features, atol=0, rtol=0)
    torch.testing.assert_close(plain.depth, tracked.depth, atol=0, rtol=0)


def test_gradcheck_tiny_scene():
    K, w2c = cameras()
    means = torch.tensor([[0.0, 0.0, 0.0], [0.06, -0.03, 0.1], [-0.05, 0.04, -0.05]], dtype=F64)
    quats = torch.tensor([[1.0, 0.1, -0.2, 0.05], [0.9, 0.3, 0.1, -0.1], [0.8, -0.1, 0.2, 0.3]], dtype=F64)
    scales = torch.tensor([[0.05, 0.03, 0.02], [0.04, 0.06, 0.03], [0.03, 0.03, 0.05]], dtype=F64)
    opacities = torch.tensor([0.6, 0.5, 0.7], dtype=F64)
    features = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], dtype=F64)
    params = [t.requires_grad_(True) for t in (means, quats, scales, opacities, features)]
    K, w2c = K * torch.tensor([[[0.4], [0.4], [1.0]]], dtype=F64), w2c  # small 18 x 15 images of 4 x 4 tiles
    K[:, :2, 2] = torch.tensor([9.0, 7.5], dtype=F64)

    def render(*args):
        out = rasterize_gaussians(*args, K, w2c, 18, 15, backend="torch", tile_size=4,
                                  background=torch.tensor([0.3, 0.6], dtype=F64))
        return out.features, out.alpha, out.depth

    assert render(*params)[1].max() > 0.5
    assert torch.autograd.gradcheck(render, params, fast_mode=True, atol=1e-6, rtol=1e-4)


def sequential_pixel(colours, alphas):
    """gsplat's per-pixel loop, written out: front-to-back `alphas` [M] (already clamped) -> colour, alpha."""
    transmittance, colour = 1.0, torch.zeros_like(colours[0])
    for c, a in zip(colours, alphas.tolist()):
        if a < 1 / 255:
            continue
        if transmittance * (1 - a) <= 1e-4:
            break
        colour = colour + c * a * transmittance
        transmittance *= 1 - a
    return colour, 1 - transmittance


@pytest.mark.parametrize("backend, per_step", [("torch", 2), ("torch", 128), ("reference", None)])
def test_early_termination_many_opaque_layers(backend, per_step):
    """40 large layers of opacity 0.93: only the first three composite (the fourth would take T below 1e-4),
    the rest get exactly zero gradient; the result matches the written-out per-pixel loop."""
    n, width, height = 40, 20, 12
    K = torch.tensor([[[30.0, 0.0, 10.0], [0.0, 30.0, 6.0], [0.0, 0.0, 1.0]]], dtype=F64)
    w2c = torch.eye(4, dtype=F64)[None]
    depths = torch.linspace(1.0, 2.0, n, dtype=F64).flip(0)  # listed back to front
    means = torch.stack([torch.zeros(n, dtype=F64), torch.zeros(n, dtype=F64), depths], -1)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64).repeat(n, 1)
    scales = torch.full((n, 3), 5.0, dtype=F64)
    opacities = torch.full((n,), 0.93, dtype=F64)
    features = torch.rand(n, 3, generator=torch.Generator().manual_seed(2), dtype=F64).requires_grad_(True)
    if per_step is None:
        render = rasterize_gaussians(means, quats, scales, opacities, features, K, w2c, width, height, backend=backend)
        image, alpha = render.features[0], render.alpha[0]
    else:
        projected = project_gaussians(means, quats, scales, opacities, K, w2c, width, height, near=0.01, far=100.0,
                                      eps2d=0.3)
        image, alpha = composite_tiles(projected, features[None], width, height, 16, gaussians_per_chunk=per_step)
        image, alpha = image[0], alpha[0]

    front_to_back = torch.arange(n).flip(0)
    projected = project_gaussians(means, quats, scales, opacities, K, w2c, width, height, near=0.01, far=100.0,
                                  eps2d=0.3)
    for i, j in [(0, 0), (6, 10), (11, 19)]:
        d = projected.means2d[0, front_to_back] - torch.tensor([j + 0.5, i + 0.5], dtype=F64)  # [n, 2]
        conic = projected.conics[0, front_to_back]
        sigma = 0.5 * (conic[:, 0] * d[:, 0] ** 2 + conic[:, 2] * d[:, 1] ** 2) + conic[:, 1] * d[:, 0] * d[:, 1]
        colour, a = sequential_pixel(features[front_to_back].detach(), (0.93 * torch.exp(-sigma)).clamp_max(0.999))
        torch.testing.assert_close(image[i, j], colour, atol=1e-12, rtol=0)
        assert alpha[i, j, 0].item() == pytest.approx(a, abs=1e-12)
    assert (alpha > 0.9995).all() and (alpha < 1 - 1e-4).all()

    grad = torch.autograd.grad(image.sum(), features)[0]  # [n, 3]
    assert (grad[front_to_back[:3]] > 0).all() and not grad[front_to_back[3:]].any()
