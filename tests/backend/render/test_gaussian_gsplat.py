"""Tile rasterizer vs gsplat on CUDA: forward and gradients (skipped without CUDA)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.render.gaussian_rasterizer import rasterize_gaussians
from backend.render.gaussian_scenes import head_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs CUDA")


def render_with_grads(scene, backend, background):
    """Render, then gradients of a fixed random linear function of features, alpha and depth."""
    params = [getattr(scene, name).detach().clone().requires_grad_(True)
              for name in ("means", "quats", "scales", "opacities", "features")]
    render = rasterize_gaussians(*params, scene.K, scene.world_to_camera, scene.width, scene.height,
                                 background=background, backend=backend)
    g = torch.Generator(device="cuda").manual_seed(1)
    outputs = (render.features, render.alpha, render.depth)
    loss = sum((torch.rand(t.shape, generator=g, device="cuda") * t).sum() for t in outputs)
    return render, torch.autograd.grad(loss, params)


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("channels", [3, 16, 32])
def test_torch_tiles_match_gsplat(channels):
    scene = head_scene(4000, 96, 80, num_cameras=2, channels=channels, device="cuda")
    background = torch.linspace(0.0, 1.0, channels, device="cuda")
    ours, our_grads = render_with_grads(scene, "torch", background)
    theirs, their_grads = render_with_grads(scene, "gsplat", background)

    assert theirs.features.shape == ours.features.shape and theirs.radii.shape == ours.radii.shape
    torch.testing.assert_close(ours.features, theirs.features, atol=2e-4, rtol=0)
    torch.testing.assert_close(ours.alpha, theirs.alpha, atol=2e-4, rtol=0)
    covered = theirs.alpha > 0.05
    torch.testing.assert_close(ours.depth[covered], theirs.depth[covered], atol=1e-3, rtol=0)
    assert (ours.visible == theirs.visible).float().mean() > 0.999
    both = ours.visible & theirs.visible
    assert (ours.radii[both] - theirs.radii[both]).abs().max() <= 1
    torch.testing.assert_close(ours.means2d[both], theirs.means2d[both], atol=1e-3, rtol=0)
    for name, a, b in zip(("means", "quats", "scales", "opacities", "features"), our_grads, their_grads):
        assert relative_error(a, b) < 5e-3, name


def test_gsplat_backend_outputs_follow_the_interface():
    scene = head_scene(500, 40, 32, device="cuda")
    fields = [getattr(scene, f.name) for f in dataclasses.fields(scene)]
    render = rasterize_gaussians(*fields, background=torch.ones(3, device="cuda"))  # auto -> gsplat on CUDA
    assert render.features.shape == (1, 32, 40, 3) and render.alpha.shape == render.depth.shape == (1, 32, 40, 1)
    assert render.radii.shape == render.visible.shape == (1, 500) and render.means2d.shape == (1, 500, 2)
    assert render.radii.dtype == torch.int32 and render.visible.dtype == torch.bool
    empty = render.alpha == 0
    assert not render.depth[empty].any() and torch.equal(render.visible, render.radii > 0)
