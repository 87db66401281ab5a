"""Rendering avatars through a rasteriser with `rasterize_gaussians`' signature, and the neural renderer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.avatar import (
    AvatarConfig,
    GaussianAvatar,
    NeuralRenderer,
    NeuralRendererConfig,
    read_head_texture,
    render_avatar,
)
from backend.render import CameraTensors
from shared_proto.types import FlameSequence


def cameras(camera, count: int = 1, size: int = 32) -> CameraTensors:
    front = camera(size, 0.5, 50.0)  # the sphere spans 20 of the 32 pixels
    return CameraTensors(K=front.K.expand(count, -1, -1), world_to_camera=front.world_to_camera.expand(count, -1, -1),
                         width=size, height=size, near=torch.full((count,), 0.01), far=torch.full((count,), 10.0))


def two_frames() -> FlameSequence:
    return FlameSequence(shape=np.zeros(4), expression=np.zeros((2, 6)), rotation=np.array([[0, 0, 0], [0, 0.4, 0]]),
                         neck=np.zeros((2, 3)), jaw=np.zeros((2, 3)), eyes=np.zeros((2, 6)),
                         translation=np.zeros((2, 3)))


@pytest.fixture(scope="module")
def textured(sphere_head):
    return read_head_texture(sphere_head)


def test_sh_and_neural_avatars_render_the_same_texture(sphere_head, textured, splat, camera):
    config = AvatarConfig(sh_degree=0, num_gaussians=800)
    sh = GaussianAvatar.from_surface(sphere_head, config, texture=textured, opacity=0.95)
    neural = GaussianAvatar.from_surface(sphere_head, dataclasses.replace(config, appearance="neural", feature_dim=4),
                                         texture=textured, opacity=0.95)
    background = torch.tensor([0.0, 0.0, 1.0])
    views = cameras(camera)
    sh_image = render_avatar(sh, sh.gaussians_at(two_frames()), views, background=background, rasterize=splat)
    neural_image = render_avatar(neural, neural.gaussians_at(two_frames()), views, background=background,
                                 rasterize=splat)
    assert sh_image.rgb.shape == (2, 32, 32, 3) and sh_image.features is None
    assert neural_image.features.shape == (2, 32, 32, 4)
    # a new neural renderer shows the texture's RGB channels, so both look alike
    torch.testing.assert_close(neural_image.rgb, sh_image.rgb, atol=1e-4, rtol=0)
    corner = sh_image.rgb[:, 0, 0]
    torch.testing.assert_close(corner, background.expand(2, 3), atol=1e-4, rtol=0)
    assert sh_image.alpha[:, 16, 16].min() > 0.99
    assert not torch.allclose(sh_image.rgb[0], sh_image.rgb[1])  # the head turned


def test_frames_and_cameras_pair_up(sphere_head, splat, camera):
    avatar = GaussianAvatar.from_surface(sphere_head, AvatarConfig(sh_degree=1, num_gaussians=100))
    one_frame = avatar.gaussians_at({"jaw": torch.zeros(1, 3)})
    assert render_avatar(avatar, one_frame, cameras(camera, 3), rasterize=splat).rgb.shape == (3, 32, 32, 3)
    two = avatar.gaussians_at(two_frames())
    assert render_avatar(avatar, two, cameras(camera, 2), rasterize=splat).alpha.shape == (2, 32, 32, 1)
    with pytest.raises(ValueError, match="do not pair up"):
        render_avatar(avatar, avatar.gaussians_at({"jaw": torch.zeros(3, 3)}), cameras(camera, 2), rasterize=splat)


def test_neural_renderer_starts_as_identity_and_learns():
    renderer = NeuralRenderer(6, NeuralRendererConfig(channels=8, layers=3))
    features = torch.rand(2, 16, 16, 6)
    assert torch.equal(renderer(features), features[..., :3])
    optimizer = torch.optim.Adam(renderer.parameters(), lr=1e-2)
    target = torch.zeros(2, 16, 16, 3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (renderer(features) - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match=r"\[C, H, W, 6\]"):
        renderer(torch.rand(2, 16, 16, 5))
    with pytest.raises(ValueError, match="feature_dim"):
        NeuralRenderer(2)
    single = NeuralRenderer(3, NeuralRendererConfig(layers=1))
    assert len(single.net) == 1
