"""Read the scene camera from bpy into the bpy-free conversion of `camera.py`."""

from __future__ import annotations

import numpy as np

from shared_proto import Camera

from .camera import BlenderCamera, RenderSize, opencv_camera


def blender_camera(camera_object) -> BlenderCamera:
    """The numbers of a camera object's data; ValueError when it is not a camera."""
    if camera_object is None or camera_object.type != "CAMERA":
        raise ValueError("the scene has no camera: add one and make it the scene camera")
    data = camera_object.data
    return BlenderCamera(lens=data.lens, sensor_width=data.sensor_width, sensor_height=data.sensor_height,
                         sensor_fit=data.sensor_fit, shift_x=data.shift_x, shift_y=data.shift_y,
                         clip_start=data.clip_start, clip_end=data.clip_end, type=data.type)


def render_size(scene, resolution: tuple[int, int] | None = None) -> RenderSize:
    """The scene's output size, or `resolution` (width, height at 100 %) when given."""
    render = scene.render
    if resolution is not None and resolution[0] > 0 and resolution[1] > 0:
        width, height, percentage = int(resolution[0]), int(resolution[1]), 100
    else:
        width, height, percentage = render.resolution_x, render.resolution_y, render.resolution_percentage
    return RenderSize(width, height, percentage, render.pixel_aspect_x, render.pixel_aspect_y)


def matrix(value) -> np.ndarray:
    """[4, 4] float64 from a mathutils.Matrix."""
    return np.array([list(row) for row in value], dtype=np.float64)


def scene_camera(scene, rig=None, resolution: tuple[int, int] | None = None) -> Camera:
    """The scene camera at the current frame, in the rig's FLAME space (world space without a rig)."""
    camera_object = scene.camera
    data = blender_camera(camera_object)
    rig_matrix = None if rig is None else matrix(rig.matrix_world)
    return opencv_camera(data, render_size(scene, resolution), matrix(camera_object.matrix_world), rig_matrix)


def cameras_over(scene, frame_start: int, frame_end: int, rig=None,
                 resolution: tuple[int, int] | None = None) -> list[Camera]:
    """One camera per frame of [frame_start, frame_end] (animated cameras and rigs are evaluated per frame);
    the scene's current frame is restored afterwards."""
    current, subframe = scene.frame_current, scene.frame_subframe
    cameras = []
    try:
        for frame in range(frame_start, frame_end + 1):
            scene.frame_set(frame)
            cameras.append(scene_camera(scene, rig, resolution))
    finally:
        scene.frame_set(current, subframe=subframe)
    return cameras
