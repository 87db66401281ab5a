"""Camera and rotation conventions of the trackers, converted to Keyface's (OpenCV cameras, axis-angle).

Keyface cameras are OpenCV: x right, y down, z forward (the camera looks down +z); `K` in pixels with
(0, 0) the top-left corner of the top-left pixel; `world_to_camera` maps world points to camera points,
X_cam = R X_world + t (column vectors).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

FLIP_YZ = np.diag([1.0, -1.0, -1.0])
"""[3, 3] OpenGL camera axes (x right, y up, z back) <-> OpenCV (x right, y down, z forward); its own inverse."""
FLIP_XY = np.diag([-1.0, -1.0, 1.0])
"""[3, 3] PyTorch3D view axes (x left, y up, z forward) <-> OpenCV; its own inverse."""


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """[3, 3] pinhole K in pixels."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """[4, 4] from a [3, 3] rotation and a [3] translation."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def rigid_inverse(pose: np.ndarray) -> np.ndarray:
    """[4, 4] inverse of a rigid [4, 4] transform: (R, t)^-1 = (R^T, -R^T t)."""
    rotation = pose[:3, :3].T  # [3, 3]
    return rigid(rotation, -rotation @ pose[:3, 3])


def opencv_c2w_to_w2c(camera_to_world: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world already in OpenCV axes (INSTA) -> world-to-camera."""
    return rigid_inverse(camera_to_world)


def opengl_c2w_to_opencv_w2c(camera_to_world: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world in OpenGL/Blender camera axes (NeRF, VHAP, GaussianAvatars) -> OpenCV world-to-camera.

    X_world = R X_gl + t and X_gl = F X_cv with F = diag(1, -1, -1), so X_world = (R F) X_cv + t: negate
    the y and z columns of R (GaussianAvatars' `c2w[:3, 1:3] *= -1`), then invert the rigid transform.
    """
    flipped = camera_to_world.copy()
    flipped[:3, :3] = camera_to_world[:3, :3] @ FLIP_YZ
    return rigid_inverse(flipped)


def opengl_w2c_to_opencv(world_to_camera: np.ndarray) -> np.ndarray:
    """[4, 4] world-to-camera in OpenGL camera axes -> OpenCV.

    X_cv = F X_gl = F (R X_world + t) with F = diag(1, -1, -1): negate the y and z rows.
    """
    return rigid(FLIP_YZ @ world_to_camera[:3, :3], FLIP_YZ @ world_to_camera[:3, 3])


def pytorch3d_to_opencv(rotation: np.ndarray, translation: np.ndarray, focal: np.ndarray, principal_point: np.ndarray,
                        height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A PyTorch3D `PerspectiveCameras` (NDC intrinsics) -> OpenCV ([4, 4] world-to-camera, [3, 3] K).

    PyTorch3D multiplies row vectors, X_view = X_world R + T, with view axes x left, y up, z forward.
    In column form X_view = R^T X_world + T, and X_cv = F X_view with F = diag(-1, -1, 1), so
    R_cv = F R^T and t_cv = F T. Intrinsics are in NDC where the shorter image side spans [-1, 1]:
    x_ndc = f_x X_view / Z + p_x with +x to the left, and u = W / 2 - s x_ndc with s = min(H, W) / 2.
    Since X_cv = -X_view: u = s f_x X_cv / Z + (W / 2 - s p_x), so fx = s f_x, cx = W / 2 - s p_x
    (and the same for y with H). This is PyTorch3D's `opencv_from_cameras_projection`.

    Args:
        rotation: [3, 3] PyTorch3D R (row-vector convention).
        translation: [3] PyTorch3D T.
        focal: [2] NDC focal lengths (fx, fy).
        principal_point: [2] NDC principal point.
        height, width: image size in pixels.
    """
    scale = min(height, width) / 2.0
    K = intrinsics(scale * focal[0], scale * focal[1],
                   width / 2.0 - scale * principal_point[0], height / 2.0 - scale * principal_point[1])
    return rigid(FLIP_XY @ rotation.T, FLIP_XY @ translation), K


def rotation_6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """[..., 6] continuous 6D rotations (Zhou et al. 2019, PyTorch3D convention) -> [..., 3, 3].

    PyTorch3D's `matrix_to_rotation_6d` keeps the first two ROWS of the matrix, so the inverse is
    Gram-Schmidt on the rows: b1 = a1 / |a1|, b2 = normalise(a2 - (b1 . a2) b1), b3 = b1 x b2,
    matrix = [b1; b2; b3] stacked as rows.

    Raises:
        ValueError: a 6D vector is degenerate (a zero first half, or two parallel halves).
    """
    a1, a2 = d6[..., :3], d6[..., 3:]  # [..., 3]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)  # [..., 1]
    b1 = a1 / np.where(n1 > 0.0, n1, 1.0)
    residual = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1  # [..., 3]
    n2 = np.linalg.norm(residual, axis=-1, keepdims=True)  # [..., 1]
    # Degenerate: a (near) zero first half, or a second half (near) parallel to it, relative to its size.
    if np.any(n1 <= 1e-8) or np.any(n2 <= 1e-6 * np.linalg.norm(a2, axis=-1, keepdims=True)) or np.any(n2 <= 1e-12):
        raise ValueError("degenerate 6D rotation (zero or parallel halves)")
    b2 = residual / n2
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-2)  # [..., 3, 3]


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 3] axis-angle (angle in [0, pi], radians)."""
    flat = matrix.reshape(-1, 3, 3)
    return Rotation.from_matrix(flat).as_rotvec().reshape(*matrix.shape[:-2], 3)
