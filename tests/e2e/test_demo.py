"""`python build.py demo` runs the animator's workflow headless (here `python -m backend demo --quick`):
backend up -> the add-on in Blender (bpy) builds the rig, keys motion, renders a take -> .blend, frames, MP4, PLY."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from backend.avatar import read_ply

REPO_ROOT = Path(__file__).resolve().parents[2]

CHECK_BLEND = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy, keyface
keyface.register()
bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
scene = bpy.context.scene
rig = keyface.rig_params.find_rig(bpy.context)
strip = scene.sequence_editor.strips[0]
sequence = keyface.rig_params.rig_sequence(rig, 1, 8)
print("RESULT" + json.dumps({"strip": strip.directory, "files": len(strip.elements), "start": strip.frame_final_start,
                             "jobs": [j.state for j in scene.keyface.jobs], "yaw": sequence.rotation[:, 1].tolist()}))
keyface.unregister()
"""


def test_demo_drives_the_addon_and_writes_blend_frames_video_and_ply(tmp_path) -> None:
    out = tmp_path / "demo_out"
    result = subprocess.run([sys.executable, "-m", "backend", "demo", "--quick", "--out", str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[matmul] 8/8" in result.stdout and "keyed 8 frames" in result.stdout
    take = out / "keyface_takes" / "demo_v001"
    frames = sorted(take.glob("frame_*.png"))
    assert [p.name for p in frames] == [f"frame_{f:06d}.png" for f in range(1, 9)]
    images = np.stack([iio.imread(p) for p in frames])  # [T, H, W, 4]
    assert images.shape == (8, 128, 128, 4) and (images[..., 3] > 128).mean() > 0.1  # the head fills the frame
    assert np.abs(images[0].astype(int) - images[-1].astype(int)).mean() > 1  # and moves
    assert not (take / "INCOMPLETE").exists() and json.loads((take / "take.json").read_text())["state"] == "complete"
    video = iio.imread(out / "avatar.mp4")
    assert video.shape == (8, 128, 128, 3) and video[0].std() > 10
    assert read_ply(out / "avatar_frame0.ply").means.shape[0] == 5_000
    assert json.loads((out / "diagnose.json").read_text())["memory_roundtrip_ok"]
    for path in (out / "demo.blend", take, out / "avatar.mp4", out / "avatar_frame0.ply"):
        assert str(path) in result.stdout  # the demo says where everything is
    # the saved .blend reopens with the keyed rig, the strip and the finished job
    check = subprocess.run([sys.executable, "-c", CHECK_BLEND, str(out / "addon"), str(out / "demo.blend")],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    line = next((l for l in check.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, check.stdout + check.stderr
    reopened = json.loads(line[len("RESULT"):])
    assert reopened["strip"] == "//keyface_takes/demo_v001/" and reopened["files"] == 8 and reopened["start"] == 1
    assert reopened["jobs"] == ["done"] and np.ptp(reopened["yaw"]) > 1e-3  # keyed head motion, not a still
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.part"))  # every write completed
