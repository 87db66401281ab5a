"""The Blender rig (bpy 5 as a module) built from a real backend reproduces the backend's FLAME exactly.

A subprocess (bpy writes to HOME, kept separate from the test process) connects the add-on to a backend,
builds the rig through `keyface.build_rig` (job `head_model`), keys random shape / expression / eyelid /
translation values and global, neck, jaw and eye rotations at frames 1, 5 and 9, then records Blender's
evaluated mesh (armature space) and `rig_sequence` at every frame 1..9. Here FlameModel poses the same head
with that sequence; the two must agree to TOLERANCE at the keys and in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from backend.flame.model import FlameModel
from shared_proto.sequence_io import load_sequence_npz

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6
"""Metres (model units). Issue 6 asks for <= 1e-4; Blender's float32 evaluation lands near 1e-7, and a bound this
tight catches driver mistakes (a stale or clamped driver value is ~1e-5) that 1e-4 would let through."""

DRIVER = r"""
import json, sys
import bpy, numpy as np
import blender_addon
from blender_addon import flame_pack, rig_params
from shared_proto.sequence_io import save_sequence_npz

address, head, n_shape, n_expression, out, vhap = sys.argv[1:7]
blender_addon.register()
bpy.ops.keyface.connect(address=address)
bpy.ops.keyface.build_rig(head=head, shape=int(n_shape), expression=int(n_expression))
rig = rig_params.find_rig(bpy.context)
settings = rig.keyface
report = {"is_simple": [], "drivers": 0}
for owner in (rig, settings.mesh, settings.mesh.data.shape_keys):
    for curve in owner.animation_data.drivers:
        report["drivers"] += 1
        if curve.driver.type == "SCRIPTED":
            report["is_simple"].append(curve.driver.is_simple_expression)
            report.setdefault("longest", 0)
            report["longest"] = max(report["longest"], len(curve.driver.expression))

def evaluated_vertices():
    mesh = settings.mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)

neutral = evaluated_vertices()
bpy.ops.keyface.rig_preset(preset="SURPRISE")
names = [item.name for item in settings.expression]
report["preset_values"] = {n: settings.expression[n].value for n in ("eye_wide_left", "smile") if n in names}
report["preset_moves_mesh"] = float(np.abs(evaluated_vertices() - neutral).max())
bpy.ops.keyface.rig_randomise(target="SHAPE", seed=3)
report["randomised_shape"] = float(np.abs([item.value for item in settings.shape]).max())
bpy.ops.keyface.rig_reset(target="ALL")
report["reset_error"] = float(np.abs(evaluated_vertices() - neutral).max())

rng = np.random.default_rng(7)
S, E = len(settings.shape), len(settings.expression)
shape = rng.normal(size=S) * 0.8  # one identity, keyed at every key frame
for frame in (1, 5, 9):
    aa = rng.uniform(-0.5, 0.5, size=(5, 3))
    values = flame_pack.RigValues(
        shape=shape[None], expression=rng.normal(size=(1, E)),
        eyelids=rng.uniform(0, 1, size=(1, 2)) if settings.has_eyelids else None,
        translation=rng.normal(size=(1, 3)) * 0.05, quaternions=flame_pack.axis_angle_to_quaternion(aa)[None])
    rig_params.set_values(rig, values)
    for path, index, _ in values.channels():
        rig.keyframe_insert(path, index=-1 if path.endswith(".value") else index, frame=frame)

vertices = []
for frame in range(1, 10):
    bpy.context.scene.frame_set(frame)
    vertices.append(evaluated_vertices())
np.save(out + "/vertices.npy", np.stack(vertices))
bpy.context.scene.frame_set(3)
bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 9
sequence = rig_params.rig_sequence(rig, 1, 9)
curves = rig_params.animation_curves(rig)  # the F-curve path rig_sequence took, against evaluating each frame
report["fast_path_curves"] = -1 if curves is None else len(curves)
rig.animation_data.action_blend_type = "ADD"  # blending: only evaluating each frame is exact
report["blend_falls_back"] = rig_params.animation_curves(rig) is None
rig.animation_data.action_blend_type = "REPLACE"
fast = rig_params._values_from_curves(rig, curves, range(1, 10))
slow = rig_params._values_by_frame_set(rig, range(1, 10))
report["fast_vs_frame_set"] = float(max(np.abs(getattr(fast, f) - getattr(slow, f)).max()
                                        for f in ("shape", "expression", "translation", "quaternions")))
save_sequence_npz(sequence, out + "/sequence.npz")
bpy.ops.keyface.export_sequence(filepath=out + "/exported.json")

# bulk import of the exported file into a second key range, read back
loaded = rig_params.load_sequence_file(out + "/exported.json")
rig_params.keyframe_sequence(rig, loaded, 101)
again = rig_params.rig_sequence(rig, 101, 109)
rig_params.keyframe_sequence(rig, loaded, 101)  # again: replaces the range, keeps the keys at 1, 5, 9
fields = ("expression", "rotation", "neck", "jaw", "eyes", "translation")
report["reimport_error"] = float(max(np.abs(getattr(again, f) - getattr(sequence, f)).max() for f in fields))
kept = rig_params.rig_sequence(rig, 1, 9)  # the keys stay (in-betweens follow their new neighbours' handles)
report["kept_error"] = float(max(np.abs(getattr(kept, f)[::4] - getattr(sequence, f)[::4]).max() for f in fields))
jaw_w = rig_params.animation_curves(rig)[('pose.bones["jaw"].rotation_quaternion', 0)]
report["jaw_keys"] = [(round(k.co[0]), k.interpolation) for k in jaw_w.keyframe_points]
if vhap != "-":
    bpy.ops.keyface.import_sequence(filepath=vhap, source="BACKEND", use_scene_start=False)
    save_sequence_npz(rig_params.rig_sequence(rig, 0, 4), out + "/vhap.npz")
report["frame"] = bpy.context.scene.frame_current
if head != "builtin":  # the default avatar stands on the built-in head: this rig's motion does not fit it
    try:
        report["render_default"] = sorted(bpy.ops.keyface.render(frame_start=1, frame_end=2, resolution=(16, 16)))
    except RuntimeError as error:
        report["render_default"] = str(error)
blender_addon.runtime.disconnect()  # the spec is what matters here, not the job
try:
    bpy.ops.keyface.reconstruct(filepath=out + "/clip.mp4")
except RuntimeError:
    pass
report["reconstruct_head"] = blender_addon.runtime.BOOK.records()[-1].spec["head"]
print("RESULT" + json.dumps(report))
"""


def run_driver(endpoint: str, head: str, n_shape: int, n_expression: int, out: Path, vhap: str = "-") -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", DRIVER, endpoint, head, str(n_shape), str(n_expression), str(out),
                             vhap], cwd=out, capture_output=True, text=True, timeout=300, env=env)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Dependency cycle" not in result.stdout + result.stderr
    return json.loads(line[len("RESULT"):])


def small_flame_file(path: Path, seed: int = 3, n_vertices: int = 300) -> Path:
    """A random FLAME-layout .npz (300 shape + 100 expression components, eyelids), joints and weights convex."""
    rng = np.random.default_rng(seed)
    template = rng.normal(size=(n_vertices, 3)) * np.array([0.08, 0.11, 0.09])
    regressor = np.zeros((5, n_vertices))
    for row in regressor:
        chosen = rng.choice(n_vertices, size=24, replace=False)
        row[chosen] = rng.dirichlet(np.ones(24))
    faces = np.stack([rng.choice(n_vertices, size=3, replace=False) for _ in range(400)]).astype(np.int64)
    np.savez(path, v_template=template, f=faces, shapedirs=rng.normal(size=(n_vertices, 3, 400)) * 2e-3,
             posedirs=rng.normal(size=(n_vertices, 3, 36)) * 5e-3, J_regressor=regressor,
             kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
             weights=rng.dirichlet(np.ones(5) * 0.3, size=n_vertices),
             l_eyelid=rng.normal(size=(n_vertices, 3)) * 3e-3, r_eyelid=rng.normal(size=(n_vertices, 3)) * 3e-3)
    return path


def assert_round_trip(model: FlameModel, out: Path, report: dict) -> None:
    assert report["drivers"] > 0 and all(report["is_simple"]) and report["longest"] <= 256
    blender = np.load(out / "vertices.npy")  # [T, V, 3]
    sequence = load_sequence_npz(out / "sequence.npz")
    assert len(sequence) == 9 and sequence.frame_start == 1
    with torch.no_grad():
        reference = model.forward_params(sequence).vertices.numpy()  # [T, V, 3]
    error = np.abs(blender - reference).max(axis=(1, 2))  # per frame
    assert error.max() <= TOLERANCE, f"max |Blender - FLAME| per frame: {error}"
    moved = np.abs(reference - reference[:1]).max()
    assert moved > 1e-2  # the frames really differ (keys and in-betweens)
    assert report["reimport_error"] < 1e-5 and report["kept_error"] == 0.0
    assert report["jaw_keys"] == [[1, "BEZIER"], [5, "BEZIER"], [9, "BEZIER"]] + [[f, "LINEAR"] for f in range(101, 110)]
    assert report["fast_path_curves"] > 0 and report["fast_vs_frame_set"] < 1e-6 and report["blend_falls_back"]
    assert report["frame"] == 3  # reading the rig leaves the scene at its frame


def test_builtin_head_rig_matches_flame_at_keys_and_in_between(shared_backend, tmp_path) -> None:
    report = run_driver(shared_backend.endpoint, "builtin", 100, 100, tmp_path)
    assert report["preset_values"] == {"eye_wide_left": 2.0, "smile": 0.0} and report["preset_moves_mesh"] > 1e-3
    assert report["randomised_shape"] > 0.5 and report["reset_error"] < 1e-7
    assert report["reconstruct_head"] == "builtin"
    assert_round_trip(FlameModel.builtin(dtype=torch.float64), tmp_path, report)


def test_flame_layout_head_rig_matches_and_imports_tracking(shared_backend, tmp_path) -> None:
    model_path = small_flame_file(tmp_path / "flame_model.npz")
    frames = 5
    rng = np.random.default_rng(0)
    shape, expr = np.zeros(300), np.zeros((frames, 100))
    shape[:12], expr[:, :8] = rng.normal(size=12), rng.normal(size=(frames, 8))
    tracked = {"rotation": rng.normal(size=(frames, 3)) * 0.2, "translation": rng.normal(size=(frames, 3)) * 0.01,
               "neck_pose": rng.normal(size=(frames, 3)) * 0.2, "jaw_pose": rng.normal(size=(frames, 3)) * 0.2,
               "eyes_pose": rng.normal(size=(frames, 6)) * 0.2, "shape": shape, "expr": expr}
    vhap = tmp_path / "tracked_flame_params.npz"
    np.savez(vhap, **{k: v.astype(np.float32) for k, v in tracked.items()}, focal_length=np.array([1.5], np.float32),
             image_size=np.array([256, 320]), timestep_id=np.array([f"{i:05d}" for i in range(frames)]))

    report = run_driver(shared_backend.endpoint, str(model_path), 12, 8, tmp_path, str(vhap))
    assert report["reconstruct_head"] == str(model_path)  # the avatar is reconstructed on the rig's own head
    assert "the default avatar is built on the built-in head" in report["render_default"], report["render_default"]
    model = FlameModel.from_file(model_path, dtype=torch.float64)
    assert_round_trip(model, tmp_path, report)
    imported = load_sequence_npz(tmp_path / "vhap.npz")
    np.testing.assert_allclose(imported.jaw, tracked["jaw_pose"], atol=1e-5)
    np.testing.assert_allclose(imported.expression, expr[:, :8], atol=1e-6)
    np.testing.assert_allclose(imported.translation, tracked["translation"], atol=1e-6)
