"""GaussianAvatar: binding and posing, inputs, expression offsets, appearance, configuration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig, read_head_texture
from backend.avatar.geometry import face_frames, quaternion_to_matrix
from backend.avatar.sh import sh_to_rgb
from shared_proto.types import FlameParams, FlameSequence

SMALL = AvatarConfig(sh_degree=1, num_gaussians=600)


def sequence(frames: int = 4, seed: int = 0) -> FlameSequence:
    rng = np.random.default_rng(seed)
    return FlameSequence(shape=np.zeros(4), expression=rng.normal(size=(frames, 6)),
                         rotation=rng.normal(size=(frames, 3)) * 0.3, neck=rng.normal(size=(frames, 3)) * 0.1,
                         jaw=np.abs(rng.normal(size=(frames, 3))) * 0.2, eyes=rng.normal(size=(frames, 6)) * 0.1,
                         translation=rng.normal(size=(frames, 3)) * 0.05, fps=30.0, frame_start=7)


@pytest.fixture
def avatar(sphere_head) -> GaussianAvatar:
    return GaussianAvatar.from_surface(sphere_head, SMALL, seed=1)


def test_gaussians_start_on_the_surface(sphere_head):
    from backend.avatar.sampling import sample_surface

    avatar = GaussianAvatar.from_surface(sphere_head, SMALL, seed=1)
    samples = sample_surface(sphere_head.v_template, sphere_head.faces, count=600, seed=1)
    corners = sphere_head.v_template.double()[sphere_head.faces[samples.faces]]  # [N, 3, 3]
    points = (samples.barycentric[:, :, None] * corners).sum(1)
    gaussians = avatar.gaussians_at(FlameParams.neutral())
    torch.testing.assert_close(gaussians.means[0].double(), points, atol=1e-6, rtol=0)
    assert torch.equal(avatar.binding, samples.faces)
    assert gaussians.means.shape == (1, 600, 3) and gaussians.quats.shape == (1, 600, 4)
    assert gaussians.scales.shape == (1, 600, 3) and gaussians.opacities.shape == (1, 600)
    assert gaussians.sh.shape == (600, 4, 3) and gaussians.features is None
    torch.testing.assert_close(gaussians.opacities, torch.full((1, 600), 0.1))


def test_gaussians_follow_rigid_head_motion(avatar):
    rest = avatar.gaussians_at(FlameParams.neutral())
    axis_angle = np.array([0.3, -0.5, 0.2])
    moved = avatar.gaussians_at(FlameParams(np.zeros(0), np.zeros(0), axis_angle, np.zeros(3), np.zeros(3),
                                            np.zeros(6), np.array([0.1, 0.0, -0.2])))
    from smplx.lbs import batch_rodrigues

    turn = batch_rodrigues(torch.tensor(axis_angle[None], dtype=torch.float32))[0]
    root = avatar.head(shape=None).joints[0, 0]  # FLAME rotates about the root joint
    expected = (rest.means[0] - root) @ turn.T + root + torch.tensor([0.1, 0.0, -0.2])
    torch.testing.assert_close(moved.means[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(quaternion_to_matrix(moved.quats[0]), turn @ quaternion_to_matrix(rest.quats[0]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.scales, rest.scales)


def test_world_covariance_is_the_local_one_carried_by_the_triangle_frame(sphere_head):
    """Sigma_world = k^2 R_face (R_local S^2 R_local^T) R_face^T for a rotated, anisotropic local Gaussian."""
    avatar = GaussianAvatar.from_surface(sphere_head, SMALL, seed=2)
    with torch.no_grad():
        avatar.params["quats"].copy_(torch.nn.functional.normalize(torch.randn(600, 4), dim=-1))
        avatar.params["scales"].add_(torch.randn(600, 3) * 0.3)
    params = sequence(1).frame(0)
    gaussians = avatar.gaussians_at(params)
    vertices = sphere_head.forward_params(params).vertices
    _, rotations, scales = face_frames(vertices, sphere_head.faces)
    face_rotation, k = rotations[0, avatar.binding].double(), scales[0, avatar.binding].double()
    local_rotation = quaternion_to_matrix(avatar.params["quats"].detach().double())
    local = local_rotation @ torch.diag_embed(avatar.params["scales"].detach().double().exp() ** 2) \
        @ local_rotation.transpose(1, 2)
    expected = k[:, :, None] ** 2 * face_rotation @ local @ face_rotation.transpose(1, 2)
    world_rotation = quaternion_to_matrix(gaussians.quats[0].double())
    actual = world_rotation @ torch.diag_embed(gaussians.scales[0].double() ** 2) @ world_rotation.transpose(1, 2)
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-10)


def test_frames_are_vectorised_and_inputs_agree(avatar):
    frames = sequence(4)
    batched = avatar.gaussians_at(frames)
    assert batched.means.shape == (4, 600, 3)
    for t in range(4):
        single = avatar.gaussians_at(frames.frame(t))
        torch.testing.assert_close(batched.means[t], single.means[0])
        torch.testing.assert_close(batched.quats[t], single.quats[0], atol=1e-4, rtol=0)  # float32 frames
    as_dict = {name: torch.tensor(getattr(frames, name)) for name in ("expression", "rotation", "neck", "jaw",
                                                                      "eyes", "translation")}
    torch.testing.assert_close(avatar.gaussians_at(as_dict).means, batched.means)
    # the identity is the avatar's own; a shape in the parameters is ignored
    torch.testing.assert_close(avatar.gaussians_at({**as_dict, "shape": torch.ones(1, 4)}).means, batched.means)


def test_jaw_moves_only_the_jaw_region(avatar):
    rest = avatar.gaussians_at(FlameParams.neutral()).means[0]
    open_jaw = avatar.gaussians_at({"jaw": torch.tensor([[0.4, 0.0, 0.0]])}).means[0]
    moved = (open_jaw - rest).norm(dim=-1) > 1e-4
    assert moved.any() and (rest[moved, 1] < 0.0).all()  # triangles with a lower-hemisphere (jaw) vertex
    assert moved[rest[:, 1] < -0.03].all()


def test_bad_parameters_are_refused(avatar):
    with pytest.raises(ValueError, match="unknown FLAME parameters"):
        avatar.gaussians_at({"expresion": torch.zeros(1, 6)})
    with pytest.raises(TypeError, match="torch.Tensor"):
        avatar.gaussians_at({"jaw": [0.0, 0.0, 0.0]})
    with pytest.raises(TypeError, match="FlameParams, FlameSequence or a dict"):
        avatar.gaussians_at(np.zeros(3))
    with pytest.raises(ValueError, match="expression has 50 columns"):
        avatar.gaussians_at({"expression": torch.zeros(1, 50)})


def test_construction_is_deterministic_and_leaves_the_global_rng_alone(sphere_head):
    config = dataclasses.replace(SMALL, appearance="neural", feature_dim=8, use_expression_offsets=True)
    state = torch.random.get_rng_state()
    first = GaussianAvatar.from_surface(sphere_head, config, seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    second = GaussianAvatar.from_surface(sphere_head, config, seed=5).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)
    other = GaussianAvatar.from_surface(sphere_head, config, seed=6).state_dict()
    assert not torch.equal(first["params.means"], other["params.means"])


def test_expression_offsets_start_as_identity_then_follow_expression(sphere_head):
    plain = GaussianAvatar.from_surface(sphere_head, SMALL, seed=1)
    config = dataclasses.replace(SMALL, use_expression_offsets=True, mlp_expression_dims=4)
    rigged = GaussianAvatar.from_surface(sphere_head, config, seed=1)
    frames = sequence(3)
    torch.testing.assert_close(rigged.gaussians_at(frames).means, plain.gaussians_at(frames).means)
    with torch.no_grad():
        rigged.offsets.output.weight.normal_(0.0, 0.05)
    smile = rigged.gaussians_at({"expression": torch.tensor([[2.0, 0, 0, 0, 0, 0]])}).means
    neutral = rigged.gaussians_at({"expression": torch.zeros(1, 6)}).means
    assert (smile - neutral).abs().max() > 1e-4
    # the MLP sees the first mlp_expression_dims coefficients, then jaw, eyes and eyelids
    condition = rigged._condition({"expression": torch.arange(1.0, 7.0)[None], "jaw": torch.ones(2, 3)}, 2)
    torch.testing.assert_close(condition, torch.tensor([[1.0, 2, 3, 4, 1, 1, 1] + [0.0] * 8] * 2))
    rigged.gaussians_at(frames).means.square().sum().backward()
    assert rigged.offsets.condition_layer.weight.grad.abs().sum() > 0


def test_neural_appearance_keeps_rgb_in_the_first_channels(sphere_head, sphere_color):
    config = AvatarConfig(appearance="neural", feature_dim=6, num_gaussians=400)
    avatar = GaussianAvatar.from_surface(sphere_head, config, texture=read_head_texture(sphere_head))
    gaussians = avatar.gaussians_at(FlameParams.neutral())
    assert gaussians.sh is None and gaussians.features.shape == (400, 6)
    error = (gaussians.features[:, :3].double() - sphere_color(gaussians.means[0])).abs()
    assert error.median() < 0.01
    assert avatar.renderer is not None and set(avatar.params) == {"means", "quats", "scales", "opacities",
                                                                  "features"}


def test_sh_colours_come_from_the_texture(sphere_head, sphere_color):
    avatar = GaussianAvatar.from_surface(sphere_head, SMALL, texture=read_head_texture(sphere_head))
    colours = sh_to_rgb(avatar.params["sh0"][:, 0]).detach()
    error = (colours.double() - sphere_color(avatar.gaussians_at(FlameParams.neutral()).means[0])).abs()
    assert error.median() < 0.01 and (avatar.params["shN"] == 0).all()


@pytest.mark.parametrize("changes, match", [
    ({"appearance": "mesh"}, "appearance"), ({"sh_degree": 4}, "sh_degree"), ({"feature_dim": 2}, "feature_dim"),
    ({"num_gaussians": 0}, "num_gaussians"), ({"gaussians_per_triangle": -1}, "gaussians_per_triangle"),
    ({"mlp_layers": 0}, "mlp_layers"), ({"mlp_frequencies": -1}, "mlp_frequencies"),
])
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        AvatarConfig(**changes)
    with pytest.raises(ValueError, match="odd"):
        NeuralRendererConfig(kernel_size=4)


def test_config_dict_round_trip():
    config = AvatarConfig(appearance="neural", renderer=NeuralRendererConfig(channels=8, layers=2))
    assert AvatarConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown AvatarConfig fields"):
        AvatarConfig.from_dict({**config.to_dict(), "future_field": 1})


def test_constructor_validates_tensors(sphere_head, avatar):
    params = {name: value.detach() for name, value in avatar.params.items()}
    with pytest.raises(ValueError, match="binding must index"):
        GaussianAvatar(sphere_head, SMALL, avatar.binding + 10_000, params)
    with pytest.raises(ValueError, match="parameters for appearance 'sh'"):
        GaussianAvatar(sphere_head, SMALL, avatar.binding, {**params, "features": torch.zeros(600, 3)})
    with pytest.raises(ValueError, match="'sh0' must be a float tensor"):
        GaussianAvatar(sphere_head, SMALL, avatar.binding, {**params, "sh0": torch.zeros(600, 3)})
    with pytest.raises(ValueError, match="shape must be"):
        GaussianAvatar(sphere_head, SMALL, avatar.binding, params, shape=torch.zeros(9))
