"""The add-on in an animator's session (bpy 5.0.1 as a module, a real backend): no backend yet, an unsaved file,
a second .blend opened while a render runs, a backend path that exists only on the backend's machine.

One driver script in a fresh interpreter (bpy writes to HOME) imports the add-on from the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, sys, time
import bpy, blender_addon as keyface
from blender_addon import rig_params, runtime

address, folder = sys.argv[1:3]
keyface.register()
out = {}

def call(operator, **kwargs):
    started = time.monotonic()
    try:
        state, error = sorted(operator(**kwargs)), ""
    except RuntimeError as failure:  # bpy.ops raises when an operator reports an error
        state, error = ["CANCELLED"], str(failure)
    return {"state": state, "error": error, "seconds": time.monotonic() - started}

def strips():
    editor = bpy.context.scene.sequence_editor
    return [] if editor is None else [[s.name, s.directory] for s in editor.strips]

def pump(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "pump timed out"
        runtime.tick()
        time.sleep(0.02)

# 0. Blender 4.3: `Action.layers` exists (experimental, empty) beside the F-curves, and anim_utils has no channelbag
# helper; the rig's keyframes must still be read from the F-curves
import types
curve = types.SimpleNamespace(data_path="keyface.translation", array_index=0, mute=False, group=None)
animation = types.SimpleNamespace(drivers=[], use_nla=False, nla_tracks=[], use_tweak_mode=False,
                                  action_influence=1.0, action_blend_type="REPLACE", action_slot=None,
                                  action=types.SimpleNamespace(layers=[], fcurves=[curve]))
legacy_rig = types.SimpleNamespace(animation_data=animation, keyface=types.SimpleNamespace(shape=[], expression=[]))
helper_43 = rig_params.anim_utils
rig_params.anim_utils = types.SimpleNamespace()
out["blender_43_curves"] = list(rig_params.animation_curves(legacy_rig))
rig_params.anim_utils = helper_43

other = folder + "/other.blend"
bpy.ops.wm.save_as_mainfile(filepath=other, copy=True)  # another shot: the same startup scene 'Scene'

# 1. no backend connected yet: the rig operator says so at once (it never waits on the default address)
out["rig_unconnected"] = call(bpy.ops.keyface.build_rig)
# 2. a path that exists only on the backend's machine: Auto cannot guess what it is
out["remote_source"] = call(bpy.ops.keyface.reconstruct, filepath="/only/on/the/backend/anna_frames")

# 3. an unsaved file: the take must outlive Blender (its temporary folder is deleted when Blender quits)
assert bpy.ops.keyface.connect(address=address) == {"FINISHED"}
assert bpy.ops.keyface.build_rig(shape=8, expression=8) == {"FINISHED"}
scene, settings = bpy.context.scene, bpy.context.scene.keyface
camera = scene.camera
camera.location, camera.rotation_euler, camera.data.lens = (0.0, -0.7, 0.02), (1.5708, 0.0, 0.0), 85.0
settings.default_gaussians = 2000
assert bpy.ops.keyface.render(frame_start=1, frame_end=2, resolution=(32, 32), quality="final") == {"FINISHED"}
out["unsaved_take"] = runtime.BOOK.records()[-1].options["take_dir"]
out["tempdir"] = bpy.app.tempdir

# 4. a render of shot.blend ends while other.blend is open: its strip waits for shot.blend
shot = folder + "/shot.blend"
bpy.ops.wm.save_as_mainfile(filepath=shot)
assert bpy.ops.keyface.render(frame_start=1, frame_end=3, resolution=(32, 32), quality="final", wait=False) \
    == {"FINISHED"}
record = runtime.BOOK.records()[-1]
pump(lambda: record.job_id)
bpy.ops.wm.save_mainfile()
bpy.ops.wm.open_mainfile(filepath=other)
pump(lambda: record.terminal)
for _ in range(5):
    runtime.tick()
out["other_strips"], out["other_jobs"] = strips(), [j.label for j in bpy.context.scene.keyface.jobs]
bpy.ops.keyface.jobs_clear()  # clearing other.blend's list leaves shot.blend's ended job alone
bpy.ops.wm.open_mainfile(filepath=shot)
pump(lambda: len(strips()) == 2)  # the unsaved take's strip, then this one
out["shot_strips"], out["shot_jobs"] = strips(), [[j.label, j.state] for j in bpy.context.scene.keyface.jobs]
out["state"] = record.state
print("RESULT" + json.dumps(out), flush=True)
keyface.unregister()
"""


def test_unconnected_unsaved_and_two_files(shared_backend, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", DRIVER, shared_backend.endpoint, str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = json.loads(line[len("RESULT"):])

    assert out["blender_43_curves"] == [["keyface.translation", 0]]

    rig = out["rig_unconnected"]
    assert rig["state"] == ["CANCELLED"] and "not connected to a Keyface backend" in rig["error"], rig
    assert rig["seconds"] < 5.0  # it did not wait for a backend that is not there

    remote = out["remote_source"]
    assert remote["state"] == ["CANCELLED"] and "set Source to Video, Frames or Tracked" in remote["error"], remote

    take = Path(out["unsaved_take"])
    assert not str(take).startswith(out["tempdir"]), take  # Blender deletes its temporary folder on quit
    assert sorted(p.name for p in take.glob("frame_*.png")) == ["frame_000001.png", "frame_000002.png"]

    assert out["other_strips"] == [] and out["other_jobs"] == []  # nothing of shot.blend lands in other.blend
    assert out["state"] == "done"
    assert [directory for _, directory in out["shot_strips"]][1] == "//keyface_takes/take_v001/"
    assert ["render take_v001", "done"] in out["shot_jobs"]
    assert not (tmp_path / "keyface_takes" / "take_v001" / "INCOMPLETE").exists()
