"""The default avatar: textured Gaussians that cover the head without holes, with no training."""

from __future__ import annotations

import math

import torch

from backend.avatar import DEFAULT_GAUSSIANS, AvatarConfig, default_avatar
from backend.avatar.sh import sh_to_rgb
from shared_proto.types import FlameParams

SIZE, FOCAL, DISTANCE, RADIUS = 48, 100.0, 0.5, 0.1  # the sphere spans about 42 of 48 pixels


def rays_hitting_sphere(radius: float) -> torch.Tensor:
    """[H, W] pixels of the front camera whose ray hits a sphere of `radius` at the origin."""
    rows, cols = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    directions = torch.stack([(cols - SIZE / 2) / FOCAL, (rows - SIZE / 2) / FOCAL, torch.ones_like(rows)], -1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    closest = DISTANCE * torch.sqrt(1 - directions[..., 2] ** 2)  # distance from the sphere centre to the ray
    return closest < radius


def test_default_avatar_covers_the_head_with_its_texture(sphere_head, splat, camera, sphere_color):
    avatar = default_avatar(sphere_head, AvatarConfig(sh_degree=0, num_gaussians=2500))
    gaussians = avatar.gaussians_at(FlameParams.neutral())
    assert (gaussians.opacities > 0.9).all()
    colours = sh_to_rgb(gaussians.sh[:, 0]).detach()
    error = (colours.double() - sphere_color(gaussians.means[0].detach())).abs()
    assert error.median() < 0.01 and error.quantile(0.95) < 0.03
    front = camera(SIZE, DISTANCE, FOCAL)
    image = splat(gaussians.means[0].detach(), gaussians.quats[0].detach(), gaussians.scales[0].detach(),
                  gaussians.opacities[0].detach(), colours, front.K, front.world_to_camera, SIZE, SIZE,
                  near=0.01, far=10.0)
    alpha = image.alpha[0, ..., 0]
    assert alpha[rays_hitting_sphere(0.9 * RADIUS)].min() > 0.98  # no holes
    assert alpha[~rays_hitting_sphere(1.2 * RADIUS)].max() < 0.02  # nothing off the surface
    # the rendered colour is the texture at the front-most surface point of each pixel
    inside = rays_hitting_sphere(0.8 * RADIUS)
    rows, cols = torch.nonzero(inside, as_tuple=True)
    directions = torch.stack([(cols + 0.5 - SIZE / 2) / FOCAL, -(rows + 0.5 - SIZE / 2) / FOCAL,
                              -torch.ones_like(cols, dtype=torch.float32)], -1).double()  # world axes
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = torch.tensor([0.0, 0.0, DISTANCE], dtype=torch.float64)
    along = -(directions @ origin) - torch.sqrt((directions @ origin) ** 2 - (DISTANCE**2 - RADIUS**2))
    hits = origin + along[:, None] * directions
    rendered = image.features[0][inside].double()
    assert (rendered - sphere_color(hits)).abs().median() < 0.02


def test_same_seed_same_default_avatar(sphere_head):
    config = AvatarConfig(sh_degree=0, num_gaussians=300)
    a, b = default_avatar(sphere_head, config, seed=4), default_avatar(sphere_head, config, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_builtin_default_avatar(builtin_head):
    avatar = default_avatar(builtin_head)
    assert avatar.n_gaussians == DEFAULT_GAUSSIANS and avatar.config.sh_degree == 0
    gaussians = avatar.gaussians_at(FlameParams.neutral())
    assert torch.isfinite(gaussians.means).all() and torch.isfinite(gaussians.scales).all()
    colours = sh_to_rgb(gaussians.sh[:, 0])
    assert colours.std(dim=0).min() > 0.01, "the built-in texture should give varied colours"
    extent = gaussians.means[0].max(0).values - gaussians.means[0].min(0).values
    assert gaussians.scales.max() < 0.1 * extent.max()
    assert math.isclose(float(gaussians.opacities.detach().mean()), 0.95, rel_tol=1e-5)
