"""`python build.py demo` runs its default job end to end (here through `python -m backend demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio

from backend.avatar import read_ply

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_frames_videos_avatar_and_the_device_report(tmp_path) -> None:
    out = tmp_path / "demo_out"
    result = subprocess.run([sys.executable, "-m", "backend", "demo", "--out", str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[matmul] 8/8" in result.stdout and "[frames] 48/48" in result.stdout
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == 48 and iio.imread(frames[0]).shape == (512, 512, 4)
    assert json.loads((out / "diagnose.json").read_text())["memory_roundtrip_ok"]
    video = iio.imread(out / "head_maps.mp4")
    assert video.shape[0] == 48 and video.shape[2] == 3 * video.shape[1]  # depth | normal | render side by side
    first = iio.imread(out / "head_maps_first.png")
    render = first[:, 2 * first.shape[0]:]
    assert (render.max(axis=-1) > 0).mean() > 0.1  # the head fills a good part of the frame
    assert (out / "test_pattern.mp4").stat().st_size > 0
    avatar = iio.imread(out / "avatar.mp4")
    assert avatar.shape == (48, 256, 256, 3) and avatar[0].std() > 10  # the Gaussian head is visible
    assert read_ply(out / "avatar_frame0.ply").means.shape[0] == 40_000
    assert not list(out.rglob("*.tmp*"))  # every write was atomic and completed
