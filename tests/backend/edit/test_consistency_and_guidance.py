"""Geometry from the avatar (landmarks, normals), the flicker metric's exact correspondences, and the
expression-similarity guidance (landmark geometry + FLAME expression fit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar import AvatarConfig, GaussianAvatar
from backend.edit.consistency import correspondences, warping_error
from backend.edit.expression_guidance import ExpressionGuidance, landmark_nme, similarity_align
from backend.edit.geometry import flame_rows, frame_geometry, project
from backend.flame import BUILTIN_HEAD_PATH, FlameModel
from backend.flame.motion import talking_head
from backend.track.synthetic import capture_camera

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")
SIZE = 48


@pytest.fixture(scope="module")
def scene():
    head = FlameModel.builtin()
    avatar = GaussianAvatar.from_surface(head, AvatarConfig(sh_degree=0, num_gaussians=3000), opacity=0.9)
    sequence = talking_head(4, n_expression=head.n_expression, eyelids=head.has_eyelids, seed=3)
    return head, avatar, sequence, [capture_camera(SIZE)] * 4


def test_frame_geometry_projects_the_landmarks_into_the_covered_face(scene) -> None:
    head, avatar, sequence, cameras = scene
    geometry = frame_geometry(avatar, sequence, [0, 1], cameras[:2])
    assert geometry.normals.shape == (2, SIZE, SIZE, 3) and geometry.landmarks.shape == (2, head.n_landmarks, 2)
    covered = geometry.coverage > 0
    torch.testing.assert_close(geometry.normals[covered].norm(dim=-1), torch.ones(int(covered.sum())), atol=1e-4,
                               rtol=0)
    assert float(geometry.normals[covered][:, 2].mean()) < -0.5  # facing the camera
    pixels = geometry.landmarks.round().long().clamp(0, SIZE - 1)
    on_face = geometry.coverage[0][pixels[0, :, 1], pixels[0, :, 0]]
    assert float(on_face.mean()) > 0.9


def test_identical_frames_have_zero_warping_error_and_a_colour_shift_is_measured_exactly(scene) -> None:
    _, avatar, sequence, cameras = scene
    pixels, visible = correspondences(avatar, sequence, cameras)
    assert pixels.shape == (4, avatar.n_gaussians, 2) and 0.2 < float(visible.float().mean()) < 0.9
    base = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(0)) * 0.5
    # a static pose: every frame the same image, the same correspondences
    still = sequence.frame(0)
    from shared_proto import FlameSequence

    static = FlameSequence(**{name: (np.repeat(getattr(still, name)[None], 4, 0) if name != "shape" else still.shape)
                              for name in ("shape", "expression", "rotation", "neck", "jaw", "eyes", "translation")},
                           eyelids=np.repeat(still.eyelids[None], 4, 0) if still.eyelids is not None else None)
    pixels, visible = correspondences(avatar, static, cameras)
    error, per_pair = warping_error(base.expand(4, -1, -1, -1), pixels, visible)
    assert error == 0.0 and len(per_pair) == 3
    shifted = torch.cat([base, base + 0.1, base, base + 0.1])
    error, _ = warping_error(shifted, pixels, visible)
    assert error == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError):
        warping_error(base, pixels[:1], visible[:1])


def test_a_texture_moving_with_the_surface_has_less_flicker_than_per_frame_noise(scene) -> None:
    from backend.avatar import render_avatar
    from backend.render import camera_tensors

    _, avatar, sequence, cameras = scene
    with torch.no_grad():
        gaussians = avatar.gaussians_at(flame_rows(avatar, sequence, range(4)))
        renders = render_avatar(avatar, gaussians, camera_tensors(cameras)).rgb.clamp(0, 1)
    pixels, visible = correspondences(avatar, sequence, cameras)
    consistent, _ = warping_error(renders, pixels, visible)
    gains = torch.tensor([1.0, 0.7, 1.1, 0.8])[:, None, None, None]
    flickering, _ = warping_error((renders * gains).clamp(0, 1), pixels, visible)
    assert flickering > 3 * consistent


def test_similarity_alignment_ignores_pose_but_not_shape() -> None:
    generator = np.random.default_rng(0)
    target = generator.normal(size=(20, 2)) * 10
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = target @ rotation.T * 1.7 + [5, -3]
    np.testing.assert_allclose(similarity_align(moved, target), target, atol=1e-9)
    assert landmark_nme(moved, target, (0, 1)) < 1e-9
    deformed = target.copy()
    deformed[5] += [4.0, 0.0]
    assert landmark_nme(deformed, target, (0, 1)) > 0.01


def _detector_for(head, sequence, camera, shape):
    """A landmark 'detector' that reads the head's true projected landmarks of the sequence frame whose number is
    written in the image's first pixel (stands in for MediaPipe)."""
    output = head(shape=shape[None], **{name: torch.tensor(np.array(getattr(sequence, name)), dtype=torch.float32)
                                        for name in ("expression", "rotation", "neck", "jaw", "eyes", "translation")})
    pixels, _ = project(output.landmarks, [camera] * len(sequence))
    indices = head.mediapipe_indices.numpy()

    def detect(image: np.ndarray):
        frame = int(image[0, 0, 0])
        points = np.zeros((478, 2))
        points[indices[indices >= 0]] = pixels[frame].numpy()[indices >= 0]
        return points

    return detect


def test_expression_guidance_rejects_a_changed_expression_and_fits_it(scene) -> None:
    head, avatar, sequence, cameras = scene
    from shared_proto import FlameSequence

    changed = sequence.expression.copy()
    changed[1] = changed[0]
    smile = [head.expression_names.index(name) for name in ("mouth_smile_left", "mouth_smile_right")]
    changed[1, smile] += 2.0  # frame 1 shows frame 0 smiling
    jaw = sequence.jaw.copy()
    jaw[1] = jaw[0]
    fields = {name: getattr(sequence, name).copy() for name in ("rotation", "neck", "eyes", "translation")}
    for value in fields.values():
        value[1] = value[0]
    truth = FlameSequence(shape=sequence.shape, expression=changed, jaw=jaw, **fields)
    shape = torch.zeros(0)
    cameras = [capture_camera(256)] * 4  # only projected, never rasterized
    detect = _detector_for(head, truth, cameras[0], shape)
    guidance = ExpressionGuidance(head, shape, truth, cameras, tolerance=0.01, detector=detect)

    def image(frame: int) -> torch.Tensor:
        out = torch.zeros(8, 8, 3)
        out[0, 0, 0] = frame / 255.0
        return out

    keep, distance = guidance.accepts(0, image(0), image(0))
    assert keep and distance.landmark_nme < 1e-6
    keep, distance = guidance.accepts(0, image(1), image(0))  # same pose, different expression
    assert not keep and distance.landmark_nme > 0.01
    smiling = detect((image(1).numpy() * 255).round().astype(np.uint8))[guidance.mesh_points]
    tracked = detect((image(0).numpy() * 255).round().astype(np.uint8))[guidance.mesh_points]
    fitted = guidance.fit_expression(0, smiling)
    tracked_expression = torch.tensor(np.array(sequence.expression[0]), dtype=torch.float32)
    torch.testing.assert_close(guidance.fit_expression(0, tracked), tracked_expression, atol=1e-3, rtol=0)
    _, base, basis = guidance._linear_landmarks(0)
    explained, _ = project((base + torch.einsum("e,epc->pc", fitted - tracked_expression, basis))[None], cameras[:1])
    before = np.abs(smiling - tracked).mean()
    assert np.abs(explained[0].numpy() - smiling).mean() < 0.2 * before  # the fit explains the new landmarks
    assert float(fitted[smile].sum() - tracked_expression[smile].sum()) > 0.5  # ... mostly by smiling more
    compared = guidance.compare(0, image(1), image(0), fit=True)
    assert compared.expression > 0.5 and guidance.compare(0, image(0), image(0), fit=True).expression < 1e-3
