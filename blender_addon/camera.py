"""Blender camera -> OpenCV `Camera` (bpy-free: plain numbers in, a `shared_proto.Camera` out).

Intrinsics follow Blender's own view plane (BKE_camera_params_compute_viewplane):

    ycor    = pixel_aspect_y / pixel_aspect_x
    fit     = sensor_fit, AUTO -> HORIZONTAL if pixel_aspect_x * W >= pixel_aspect_y * H else VERTICAL
    sensor  = sensor_height if sensor_fit == VERTICAL else sensor_width      (AUTO always uses the width)
    viewfac = W if fit == HORIZONTAL else ycor * H
    fx = lens * viewfac / sensor,  fy = fx / ycor
    cx = W / 2 - shift_x * viewfac,  cy = H / 2 + shift_y * viewfac / ycor   (pixel (0, 0) = top-left corner)

Extrinsics: a Blender camera looks down its local -Z with +Y up, OpenCV down +Z with +Y down, so the
camera-to-world matrix (scale removed, as Blender's `world_to_camera_view` does) gets its y and z
columns flipped before inverting. The backend's world is FLAME space; the FLAME rig lives inside its
armature object, so points go rig -> world -> camera: `world_to_camera_flame = world_to_camera @
rig.matrix_world`. A uniformly scaled rig divides the whole transform by the scale (the projection of
s·X equals that of X), so the result stays rigid; near/far are divided by the scale too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared_proto import Camera

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Camera-local axes: Blender (x right, y up, looking down -z) -> OpenCV (x right, y down, looking down +z)."""


@dataclasses.dataclass(frozen=True)
class BlenderCamera:
    """The numbers of a Blender camera data-block that shape the image."""

    lens: float
    """Focal length in millimetres (`camera.lens`; Blender stores mm even when the UI shows a field of view)."""
    sensor_width: float
    """Sensor width in millimetres."""
    sensor_height: float
    """Sensor height in millimetres (used only by the VERTICAL fit)."""
    sensor_fit: str = "AUTO"
    """AUTO, HORIZONTAL or VERTICAL."""
    shift_x: float = 0.0
    """Horizontal lens shift, in units of the side the sensor fit picks."""
    shift_y: float = 0.0
    """Vertical lens shift, in units of the side the sensor fit picks."""
    clip_start: float = 0.1
    """Near clip distance in scene units."""
    clip_end: float = 100.0
    """Far clip distance in scene units."""
    type: str = "PERSP"
    """PERSP, ORTHO or PANO; only PERSP has a pinhole equivalent."""

    def __post_init__(self) -> None:
        if self.type != "PERSP":
            raise ValueError(f"camera type {self.type!r} is not supported: Keyface renders through a pinhole "
                             "camera; set the camera's Type to Perspective")
        if self.sensor_fit not in SENSOR_FITS:
            raise ValueError(f"sensor_fit must be one of {SENSOR_FITS}, got {self.sensor_fit!r}")
        for name in ("lens", "sensor_width", "sensor_height", "clip_start"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"camera {name} must be a positive number, got {getattr(self, name)!r}")
        if not self.clip_end > self.clip_start:
            raise ValueError(f"camera clip_end must exceed clip_start, got {self.clip_start} .. {self.clip_end}")


@dataclasses.dataclass(frozen=True)
class RenderSize:
    """The scene's output size settings (Render properties -> Format)."""

    resolution_x: int
    """Width in pixels at 100 %."""
    resolution_y: int
    """Height in pixels at 100 %."""
    percentage: int = 100
    """resolution_percentage: the image is resolution * percentage // 100 pixels (Blender's integer rule)."""
    pixel_aspect_x: float = 1.0
    """Horizontal pixel aspect."""
    pixel_aspect_y: float = 1.0
    """Vertical pixel aspect."""

    def __post_init__(self) -> None:
        for name in ("resolution_x", "resolution_y", "percentage"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (self.pixel_aspect_x > 0 and self.pixel_aspect_y > 0):
            raise ValueError(f"pixel aspect must be positive, got {self.pixel_aspect_x} x {self.pixel_aspect_y}")
        width, height = self.pixels
        if width < 1 or height < 1:
            raise ValueError(f"{self.resolution_x}x{self.resolution_y} at {self.percentage}% is less than a pixel")

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the rendered image."""
        return self.resolution_x * self.percentage // 100, self.resolution_y * self.percentage // 100


def intrinsics(camera: BlenderCamera, size: RenderSize) -> np.ndarray:
    """[3, 3] OpenCV K in pixels for `camera` rendering at `size` (see the module docstring)."""
    width, height = size.pixels
    ycor = size.pixel_aspect_y / size.pixel_aspect_x
    fit = camera.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if size.pixel_aspect_x * width >= size.pixel_aspect_y * height else "VERTICAL"
    sensor = camera.sensor_height if camera.sensor_fit == "VERTICAL" else camera.sensor_width
    viewfac = width if fit == "HORIZONTAL" else ycor * height
    fx = camera.lens * viewfac / sensor
    return np.array([[fx, 0.0, width / 2 - camera.shift_x * viewfac],
                     [0.0, fx / ycor, height / 2 + camera.shift_y * viewfac / ycor],
                     [0.0, 0.0, 1.0]])


def uniform_scale(matrix: np.ndarray, what: str) -> float:
    """The uniform scale of a [4, 4] affine matrix; ValueError for shear, mirroring or non-uniform scale."""
    linear = np.asarray(matrix, dtype=np.float64)[:3, :3]
    scales = np.linalg.norm(linear, axis=0)  # [3] column lengths
    if scales.min() <= 0 or np.ptp(scales) > 1e-6 * scales.max():
        raise ValueError(f"{what} must have a uniform scale, got {np.round(scales, 6).tolist()}; apply the scale "
                         "or make it uniform")
    rotation = linear / scales
    if np.abs(rotation.T @ rotation - np.eye(3)).max() > 1e-5 or np.linalg.det(rotation) < 0:
        raise ValueError(f"{what} is sheared or mirrored (determinant {np.linalg.det(linear):.6g}); remove the "
                         "negative scale or shear")
    return float(scales.mean())


def world_to_camera(camera_matrix_world: np.ndarray, rig_matrix_world: np.ndarray | None = None
                    ) -> tuple[np.ndarray, float]:
    """([4, 4] rigid OpenCV world-to-camera from rig space, rig scale).

    `camera_matrix_world` is the camera object's matrix_world (its scale is ignored, like Blender does);
    `rig_matrix_world` the FLAME rig's armature matrix_world, or None for Blender world space.
    """
    pose = np.array(camera_matrix_world, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"camera matrix_world must be a finite 4x4 matrix, got shape {pose.shape}")
    uniform_scale(pose, "the camera object")  # rejects shear / mirroring; Blender drops the scale itself
    pose[:3, :3] /= np.linalg.norm(pose[:3, :3], axis=0)
    camera_to_world = pose @ BLENDER_TO_OPENCV  # [4, 4] OpenCV camera -> world
    rotation = camera_to_world[:3, :3].T
    result = np.eye(4)
    result[:3, :3] = rotation
    result[:3, 3] = -rotation @ camera_to_world[:3, 3]
    if rig_matrix_world is None:
        return result, 1.0
    rig = np.array(rig_matrix_world, dtype=np.float64)
    if rig.shape != (4, 4) or not np.isfinite(rig).all():
        raise ValueError(f"rig matrix_world must be a finite 4x4 matrix, got shape {rig.shape}")
    scale = uniform_scale(rig, "the FLAME rig object")
    combined = result @ rig  # [4, 4] rig -> camera, scaled by `scale`
    combined[:3, :] /= scale
    return combined, scale


def opencv_camera(camera: BlenderCamera, size: RenderSize, camera_matrix_world: np.ndarray,
                  rig_matrix_world: np.ndarray | None = None) -> Camera:
    """The OpenCV `Camera` seeing what Blender's camera sees, in the rig's (FLAME) space when a rig is given."""
    pose, scale = world_to_camera(camera_matrix_world, rig_matrix_world)
    width, height = size.pixels
    return Camera(K=intrinsics(camera, size), world_to_camera=pose, width=width, height=height,
                  near=camera.clip_start / scale, far=camera.clip_end / scale)
