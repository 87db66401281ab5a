"""The torch compositor's default tile size (TILE_SIZE): the default renders what explicit 16-pixel tiles render."""

from __future__ import annotations

import torch

import backend.render.gaussian_rasterizer as rasterizer
from backend.render import rasterize_gaussians


def scene(n: int = 300, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0, 3.0],
                                                                                               dtype=torch.float64)
    quats = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 0.08 + 0.01
    opacities = torch.rand(n, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    colours = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    K = torch.tensor([[[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    return means, quats, scales, opacities, colours, K, torch.eye(4, dtype=torch.float64)[None]


def test_torch_default_tiles_are_torch_sized_and_render_the_same_pixels(monkeypatch) -> None:
    used = []
    composite = rasterizer.composite_tiles

    def spy(projected, features, width, height, tile_size, **kwargs):
        used.append(tile_size)
        return composite(projected, features, width, height, tile_size, **kwargs)

    monkeypatch.setattr(rasterizer, "composite_tiles", spy)
    default = rasterize_gaussians(*scene(), 64, 48, backend="torch")
    sixteen = rasterize_gaussians(*scene(), 64, 48, backend="torch", tile_size=16)
    assert used == [rasterizer.TILE_SIZE["torch"], 16] and rasterizer.TILE_SIZE["torch"] == 8
    assert torch.allclose(default.features, sixteen.features, atol=1e-12)
    assert torch.allclose(default.alpha, sixteen.alpha, atol=1e-12) and default.alpha.max() > 0.5
