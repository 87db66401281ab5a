"""`keyface.import_gaussians` in Blender (bpy as a module) on a PLY the backend's `export` job wrote: attributes
match the file, the splat preview is built, and a small Cycles render shows the splats where they project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from backend.avatar import StaticGaussians, read_ply, write_ply
from backend.flame import BUILTIN_HEAD_PATH
from shared_client import Client

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")

REPO_ROOT = Path(__file__).resolve().parents[2]
GAUSSIANS, SIZE = 3000, 48

# Runs in its own interpreter (bpy and torch stay apart): imports the PLY, dumps what Blender holds, renders twice.
DRIVER = r"""
import json, math, sys
import bpy  # first: it puts Blender's own modules (addon_utils, mathutils, bpy_extras) on the path
import addon_utils, mathutils, numpy as np
from bpy_extras.object_utils import world_to_camera_view
from blender_addon import gaussian_ops

ply, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
bpy.ops.wm.read_factory_settings(use_empty=True)
for cls in gaussian_ops.CLASSES:
    bpy.utils.register_class(cls)
result = {}
try:
    bpy.ops.keyface.import_gaussians(filepath=sys.argv[4])
except RuntimeError as error:
    result["bad_file_error"] = str(error)
result["objects_after_bad_file"] = len(bpy.data.objects)
bpy.ops.keyface.import_gaussians(filepath=ply, max_points=500)
subset = bpy.context.active_object
result["subset"] = [len(subset.data.vertices), subset["keyface_gaussians_in_file"]]
bpy.data.objects.remove(subset)
bpy.ops.keyface.import_gaussians(filepath=sys.argv[5], up_axis="Z")
higher = bpy.context.active_object
sh = np.empty((len(higher.data.vertices), 9, 3), np.float32)
for k in range(9):
    values = np.empty(len(higher.data.vertices) * 3, np.float32)
    higher.data.attributes[f"sh_{k}"].data.foreach_get("vector", values)
    sh[:, k] = values.reshape(-1, 3)
np.save(f"{out}/sh_degree2.npy", sh)
result["degree2"] = [higher["keyface_sh_degree"], "sh_9" in higher.data.attributes, list(higher.rotation_euler)]
bpy.data.objects.remove(higher)

bpy.ops.keyface.import_gaussians(filepath=ply, max_points=0)
obj = bpy.context.active_object
mesh = obj.data
n = len(mesh.vertices)
arrays = {"positions": np.empty(n * 3, np.float32)}
mesh.vertices.foreach_get("co", arrays["positions"])
for name, key, width in (("colour", "color", 4), ("opacity", "value", 1), ("scale", "vector", 3),
                         ("rotation", "value", 4), ("sh_0", "vector", 3)):
    arrays[name] = np.empty(n * width, np.float32)
    mesh.attributes[name].data.foreach_get(key, arrays[name])
arrays = {name: value.reshape(n, -1) for name, value in arrays.items()}
arrays["matrix_world"] = np.array(obj.matrix_world)
modifier = obj.modifiers[0]
result.update(attributes={a.name: [a.data_type, a.domain] for a in mesh.attributes if not a.name.startswith(".")},
              active_colour=mesh.color_attributes.active_color_name, modifier=[modifier.type, modifier.name],
              group=modifier.node_group.name, nodes=sorted(node.bl_idname for node in modifier.node_group.nodes),
              material=[slot.material.name for slot in obj.material_slots], sh_degree=obj["keyface_sh_degree"])
evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
result.update(evaluated_vertices=len(evaluated.vertices), evaluated_faces=len(evaluated.polygons),
              evaluated_active_colour=evaluated.color_attributes.active_color_name,
              evaluated_attributes=sorted(a.name for a in evaluated.attributes if not a.name.startswith(".")))

scene = bpy.context.scene
addon_utils.enable("cycles", default_set=True)
scene.render.engine = "CYCLES"
scene.cycles.device, scene.cycles.samples = "CPU", 4
scene.render.resolution_x = scene.render.resolution_y = size
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
scene.view_settings.view_transform = "Standard"
camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
scene.collection.objects.link(camera)
scene.camera = camera
world = arrays["matrix_world"][:3, :3] @ arrays["positions"].T + arrays["matrix_world"][:3, 3:]  # [3, N]
centre = world.mean(axis=1)
camera.location = (centre[0], centre[1] - 0.9, centre[2])  # in front of the face (Keyface exports: -Y in Blender)
camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looking along +Y
bpy.context.view_layer.update()
arrays["projected"] = np.array([world_to_camera_view(scene, camera, mathutils.Vector(p)) for p in world.T])
for name, show in (("splats", True), ("points_only", False)):
    modifier.show_render = show
    scene.render.filepath = f"{out}/{name}.png"
    bpy.ops.render.render(write_still=True)
np.savez(f"{out}/arrays.npz", **arrays)
print("RESULT" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def exported_ply(shared_backend, tmp_path_factory) -> Path:
    """The default avatar's neutral pose written by the backend's `export` job and fetched."""
    with Client(shared_backend.endpoint, timeout=30) as client:
        result = client.submit("export", {"avatar": "default", "gaussians": GAUSSIANS, "format": "ply"}).wait(120)
        return client.fetch(result["assets"][0], tmp_path_factory.mktemp("export") / "avatar.ply")


@pytest.fixture(scope="module")
def imported(exported_ply, tmp_path_factory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("blender")
    mesh_ply = out / "mesh.ply"
    mesh_ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                         b"property float z\nend_header\n0 0 0\n")
    generator = torch.Generator().manual_seed(0)
    degree2 = write_ply(out / "degree2.ply", StaticGaussians(
        means=torch.randn(20, 3, generator=generator), quats=torch.randn(20, 4, generator=generator),
        log_scales=torch.randn(20, 3, generator=generator) - 4, opacity_logits=torch.randn(20, generator=generator),
        sh=torch.randn(20, 9, 3, generator=generator)))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-c", DRIVER, str(exported_ply), str(out), str(SIZE), str(mesh_ply),
                          str(degree2)],
                         cwd=out, env=env, capture_output=True, text=True, timeout=300)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    arrays = dict(np.load(out / "arrays.npz"))
    return json.loads(line[len("RESULT"):]), arrays, out


def test_attributes_hold_the_file_values(exported_ply, imported) -> None:
    result, arrays, _ = imported
    ref = read_ply(exported_ply)
    assert ref.n == GAUSSIANS and arrays["positions"].shape == (GAUSSIANS, 3)
    np.testing.assert_allclose(arrays["positions"], ref.means.numpy(), atol=1e-7)
    np.testing.assert_allclose(arrays["sh_0"], ref.sh[:, 0].numpy(), atol=1e-7)
    np.testing.assert_allclose(arrays["opacity"][:, 0], torch.sigmoid(ref.opacity_logits).numpy(), rtol=1e-5)
    np.testing.assert_allclose(arrays["colour"][:, 3], arrays["opacity"][:, 0])
    np.testing.assert_allclose(arrays["scale"], ref.log_scales.exp().numpy(), rtol=1e-5)
    np.testing.assert_allclose(arrays["rotation"], ref.quats.numpy(), atol=1e-6)
    srgb = np.clip(0.5 + 0.28209479 * ref.sh[:, 0].numpy(), 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(arrays["colour"][:, :3], linear, atol=1e-5)
    assert result["attributes"] == {"colour": ["FLOAT_COLOR", "POINT"], "opacity": ["FLOAT", "POINT"],
                                    "position": ["FLOAT_VECTOR", "POINT"], "rotation": ["QUATERNION", "POINT"],
                                    "scale": ["FLOAT_VECTOR", "POINT"], "sh_0": ["FLOAT_VECTOR", "POINT"]}
    assert result["active_colour"] == "colour" and result["sh_degree"] == 0
    np.testing.assert_allclose(arrays["matrix_world"][:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-6)


def test_the_splat_preview_is_built(imported) -> None:
    result, _, _ = imported
    assert result["modifier"] == ["NODES", "Keyface Splats"] and result["group"] == "Keyface Splat Preview"
    assert {"GeometryNodeInstanceOnPoints", "GeometryNodeMeshIcoSphere", "GeometryNodeRealizeInstances",
            "GeometryNodeSetMaterial", "GeometryNodeInputNamedAttribute"} <= set(result["nodes"])
    assert result["material"] == ["Keyface Splat"]
    # one 12-vertex, 20-face icosphere per Gaussian, plus the points themselves (which keep `colour` active)
    assert result["evaluated_vertices"] == GAUSSIANS * 13 and result["evaluated_faces"] == GAUSSIANS * 20
    assert result["evaluated_active_colour"] == "colour"
    assert {"colour", "opacity"} <= set(result["evaluated_attributes"])
    assert not {"scale", "rotation", "sh_0"} & set(result["evaluated_attributes"])  # dropped before realising


def test_higher_sh_coefficients_become_attributes(imported) -> None:
    result, _, out = imported
    assert result["degree2"] == [2, False, [0.0, 0.0, 0.0]]  # up axis 'Z': the file's coordinates as stored
    np.testing.assert_allclose(np.load(out / "sh_degree2.npy"), read_ply(out / "degree2.ply").sh.numpy(), atol=1e-7)


def test_max_points_and_a_bad_file(imported) -> None:
    result, _, _ = imported
    assert result["subset"] == [500, GAUSSIANS]
    assert "mesh.ply" in result["bad_file_error"] and "not a 3DGS splat file" in result["bad_file_error"]
    assert result["objects_after_bad_file"] == 0


def test_render_shows_the_splats_where_they_project(exported_ply, imported) -> None:
    _, arrays, out = imported
    splats = np.asarray(PIL.Image.open(out / "splats.png").convert("RGBA"))
    empty = np.asarray(PIL.Image.open(out / "points_only.png").convert("RGBA"))
    assert splats.shape == (SIZE, SIZE, 4)
    assert (empty[..., 3] == 0).all()  # the bare points do not render: what shows is the preview
    u, v, depth = arrays["projected"].T
    inside = (depth > 0) & (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    assert inside.mean() > 0.99
    cols, rows = (u[inside] * SIZE).astype(int), ((1 - v[inside]) * SIZE).astype(int)  # row 0 at the top
    hit = np.zeros((SIZE, SIZE), bool)
    hit[rows, cols] = True
    covered = splats[..., 3] > 0
    assert covered[hit].mean() > 0.95  # where the Gaussians project, the render is not background
    grown = hit.copy()  # background two pixels away from every projected centre
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            grown |= np.roll(np.roll(hit, dy, 0), dx, 1)
    assert not covered[~grown].any() and 0.05 < covered.mean() < 0.9
    # colour: with the Standard view an opaque pixel shows the file's (sRGB) colour of the nearest Gaussian there
    colours = np.clip(0.5 + 0.28209479 * read_ply(exported_ply).sh[:, 0].numpy(), 0, 1)[inside]  # [M, 3]
    nearest = np.full((SIZE, SIZE), -1)
    for i in np.argsort(-depth[inside]):  # far to near: the nearest Gaussian is written last
        nearest[rows[i], cols[i]] = i
    opaque = (splats[..., 3] > 250) & (nearest >= 0)
    assert opaque.sum() > 100
    error = np.abs(splats[opaque, :3] / 255 - colours[nearest[opaque]])  # [P, 3]
    assert np.median(error) < 0.05, np.median(error, axis=0)
