"""Camera and rotation conventions, checked against the upstream definitions (not against our own inverse)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.track.importers import conventions


def test_rotation_6d_is_the_first_two_rows_like_pytorch3d():
    matrices = Rotation.random(5, random_state=1).as_matrix()  # [5, 3, 3]
    d6 = matrices[:, :2, :].reshape(5, 6)  # PyTorch3D matrix_to_rotation_6d: matrix[..., :2, :]
    np.testing.assert_allclose(conventions.rotation_6d_to_matrix(d6), matrices, atol=1e-12)
    # Gram-Schmidt: scaled / skewed inputs give the same rotation.
    noisy = d6.copy()
    noisy[:, :3] *= 3.0
    noisy[:, 3:] += 0.2 * noisy[:, :3]
    np.testing.assert_allclose(conventions.rotation_6d_to_matrix(noisy), matrices, atol=1e-12)
    # The column reading would give the transpose, i.e. the inverse rotation: the tests would notice.
    columns = np.swapaxes(matrices, 1, 2)[:, :2, :].reshape(5, 6)
    assert not np.allclose(conventions.rotation_6d_to_matrix(columns), matrices, atol=1e-3)


@pytest.mark.parametrize("bad", [np.zeros(6), np.array([1.0, 0, 0, 2.0, 0, 0])])
def test_rotation_6d_degenerate_raises(bad):
    with pytest.raises(ValueError, match="degenerate"):
        conventions.rotation_6d_to_matrix(bad)


def test_axis_angle_round_trip():
    rotvecs = np.random.default_rng(2).normal(0.0, 0.8, (10, 3))
    matrices = Rotation.from_rotvec(rotvecs).as_matrix()
    np.testing.assert_allclose(conventions.matrix_to_axis_angle(matrices), rotvecs, atol=1e-9)
    assert conventions.matrix_to_axis_angle(matrices.reshape(2, 5, 3, 3)).shape == (2, 5, 3)


def _project_cv(K, w2c, points):
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:3], cam[:, 2]


def test_opengl_c2w_matches_gaussian_avatars_recipe():
    rng = np.random.default_rng(3)
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.random(random_state=4).as_matrix()
    c2w[:3, 3] = rng.normal(size=3)
    expected = c2w.copy()
    expected[:3, 1:3] *= -1  # GaussianAvatars scene/dataset_readers.py
    np.testing.assert_allclose(conventions.opengl_c2w_to_opencv_w2c(c2w), np.linalg.inv(expected), atol=1e-12)


def test_opengl_camera_looking_down_minus_z_sees_the_origin_in_front():
    # VHAP's monocular camera: world-to-camera R = I, t = (0, 0, -1) in OpenGL axes.
    w2c_gl = np.eye(4)
    w2c_gl[2, 3] = -1.0
    w2c = conventions.opengl_w2c_to_opencv(w2c_gl)
    K = conventions.intrinsics(1000.0, 1000.0, 320.0, 240.0)
    uv, depth = _project_cv(K, w2c, np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]))
    np.testing.assert_allclose(depth, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(uv[0], [320.0, 240.0])
    assert uv[1, 0] > 320.0  # world +x to the right
    assert uv[2, 1] < 240.0  # world +y (OpenGL up) upwards in the image
    np.testing.assert_allclose(w2c, conventions.opengl_c2w_to_opencv_w2c(np.linalg.inv(w2c_gl)), atol=1e-12)


def _project_pytorch3d(R, T, focal, pp, height, width, points):
    """PyTorch3D PerspectiveCameras (in_ndc) + transform_points_screen, written from its definition."""
    view = points @ R + T  # row vectors
    ndc = focal * view[:, :2] / view[:, 2:3] + pp  # +x left, +y up, shorter side spans [-1, 1]
    scale = min(height, width) / 2.0
    return np.stack([width / 2.0 - scale * ndc[:, 0], height / 2.0 - scale * ndc[:, 1]], axis=1), view[:, 2]


@pytest.mark.parametrize("height,width", [(512, 512), (480, 640), (720, 400)])
def test_pytorch3d_to_opencv_projects_like_pytorch3d(height, width):
    rng = np.random.default_rng(height + width)
    R = Rotation.from_rotvec(rng.normal(0.0, 0.3, 3)).as_matrix()
    T = np.array([0.05, -0.02, 1.2])
    focal, pp = np.array([4.0, 4.2]), np.array([0.03, -0.05])
    w2c, K = conventions.pytorch3d_to_opencv(R, T, focal, pp, height, width)
    points = rng.normal(0.0, 0.1, (20, 3))
    expected_uv, expected_depth = _project_pytorch3d(R, T, focal, pp, height, width, points)
    uv, depth = _project_cv(K, w2c, points)
    np.testing.assert_allclose(uv, expected_uv, atol=1e-9)
    np.testing.assert_allclose(depth, expected_depth, atol=1e-12)


def test_pytorch3d_look_at_camera_sees_the_face_like_opencv():
    # look_at_view_transform(dist=1): camera at (0, 0, 1) looking at the origin.
    w2c, K = conventions.pytorch3d_to_opencv(np.diag([-1.0, 1.0, -1.0]), np.array([0.0, 0.0, 1.0]),
                                             np.array([5.0, 5.0]), np.zeros(2), 512, 512)
    uv, depth = _project_cv(K, w2c, np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]))
    np.testing.assert_allclose(uv[0], [256.0, 256.0])
    np.testing.assert_allclose(depth, [1.0, 1.0, 1.0])
    assert uv[1, 0] > 256.0 and uv[2, 1] < 256.0
