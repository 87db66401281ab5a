"""The animator's workflow through the installed add-on (bpy 5.0.1 as a module) against a real backend.

Each test runs a driver script in a fresh interpreter that can import only the extracted extension zip
(as Blender's 'Install from Disk' would lay it out): connect, build the rig, keyframe it, render takes
onto the timeline; a file reload keeps jobs; a killed backend shows a warning and reconnects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PRELUDE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import bpy, keyface
keyface.register()
scene = bpy.context.scene
settings = scene.keyface
out = {}

def call(operator, **kwargs):
    # bpy.ops raises RuntimeError when an operator reports an error; keep the message
    try:
        return sorted(operator(**kwargs)), ""
    except RuntimeError as error:
        return ["CANCELLED"], str(error)

class Layout:
    # records what a panel's draw() asks of its layout (there is no UI under -b)
    def __init__(self, calls):
        object.__setattr__(self, "calls", calls)
    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append([name, kwargs.get("text", args[1] if len(args) > 1 and isinstance(args[1], str) else ""),
                               kwargs.get("factor")])
            return Layout(self.calls)
        return call
    def __setattr__(self, name, value):
        self.calls.append(["set " + name, str(value), None])

def draw(panel):
    import types
    calls = []
    getattr(bpy.types, panel).draw(types.SimpleNamespace(layout=Layout(calls)), bpy.context)
    return calls

def emit():
    print("RESULT" + json.dumps(out), flush=True)

def setup_shot(blend):
    assert bpy.ops.keyface.connect(address=sys.argv[2]) == {"FINISHED"}
    assert bpy.ops.keyface.build_rig() == {"FINISHED"}
    rig = keyface.rig_params.find_rig(bpy.context)
    for frame, shift, smile in ((1, -0.02, 0.0), (12, 0.02, 2.0)):
        rig.keyface.translation = (shift, 0.0, 0.0)
        rig.keyface.keyframe_insert("translation", frame=frame)
        rig.keyface.expression[0].value = smile
        rig.keyface.expression[0].keyframe_insert("value", frame=frame)
    camera = scene.camera
    camera.location = (0.0, -0.7, 0.02)       # in front of the face: the rig stands FLAME +y up along Blender +z
    camera.rotation_euler = (1.5708, 0.0, 0.0)
    camera.data.lens = 85.0
    settings.default_gaussians = 3000
    scene.frame_start, scene.frame_end = 1, 12
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    return rig

def strips():
    editor = scene.sequence_editor
    return [] if editor is None else [
        {"name": s.name, "channel": s.channel, "start": s.frame_final_start, "end": s.frame_final_end,
         "directory": s.directory, "files": [e.filename for e in s.elements]} for s in editor.strips]

def jobs():
    return [{"label": j.label, "state": j.state, "progress": j.progress, "error": j.error, "job_id": j.job_id,
             "options": json.loads(j.options or "{}")} for j in scene.keyface.jobs]

def pump(predicate, timeout=120.0):
    # what Blender's UI loop does: call the timer until `predicate()`; returns the slowest tick in seconds
    slowest, deadline = 0.0, time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("pump timed out: " + json.dumps(jobs()) + " " + settings.status)
        started = time.monotonic()
        keyface.runtime.tick()
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    return slowest
"""

RENDER = PRELUDE + r"""
blend = sys.argv[3] + "/shot.blend"
out["not_connected"] = call(bpy.ops.keyface.render, frame_start=1, frame_end=2)
bpy.ops.keyface.connect(address=sys.argv[2])
out["no_rig"] = call(bpy.ops.keyface.render, frame_start=1, frame_end=2)
setup_shot(blend)
settings.camera_background = True
out["render"] = sorted(bpy.ops.keyface.render(frame_start=1, frame_end=4, resolution=(96, 64), quality="final"))
out["strips"], out["jobs"] = strips(), jobs()
camera = scene.camera.data
out["background"] = [b.image.filepath for b in camera.background_images] if camera.show_background_images else []
settings.avatar = "avatars/does-not-exist"
out["bad_avatar"], out["bad_error"] = call(bpy.ops.keyface.render, frame_start=1, frame_end=2, resolution=(32, 32))
out["bad_jobs"] = jobs()[-1:]
out["jobs_panel"] = draw("KEYFACE_PT_jobs")
out["panels"] = {name: len(draw(name)) for name in ("KEYFACE_PT_connection", "KEYFACE_PT_avatar", "KEYFACE_PT_render",
                                                     "KEYFACE_PT_prompts", "KEYFACE_PT_rig")}
# avatar and prompt panels: a reconstruction the backend refuses, a finished one chosen, an edit spec
out["reconstruct"] = call(bpy.ops.keyface.reconstruct, filepath="/no/such/clip.mp4")
record = keyface.jobs.JobRecord(kind="reconstruct", spec={}, options={"source": "/clips/anna.mp4"})
record.apply_message(keyface.jobs.Result(id="r", job="j", result={"avatar": "avatars/j-anna", "psnr_holdout": 31.25}))
keyface.avatar_ops.on_reconstruct_end(scene, record)
out["avatars"] = [(a.name, a.ref, a.note) for a in settings.avatars] + [settings.avatar]
out["no_prompt"] = call(bpy.ops.keyface.edit)
settings.prompt = "make it a bronze statue"
bpy.ops.keyface.prompt_add(text="smile", frame_start=3, frame_end=9)
bpy.ops.keyface.prompt_add(text="frown", frame_start=1, frame_end=2)
out["edit_spec"] = keyface.prompt_ops.edit_spec(settings)
scene.frame_start = 2                              # prompts in timeline frames, the job's in dataset frames
out["late_start"] = keyface.prompt_ops.prompt_track(settings)
scene.frame_start = 5
out["before_start"] = call(bpy.ops.keyface.edit)
scene.frame_start = 1
emit()
keyface.unregister()
"""

EDIT = PRELUDE + r"""
blend = sys.argv[3] + "/shot.blend"
setup_shot(blend)
settings.avatar = "avatars/j-capture"              # what a finished reconstruction leaves chosen
settings.editor = "relight"
settings.light_preset, settings.light_intensity = "warm-sunset", 1.5
settings.edit_iterations = 6
settings.resolution = (32, 32)
settings.quality = "final"
out["edit"] = call(bpy.ops.keyface.edit)           # blocks under -b; its end renders the edited avatar
out["wait"] = sorted(bpy.ops.keyface.wait_jobs())
out["avatar"] = settings.avatar
out["strips"], out["jobs"] = strips(), jobs()
emit()
keyface.unregister()
"""

RELOAD = PRELUDE + r"""
blend = sys.argv[3] + "/shot.blend"
setup_shot(blend)
assert bpy.ops.keyface.render(frame_start=1, frame_end=6, resolution=(64, 64), quality="final", wait=False) \
    == {"FINISHED"}
pump(lambda: keyface.runtime.BOOK.records()[-1].job_id)
bpy.ops.wm.save_mainfile()
bpy.ops.wm.open_mainfile(filepath=blend)          # jobs live in the add-on, not in the file: they survive
scene = bpy.context.scene
settings = scene.keyface
out["after_reload"] = jobs()
out["slowest_tick_s"] = pump(lambda: not keyface.runtime.BOOK.live() and scene.sequence_editor is not None)
out["strips"], out["jobs"] = strips(), jobs()
record = keyface.runtime.BOOK.records()[-1]
out["retry"] = sorted(bpy.ops.keyface.job_retry(key=record.key))  # blocks under -b: a new take version
out["strips_after_retry"], out["jobs_after_retry"] = strips(), jobs()
emit()
keyface.unregister()
"""

SUBMIT_AND_QUIT = PRELUDE + r"""
setup_shot(sys.argv[3] + "/shot.blend")
assert bpy.ops.keyface.render(frame_start=1, frame_end=6, resolution=(80, 80), quality="final", wait=False) \
    == {"FINISHED"}
pump(lambda: keyface.runtime.BOOK.records()[-1].job_id)
keyface.runtime.disconnect()                       # stop listening before the avatar has loaded
bpy.ops.wm.save_mainfile()
out["job_id"] = keyface.runtime.BOOK.records()[-1].job_id
emit()                                             # Blender quits with the job unfinished in the saved file
"""

REOPEN = PRELUDE + r"""
bpy.ops.wm.open_mainfile(filepath=sys.argv[3] + "/shot.blend")   # a new session: load_post re-attaches
scene = bpy.context.scene
settings = scene.keyface
out["reattached"] = [r.job_id for r in keyface.runtime.BOOK.records()]
pump(lambda: not keyface.runtime.BOOK.live() and scene.sequence_editor is not None)
out["strips"], out["jobs"] = strips(), jobs()
emit()
keyface.unregister()
"""

KILL = PRELUDE + r"""
keyface.runtime.BACKGROUND_GIVE_UP_S = 60.0
assert bpy.ops.keyface.connect(address=sys.argv[2]) == {"FINISHED"}
keyface.runtime.connection().timeout = 1.0
keyface.runtime.connection().heartbeat = 0.5
print("CONNECTED", flush=True)
sys.stdin.readline()                               # the test kills the backend
out["lost_slowest_tick_s"] = pump(lambda: settings.backend_lost, 60)
out["lost"] = {"connected": settings.connected, "status": settings.status, "lost": settings.backend_lost}
out["lost_panel"] = draw("KEYFACE_PT_connection")
print("LOST", flush=True)
sys.stdin.readline()                               # the test starts a new backend on the same port
pump(lambda: settings.connected, 60)
out["back"] = {"connected": settings.connected, "status": settings.status, "lost": settings.backend_lost}
emit()
keyface.unregister()
"""


def driver_env() -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: only the extracted zip is importable
    env.update({name: os.environ[name] for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")})
    return env


def run_driver(script: str, extensions: Path, address: str, folder: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", script, str(extensions), address, str(folder)], cwd=folder,
                            capture_output=True, text=True, timeout=600, env=driver_env())
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return json.loads(line[len("RESULT"):])


def take_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(PIL.Image.open(path)) for path in sorted(folder.glob("frame_*.png"))]


def test_render_four_frames_onto_the_timeline(installed_addon, shared_backend, tmp_path) -> None:
    out = run_driver(RENDER, installed_addon, shared_backend.endpoint, tmp_path)
    assert out["not_connected"][0] == ["CANCELLED"] and "not connected to a Keyface backend" in out["not_connected"][1]
    assert out["no_rig"][0] == ["CANCELLED"] and "build the rig first" in out["no_rig"][1]
    assert out["render"] == ["FINISHED"]
    [strip] = out["strips"]
    assert strip["name"] == "take_v001" and strip["start"] == 1 and strip["end"] == 5
    assert strip["directory"] == "//keyface_takes/take_v001/"  # relative to the saved .blend
    assert strip["files"] == [f"frame_{f:06d}.png" for f in (1, 2, 3, 4)]
    take = tmp_path / "keyface_takes" / "take_v001"
    frames = take_frames(take)
    assert len(frames) == 4 and all(f.shape == (64, 96, 4) for f in frames)
    assert all((f[..., 3] > 0).mean() > 0.05 for f in frames)  # the head covers part of every frame
    assert np.abs(frames[0].astype(int) - frames[3].astype(int)).mean() > 1  # keyframed motion moves it
    assert not (take / "INCOMPLETE").exists() and json.loads((take / "take.json").read_text())["state"] == "complete"
    assert out["background"] == ["//keyface_takes/take_v001/frame_000001.png"]
    [job] = out["jobs"][:1]
    assert job["state"] == "done" and job["progress"] == 1.0 and job["options"]["strip"] == "take_v001"
    # a failing job: reported, its take kept clearly partial (never overwriting take_v001)
    assert out["bad_avatar"] == ["CANCELLED"] and "[not_found]" in out["bad_error"] and "check that" in out["bad_error"]
    [bad] = out["bad_jobs"]
    assert bad["state"] == "failed" and "does-not-exist" in bad["error"]
    assert (tmp_path / "keyface_takes" / "take_v002" / "INCOMPLETE").exists()
    assert len(out["strips"]) == 1
    panel = out["jobs_panel"]  # newest first: the failed render (error, hint, retry), then the finished one
    assert ["operator", "", None] in panel and ["progress", "done", 1.0] in panel
    assert any(c[0] == "label" and "[not_found]" in c[1] for c in panel)
    assert any(c[0] == "label" and c[1].startswith("check that the file exists") for c in panel)
    assert all(count > 2 for count in out["panels"].values()), out["panels"]
    state, error = out["reconstruct"]
    assert state == ["CANCELLED"] and "/no/such/clip.mp4" in error
    assert out["avatars"] == [["anna", "avatars/j-anna", "PSNR 31.2"], "avatars/j-anna"]
    assert out["no_prompt"] == [["CANCELLED"], "Error: the instruct-pix2pix editor needs a prompt or a prompt track "
                                "entry\n"]
    assert out["edit_spec"] == {"avatar": "avatars/j-anna", "editor": "instruct-pix2pix",
                                "instruction": "make it a bronze statue",
                                "prompts": [{"frame_start": 0, "frame_end": 1, "text": "frown"},
                                            {"frame_start": 2, "frame_end": 8, "text": "smile"}],
                                "schedule": {"iterations": 1500}}
    assert out["late_start"] == [{"frame_start": 0, "frame_end": 0, "text": "frown"},
                                 {"frame_start": 1, "frame_end": 7, "text": "smile"}]
    state, error = out["before_start"]
    assert state == ["CANCELLED"] and "ends before the scene starts (frame 5)" in error


@pytest.fixture(scope="module")
def reconstructed_capture(shared_backend) -> str:
    """A tiny synthetic capture laid out in the backend's workspace as a reconstruct job leaves it."""
    import torch

    from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig, save_package
    from backend.flame.texture import read_head_texture
    from backend.track.synthetic import synthetic_subject, write_tracked_folder

    subject = synthetic_subject(4, 32, seed=4)
    job = shared_backend.workspace / "jobs" / "j-capture"
    job.mkdir(parents=True)
    write_tracked_folder(subject, job / "tracked")
    config = AvatarConfig(appearance="neural", num_gaussians=600, feature_dim=6,
                          renderer=NeuralRendererConfig(channels=6, layers=2))
    avatar = GaussianAvatar.from_surface(subject.head, config, opacity=0.95, texture=read_head_texture(subject.head),
                                         shape=torch.tensor(subject.sequence.shape, dtype=torch.float32))
    save_package(avatar, shared_backend.workspace / "avatars" / "j-capture" / "avatar.safetensors")
    return "avatars/j-capture"


def test_an_edit_from_the_prompts_panel_becomes_the_avatar_and_renders_a_new_take(
        installed_addon, shared_backend, reconstructed_capture, tmp_path) -> None:
    out = run_driver(EDIT, installed_addon, shared_backend.endpoint, tmp_path)
    assert out["edit"] == [["FINISHED"], ""] and out["wait"] == ["FINISHED"]
    edit_job = next(job for job in out["jobs"] if job["label"].startswith("edit"))
    assert edit_job["state"] == "done"
    assert out["avatar"] == f"avatars/{edit_job['job_id']}" != reconstructed_capture  # the edit is chosen
    assert (shared_backend.workspace / "avatars" / edit_job["job_id"] / "avatar.safetensors").is_file()
    [strip] = out["strips"]
    assert strip["name"] == "take_edit_v001" and len(strip["files"]) == 12  # the scene range, frames 1-12
    frames = take_frames(tmp_path / "keyface_takes" / "take_edit_v001")
    assert len(frames) == 12 and all(f.shape == (32, 32, 4) for f in frames)
    assert all((f[..., 3] > 0).any() for f in frames)


def test_jobs_survive_a_file_reload_and_retry_makes_a_new_take(installed_addon, shared_backend, tmp_path) -> None:
    out = run_driver(RELOAD, installed_addon, shared_backend.endpoint, tmp_path)
    assert [j["state"] for j in out["after_reload"]] and out["after_reload"][0]["job_id"]
    [strip] = out["strips"]
    assert strip["start"] == 1 and strip["end"] == 7 and len(strip["files"]) == 6
    assert out["jobs"][0]["state"] == "done"
    assert len(take_frames(tmp_path / "keyface_takes" / "take_v001")) == 6
    assert out["retry"] == ["FINISHED"]
    assert [s["name"] for s in out["strips_after_retry"]] == ["take_v001", "take_v002"]
    assert out["strips_after_retry"][1]["channel"] == 2  # stacked above the first take
    assert len(take_frames(tmp_path / "keyface_takes" / "take_v002")) == 6


def test_a_restarted_blender_reattaches_and_refills_the_take(installed_addon, shared_backend, tmp_path) -> None:
    from shared_client import Client

    job_id = run_driver(SUBMIT_AND_QUIT, installed_addon, shared_backend.endpoint, tmp_path)["job_id"]
    with Client(shared_backend.endpoint) as client:  # the job finishes while no Blender is listening
        deadline = time.monotonic() + 120
        while client.status(job_id)[0]["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    take = tmp_path / "keyface_takes" / "take_v001"
    assert (take / "INCOMPLETE").exists() and len(take_frames(take)) < 6
    out = run_driver(REOPEN, installed_addon, shared_backend.endpoint, tmp_path)
    assert out["reattached"] == [job_id]
    # the frames streamed to nobody were rendered again from the backend's cache into the same take
    assert [j["label"].split(" (")[0] for j in out["jobs"]] == ["render take_v001", "refill take_v001"]
    assert [j["state"] for j in out["jobs"]] == ["done", "done"]
    [strip] = out["strips"]
    assert strip["directory"] == "//keyface_takes/take_v001/" and len(strip["files"]) == 6
    assert len(take_frames(take)) == 6 and not (take / "INCOMPLETE").exists()


def read_until(driver: subprocess.Popen, marker: str) -> None:
    seen = []
    while (line := driver.stdout.readline()) and not line.startswith(marker):
        seen.append(line)
    assert line.startswith(marker), "".join(seen) + driver.stderr.read()


def test_a_killed_backend_shows_a_warning_and_reconnects(installed_addon, make_backend, tmp_path) -> None:
    first = make_backend(folder=tmp_path / "backend")
    endpoint = first.start()
    driver = subprocess.Popen([sys.executable, "-c", KILL, str(installed_addon), endpoint, str(tmp_path)],
                              cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=driver_env())
    try:
        read_until(driver, "CONNECTED")
        first.stop()
        driver.stdin.write("\n")
        driver.stdin.flush()
        read_until(driver, "LOST")
        make_backend(bind=endpoint, folder=tmp_path / "backend").start()
        driver.stdin.write("\n")
        driver.stdin.flush()
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        driver.kill()
    line = next((l for l in stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, stdout + stderr
    out = json.loads(line[len("RESULT"):])
    assert out["lost"]["lost"] and not out["lost"]["connected"] and "reconnecting" in out["lost"]["status"]
    assert ["label", "Backend not answering", None] in out["lost_panel"]
    assert out["back"]["connected"] and not out["back"]["lost"] and "keyface-backend" in out["back"]["status"]
