"""Jobs `render` and `export` through a real backend, and `python -m backend render` as a subprocess."""

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

from backend.avatar import read_ply
from backend.flame import BUILTIN_HEAD_PATH
from shared_client import Client, RequestFailed
from shared_proto import Camera, ErrorCode, FlameSequence, FrameReply
from shared_proto.sequence_io import save_sequence_npz

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE, GAUSSIANS = 64, 5000


def sequence(frames: int) -> FlameSequence:
    zeros = np.zeros
    jaw = zeros((frames, 3))
    jaw[:, 0] = np.linspace(0, 0.3, frames)
    return FlameSequence(shape=zeros(10), expression=zeros((frames, 10)), rotation=zeros((frames, 3)),
                         neck=zeros((frames, 3)), jaw=jaw, eyes=zeros((frames, 6)), translation=zeros((frames, 3)),
                         fps=25, frame_start=100)


def front_camera(size: int = SIZE, distance: float = 0.6) -> Camera:
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # looking down -z at a head facing +z
    pose[2, 3] = distance
    focal = 1.6 * size
    return Camera(K=[[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]], world_to_camera=pose, width=size,
                  height=size)


def render(client: Client, spec: dict) -> tuple[list[FrameReply], dict]:
    job = client.submit("render", spec)
    frames = [reply for reply in job.replies(timeout=120) if isinstance(reply, FrameReply)]
    return frames, job.wait(timeout=120)


def test_render_streams_straight_alpha_frames_and_caches_them(shared_backend) -> None:
    spec = {"avatar": "default", "gaussians": GAUSSIANS, "sequence": sequence(3).to_wire(),
            "camera": front_camera().to_wire(), "quality": "final"}
    with Client(shared_backend.endpoint, timeout=30) as client:
        first, result = render(client, spec)
        second, again = render(client, spec)
    assert result["frames"] == 3 and (result["width"], result["height"]) == (SIZE, SIZE) and result["cached"] == 0
    assert [f.index for f in first] == [0, 1, 2]
    assert [f.meta["frame"] for f in first] == [100, 101, 102]
    assert not any(f.meta["cached"] for f in first)
    image = first[0].image
    assert image.shape == (SIZE, SIZE, 4) and image.dtype == np.uint8
    coverage = image[..., 3] > 0
    assert 0.05 < coverage.mean() < 0.9 and image[0, 0, 3] == 0
    assert image[image[..., 3] > 128, :3].mean() > 60  # un-premultiplied: the head is not darkened
    assert again["cached"] == 3 and all(f.meta["cached"] for f in second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.image, b.image)
    cache = shared_backend.workspace / "cache" / "render"
    assert len(list(cache.glob("*.png"))) == 3


def test_draft_is_half_size_and_width_height_override(shared_backend) -> None:
    spec = {"avatar": "default", "gaussians": GAUSSIANS, "sequence": sequence(1).to_wire(),
            "camera": front_camera(32).to_wire(), "width": 96, "height": 64, "background": [0, 0, 1]}
    with Client(shared_backend.endpoint, timeout=30) as client:
        frames, result = render(client, spec)
    assert (result["width"], result["height"]) == (48, 32)  # draft: half of the requested size
    image = frames[0].image
    assert image.shape == (32, 48, 4) and (image[..., 3] == 255).all()
    assert image[0, 0, :3].tolist() == [0, 0, 255]  # background composited


def test_exported_ply_is_fetched_and_rendered_as_a_static_asset(shared_backend, tmp_path) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        job = client.submit("export", {"avatar": "default", "gaussians": GAUSSIANS, "format": "ply",
                                       "sequence": sequence(2).to_wire(), "frame": 1})
        result = job.wait(timeout=120)
        assert result["format"] == "ply" and len(result["assets"]) == 1
        local = client.fetch(result["assets"][0], tmp_path / "avatar.ply")
        gaussians = read_ply(local)
        assert gaussians.n == GAUSSIANS
        frames, rendered = render(client, {"avatar": str(local), "camera": front_camera().to_wire(),
                                           "quality": "final"})
    assert rendered["frames"] == 1 and (frames[0].image[..., 3] > 0).mean() > 0.05


@pytest.mark.parametrize("fmt, extra, suffixes", [
    ("package", {}, {".safetensors"}),
    ("ply_sequence", {"sequence": sequence(2).to_wire()}, {".ply", ".json"}),
    ("mesh", {"mesh_format": "ply"}, {".ply"}),
])
def test_other_export_formats(shared_backend, fmt, extra, suffixes) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        result = client.submit("export", {"avatar": "default", "gaussians": GAUSSIANS, "format": fmt,
                                          **extra}).wait(timeout=120)
    assert {Path(name).suffix for name in result["assets"]} == suffixes
    for name in result["assets"]:
        assert (shared_backend.workspace / name).is_file()


@pytest.mark.parametrize("kind, spec, fragment", [
    ("render", {"avatar": "default", "camera": front_camera().to_wire()}, "spec.sequence"),
    ("render", {"avatar": "default", "sequence": sequence(1).to_wire(), "camera": front_camera().to_wire(),
                "quality": "ultra"}, "spec.quality"),
    ("render", {"avatar": 3, "sequence": sequence(1).to_wire(), "camera": front_camera().to_wire()}, "spec.avatar"),
    ("export", {"avatar": "default", "format": "fbx"}, "spec.format"),
    ("export", {"avatar": "default", "format": "ply_sequence"}, "needs spec.sequence"),
])
def test_bad_specs_are_rejected(shared_backend, kind, spec, fragment) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client, pytest.raises(RequestFailed) as info:
        client.submit(kind, spec)
    assert info.value.code in (ErrorCode.BAD_SPEC, ErrorCode.BAD_VALUE) and fragment in info.value.message


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "render", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_cli_render_writes_straight_alpha_pngs(tmp_path) -> None:
    camera = front_camera()
    (tmp_path / "camera.json").write_text(json.dumps({"K": camera.K.tolist(),
                                                      "world_to_camera": camera.world_to_camera.tolist(),
                                                      "width": SIZE, "height": SIZE}))
    save_sequence_npz(sequence(2), tmp_path / "seq.npz")
    started = time.monotonic()
    done = run_cli("--asset", "default", "--gaussians", str(GAUSSIANS), "--camera", str(tmp_path / "camera.json"),
                   "--sequence", str(tmp_path / "seq.npz"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["frame_0000.png", "frame_0001.png"]
    image = np.asarray(PIL.Image.open(tmp_path / "out" / "frame_0000.png"))
    assert image.shape == (SIZE, SIZE, 4) and 0.05 < (image[..., 3] > 0).mean() < 0.9


def test_cli_bad_input_exits_2(tmp_path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    done = run_cli("--asset", "default", "--camera", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "bad.json" in done.stderr
    done = run_cli("--asset", str(tmp_path / "missing.ply"), "--camera", str(tmp_path / "nothing.json"),
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "nothing.json" in done.stderr
