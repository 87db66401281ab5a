"""Blender camera -> OpenCV conversion (blender_addon/camera.py, bpy-free), checked against Blender itself.

The parity test runs bpy in a subprocess: it builds unusual cameras, projects random points with
`bpy_extras.object_utils.world_to_camera_view` and sends back the numbers; this process converts the same
settings with camera.py and projects the same points with `Camera.project`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.blender_addon.pure_addon import load

camera = load("camera")

# Each case: camera data, render settings, camera pose (location, euler XYZ, scale), rig pose or None.
CASES = [
    {"name": "plain", "cam": {}, "render": {}, "pose": [[0.1, -1.2, 0.3], [1.4, 0.1, 0.2], [1, 1, 1]], "rig": None},
    {"name": "vertical fit, shift, portrait", "cam": {"sensor_fit": "VERTICAL", "sensor_height": 30.0,
     "shift_x": 0.15, "shift_y": -0.2, "lens": 70.0}, "render": {"resolution_x": 480, "resolution_y": 720},
     "pose": [[0.0, -0.8, 0.05], [1.57, 0.0, 0.0], [1, 1, 1]], "rig": None},
    {"name": "auto fit portrait, pixel aspect 2, 50 %", "cam": {"shift_y": 0.1, "lens": 35.0},
     "render": {"resolution_x": 400, "resolution_y": 640, "pixel_aspect_x": 2.0, "resolution_percentage": 50},
     "pose": [[0.3, -1.0, 0.2], [1.3, 0.0, 0.3], [2.0, 2.0, 2.0]], "rig": None},
    {"name": "horizontal fit, tall pixels, rig rotated and scaled", "cam": {"sensor_fit": "HORIZONTAL",
     "shift_x": -0.3, "lens": 85.0}, "render": {"resolution_x": 640, "resolution_y": 360, "pixel_aspect_y": 2.0},
     "pose": [[0.0, -2.0, 0.4], [1.5, 0.0, -0.1], [1, 1, 1]],
     "rig": [[0.2, 0.1, 0.3], [1.5708, 0.0, 0.4], [1.7, 1.7, 1.7]]},
    {"name": "auto fit landscape with vertical shift, rig", "cam": {"shift_x": 0.05, "shift_y": 0.25},
     "render": {"resolution_x": 1920, "resolution_y": 1080, "resolution_percentage": 25},
     "pose": [[-0.4, -1.5, 0.1], [1.45, 0.0, -0.3], [1, 1, 1]], "rig": [[0.0, 0.0, 0.0], [1.5708, 0, 0], [1, 1, 1]]},
]

DRIVER = r"""
import json, sys
import bpy, mathutils
from bpy_extras.object_utils import world_to_camera_view

cases, points = json.loads(sys.stdin.read())
scene = bpy.context.scene
out = []
for case in cases:
    data = bpy.data.cameras.new(case["name"])
    for key, value in case["cam"].items():
        setattr(data, key, value)
    obj = bpy.data.objects.new(case["name"], data)
    scene.collection.objects.link(obj)
    (obj.location, obj.rotation_euler, obj.scale) = case["pose"]
    render = {"resolution_x": 512, "resolution_y": 512, "resolution_percentage": 100, "pixel_aspect_x": 1.0,
              "pixel_aspect_y": 1.0, **case["render"]}
    for key, value in render.items():
        setattr(scene.render, key, value)
    scene.camera = obj
    rig = mathutils.Matrix.Identity(4)
    if case["rig"]:
        location, euler, scale = case["rig"]
        rig = mathutils.Matrix.LocRotScale(mathutils.Vector(location), mathutils.Euler(euler),
                                           mathutils.Vector(scale))
    bpy.context.view_layer.update()
    ndc = [list(world_to_camera_view(scene, obj, rig @ mathutils.Vector(p))) for p in points]
    data_fields = {k: getattr(data, k) for k in ("lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x",
                                                  "shift_y", "clip_start", "clip_end", "type")}
    out.append({"ndc": ndc, "camera": data_fields, "render": render,
                "matrix_world": [list(r) for r in obj.matrix_world], "rig": [list(r) for r in rig]})
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def blender_projections():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.15, 0.15, size=(40, 3)).tolist()  # a head-sized cloud around the origin
    result = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps([CASES, points]), capture_output=True,
                            text=True, timeout=300)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, result.stdout + result.stderr
    return np.array(points), json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case["name"] for case in CASES])
def test_projection_matches_blender_world_to_camera_view(blender_projections, index) -> None:
    points, cases = blender_projections
    case = cases[index]
    render = case["render"]
    size = camera.RenderSize(render["resolution_x"], render["resolution_y"], render["resolution_percentage"],
                             render["pixel_aspect_x"], render["pixel_aspect_y"])
    rig = np.array(case["rig"]) if CASES[index]["rig"] else None
    cam = camera.opencv_camera(camera.BlenderCamera(**case["camera"]), size, np.array(case["matrix_world"]), rig)
    projected = cam.project(points)  # [N, 3] u, v pixels, depth
    ndc = np.array(case["ndc"])  # [N, 3] x, y in [0, 1] from the bottom left, depth along the view axis
    width, height = size.pixels
    assert (cam.width, cam.height) == (width, height)
    np.testing.assert_allclose(projected[:, 0] / width, ndc[:, 0], atol=2e-5)
    np.testing.assert_allclose(1.0 - projected[:, 1] / height, ndc[:, 1], atol=2e-5)
    scale = 1.0 if rig is None else camera.uniform_scale(rig, "rig")
    np.testing.assert_allclose(projected[:, 2] * scale, ndc[:, 2], rtol=1e-5, atol=1e-6)
    assert np.isclose(cam.near * scale, case["camera"]["clip_start"])


def test_default_camera_intrinsics_by_hand() -> None:
    # 50 mm on a 36 mm sensor, 1920x1080 at 50 %: fx = 50 * 960 / 36, principal point at the centre
    size = camera.RenderSize(1920, 1080, 50)
    K = camera.intrinsics(camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0), size)
    np.testing.assert_allclose(K, [[50 * 960 / 36, 0, 480], [0, 50 * 960 / 36, 270], [0, 0, 1]])
    # portrait: AUTO fits the sensor width to the height
    K = camera.intrinsics(camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0),
                          camera.RenderSize(500, 1000))
    assert np.isclose(K[0, 0], 50 * 1000 / 36) and np.isclose(K[1, 1], K[0, 0])


def test_camera_in_front_of_an_x_rotated_rig_looks_at_the_face() -> None:
    # FLAME (y up, face along +z) inside an armature rotated +90 deg about X: FLAME +z becomes Blender -y.
    rig = np.eye(4)
    rig[1:3, 1:3] = [[0.0, -1.0], [1.0, 0.0]]
    cam_pose = np.eye(4)
    cam_pose[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # rotation_euler (90 deg, 0, 0): looks along +y
    cam_pose[:3, 3] = [0.0, -0.6, 0.0]
    cam = camera.opencv_camera(camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0),
                               camera.RenderSize(256, 256), cam_pose, rig)
    # the nose tip (FLAME +z, +y up) lands in the centre column, above it the forehead
    nose, forehead = cam.project(np.array([[0.0, 0.0, 0.1], [0.0, 0.1, 0.0]]))
    assert np.isclose(nose[0], 128) and np.isclose(nose[2], 0.5)
    assert forehead[1] < 128  # up in FLAME is up in the image (row 0 at the top)


@pytest.mark.parametrize("kind", ["ORTHO", "PANO"])
def test_non_pinhole_cameras_are_refused_clearly(kind) -> None:
    with pytest.raises(ValueError, match="Perspective"):
        camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0, type=kind)


def test_bad_settings_and_transforms_are_refused_with_their_values() -> None:
    with pytest.raises(ValueError, match="sensor_fit"):
        camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0, sensor_fit="DIAGONAL")
    with pytest.raises(ValueError, match="lens"):
        camera.BlenderCamera(lens=0.0, sensor_width=36.0, sensor_height=24.0)
    with pytest.raises(ValueError, match="less than a pixel"):
        camera.RenderSize(1, 1, 50)
    good = camera.BlenderCamera(lens=50.0, sensor_width=36.0, sensor_height=24.0)
    stretched = np.diag([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"uniform scale, got \[1.0, 2.0, 1.0\]"):
        camera.opencv_camera(good, camera.RenderSize(64, 64), np.eye(4), stretched)
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="mirrored"):
        camera.opencv_camera(good, camera.RenderSize(64, 64), mirrored)
