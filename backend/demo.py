"""`python build.py demo`: the default job end to end on a fresh machine.

Starts a backend process on a free loopback port, connects with the client, checks the device
(`diagnose`), streams a test-card sequence (`test_pattern`) and writes it as PNGs and an MP4,
prints what it measured, and stops the backend. Each capability added to Keyface grows this demo
until it is the full animator workflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from shared_client import Client
from shared_proto import Camera, FrameReply, Progress

REPO_ROOT = Path(__file__).resolve().parents[1]


def start_backend(workspace: Path, log_path: Path, *serve_args: str) -> tuple[subprocess.Popen, str]:
    """`python -m backend serve` on a free loopback port, logging to `log_path`; returns it and its endpoint."""
    ready = log_path.with_suffix(".ready.json")
    ready.unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--bind", "tcp://127.0.0.1:*", "--workspace", str(workspace),
             "--ready-file", str(ready), *serve_args],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the backend exited ({process.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the backend did not start within 120 s; see {log_path}")
        time.sleep(0.05)
    return process, json.loads(ready.read_text())["endpoint"]


def show_progress(reply: Progress) -> None:
    done = f"{reply.step}/{reply.total}" if reply.total else str(reply.step)
    eta = f", {reply.eta_s:.1f} s left" if reply.eta_s else ""
    print(f"  [{reply.stage}] {done}{eta} {reply.message}".rstrip(), flush=True)


def run_demo(out: str | os.PathLike) -> int:
    out = Path(out).resolve()
    (out / "frames").mkdir(parents=True, exist_ok=True)
    log_path = out / "backend.log"
    print(f"starting a backend (log: {log_path})", flush=True)
    process, endpoint = start_backend(out / "workspace", log_path)
    try:
        with Client(endpoint, timeout=30, name="keyface demo") as client:
            welcome = client.hello()
            gpu = f", GPU {welcome.gpu['name']}" if welcome.gpu else ""
            print(f"connected to {welcome.server} at {endpoint}: device {welcome.device}{gpu}; "
                  f"jobs: {', '.join(welcome.capabilities)}", flush=True)

            print("diagnose: checking the compute device", flush=True)
            job = client.submit("diagnose", {"size": 512, "repeats": 8})
            for reply in job.replies(timeout=600):
                if isinstance(reply, Progress):
                    show_progress(reply)
            report = job.wait()
            print(f"  torch {report['torch']} on {report['device']}: {report['matmul_gflops']} GFLOP/s "
                  f"(512x512 float32 matmul), memory round trip {'ok' if report['memory_roundtrip_ok'] else 'BROKEN'}")
            client.fetch(report["report"], out / "diagnose.json")

            print("test_pattern: streaming 48 frames of 512x512 RGBA", flush=True)
            frames: list[np.ndarray] = []
            job = client.submit("test_pattern", {"count": 48, "width": 512, "height": 512})
            for reply in job.replies(timeout=600):
                if isinstance(reply, FrameReply):
                    frames.append(np.array(reply.image))
                elif isinstance(reply, Progress):
                    show_progress(reply)
            result = job.wait()
            written = write_frames(frames, out)
            print(f"  received {len(frames)} frames in {result['seconds']:.3f} s of job time")

            print("geometry_maps: the built-in head talking for 2 s, as depth | normal | shaded render", flush=True)
            maps = render_head_maps(client, out)

            print(f"render: the default Gaussian avatar ({AVATAR_GAUSSIANS} Gaussians) doing the same, then "
                  "export: its first frame as a 3DGS PLY", flush=True)
            avatar = render_default_avatar(client, out)
        print(f"\ndemo outputs in {out}:\n  {written['pngs']} (PNG sequence, straight alpha)\n  {written['mp4']}\n"
              f"  {maps}\n  {avatar['mp4']}\n  {avatar['ply']} (opens in any 3DGS viewer)\n"
              f"  {out / 'diagnose.json'}")
        return 0
    finally:
        process.terminate()
        process.wait(30)


def demo_camera(width: int = 384, height: int = 384) -> Camera:
    """A portrait camera 0.6 m in front of the head (FLAME axes: y up, the face looks down +z)."""
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # OpenCV: y down, looking along -z of the world
    pose[:3, 3] = [0.0, 0.01, 0.6]  # eye level sits ~1 cm above the FLAME origin
    focal = 1.8 * width
    return Camera(K=[[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], world_to_camera=pose, width=width,
                  height=height)


def render_head_maps(client: Client, out: Path) -> Path:
    """Stream depth / normal / render maps of the built-in head and write them side by side as an MP4."""
    import imageio.v3 as iio

    from .atomic import atomic_path
    from .flame.motion import talking_head

    sequence = talking_head(48, 24, n_expression=20, seed=7)
    job = client.submit("geometry_maps", {"sequence": sequence.to_wire(), "camera": demo_camera().to_wire(),
                                          "maps": ["depth", "normal", "render"]})
    panels: dict[int, list[np.ndarray]] = {}
    for reply in job.replies(timeout=1800):
        if isinstance(reply, FrameReply):
            panels.setdefault(reply.meta["frame"], []).append(np.array(reply.image[..., :3]))
        elif isinstance(reply, Progress) and reply.step % 12 == 0:
            show_progress(reply)
    job.wait()
    strips = np.stack([np.concatenate(panels[frame], axis=1) for frame in sorted(panels)])  # [T, H, 3W, 3]
    mp4 = out / "head_maps.mp4"
    with atomic_path(mp4) as temp:
        iio.imwrite(temp, strips, fps=sequence.fps, codec="libx264")
    with atomic_path(out / "head_maps_first.png") as temp:
        iio.imwrite(temp, strips[0])
    return mp4


AVATAR_GAUSSIANS = 40_000
"""Gaussians of the demo's default avatar (the product default is 100k; fewer keep the CPU demo quick)."""


def render_default_avatar(client: Client, out: Path) -> dict[str, Path]:
    """Stream the default avatar through the talking-head motion to an MP4, and fetch a PLY export."""
    import imageio.v3 as iio

    from .atomic import atomic_path
    from .flame.motion import talking_head

    sequence = talking_head(48, 24, n_expression=20, seed=7)
    spec = {"avatar": "default", "gaussians": AVATAR_GAUSSIANS, "sequence": sequence.to_wire(),
            "camera": demo_camera(256, 256).to_wire(), "quality": "final", "background": [0.1, 0.1, 0.1]}
    job = client.submit("render", spec)
    frames = []
    for reply in job.replies(timeout=3600):
        if isinstance(reply, FrameReply):
            frames.append(np.array(reply.image[..., :3]))
        elif isinstance(reply, Progress) and reply.step % 12 == 0:
            show_progress(reply)
    job.wait()
    mp4 = out / "avatar.mp4"
    with atomic_path(mp4) as temp:
        iio.imwrite(temp, np.stack(frames), fps=sequence.fps, codec="libx264")
    exported = client.submit("export", {"avatar": "default", "gaussians": AVATAR_GAUSSIANS, "format": "ply",
                                        "sequence": sequence.to_wire(), "frame": 0}).wait(timeout=600)
    ply = client.fetch(exported["assets"][0], out / "avatar_frame0.ply")
    return {"mp4": mp4, "ply": ply}


def write_frames(frames: list[np.ndarray], out: Path) -> dict[str, Path]:
    import imageio.v3 as iio

    from .atomic import atomic_path

    for index, frame in enumerate(frames):
        with atomic_path(out / "frames" / f"frame_{index:04d}.png") as temp:
            iio.imwrite(temp, frame)
    mp4 = out / "test_pattern.mp4"
    with atomic_path(mp4) as temp:
        iio.imwrite(temp, np.stack([frame[..., :3] for frame in frames]), fps=24, codec="libx264")
    return {"pngs": out / "frames" / "frame_%04d.png", "mp4": mp4}

