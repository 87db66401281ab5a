"""`python build.py demo`: the animator's workflow, headless, on a fresh machine.

1. starts a backend process on a free loopback port and checks the device (`diagnose`);
2. builds the Blender extension zip, extracts it into `<out>/addon` and runs Blender (bpy as a module) on
   `blender_addon/demo_session.py`, which drives the add-on: connect, build the rig, key a procedural
   talking-head motion onto it, frame the camera, render the take with the default avatar onto the timeline,
   save `<out>/demo.blend` (the take's PNGs in `<out>/keyface_takes/demo_v001/`);
3. encodes the take as `<out>/avatar.mp4` and exports the avatar's first frame as a 3DGS PLY
   (`<out>/avatar_frame0.ply`);
4. prints where everything is and stops the backend.

`--quick` (tests) renders 8 frames at 128² with 5,000 Gaussians instead of 48 at 256² with 40,000.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from shared_client import Client
from shared_proto import Progress

REPO_ROOT = Path(__file__).resolve().parents[1]


def backend_env() -> dict[str, str]:
    """The backend's environment: this one, with the repository importable."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def start_backend(workspace: Path, log_path: Path, *serve_args: str) -> tuple[subprocess.Popen, str]:
    """`python -m backend serve` on a free loopback port, logging to `log_path`; returns it and its endpoint."""
    ready = log_path.with_suffix(".ready.json")
    ready.unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--bind", "tcp://127.0.0.1:*", "--workspace", str(workspace),
             "--ready-file", str(ready), *serve_args],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=backend_env())
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


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """How big the demo's take is."""

    frames: int = 48
    """Frames of head motion keyed and rendered (24 fps)."""
    size: int = 256
    """Output width and height in pixels."""
    gaussians: int = 40_000
    """Gaussians of the default avatar (the product default is 100k; fewer keep the CPU demo quick)."""


QUICK = DemoConfig(frames=8, size=128, gaussians=5_000)
"""The test flag's configuration (`--quick`)."""
BACKGROUND = np.array([26, 26, 26], dtype=np.float64)
"""Colour the straight-alpha take is composited over for the MP4."""


def run_demo(out: str | os.PathLike, quick: bool = False) -> int:
    config = QUICK if quick else DemoConfig()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "backend.log"
    print(f"starting a backend (log: {log_path})", flush=True)
    process, endpoint = start_backend(out / "workspace", log_path)
    try:
        with Client(endpoint, timeout=30, name="keyface demo") as client:
            welcome = client.hello()
            gpu = f", GPU {welcome.gpu['name']}" if welcome.gpu else ""
            print(f"connected to {welcome.server} at {endpoint}: device {welcome.device}{gpu}", flush=True)
            job = client.submit("diagnose", {"size": 512, "repeats": 8})
            for reply in job.replies(timeout=600):
                if isinstance(reply, Progress):
                    show_progress(reply)
            report = job.wait()
            print(f"  torch {report['torch']} on {report['device']}: {report['matmul_gflops']} GFLOP/s "
                  f"(512x512 float32 matmul), memory round trip {'ok' if report['memory_roundtrip_ok'] else 'BROKEN'}")
            client.fetch(report["report"], out / "diagnose.json")

            motion = write_motion(out, config)
            print(f"blender: driving the Keyface add-on ({config.frames} frames at {config.size}x{config.size}, "
                  f"default avatar with {config.gaussians} Gaussians)", flush=True)
            made = run_blender(out, endpoint, motion, config)
            mp4 = encode_take(Path(made["take"]), out / "avatar.mp4")
            from shared_proto.sequence_io import load_sequence_npz

            exported = client.submit("export", {"avatar": "default", "gaussians": config.gaussians, "format": "ply",
                                                "sequence": load_sequence_npz(motion).to_wire(), "frame": 0})
            ply = client.fetch(exported.wait(timeout=600)["assets"][0], out / "avatar_frame0.ply")
        print(f"\ndemo outputs in {out}:\n  {made['blend']} (open in Blender 4.2+ with the add-on from "
              f"{out / 'addon'})\n  {made['take']}/frame_%06d.png (the take, straight alpha; strip "
              f"{made['strip']!r} on frames {made['frames'][0]}-{made['frames'][1]})\n  {mp4}\n  {ply} (opens in "
              f"any 3DGS viewer)\n  {out / 'diagnose.json'}", flush=True)
        return 0
    finally:
        process.terminate()
        process.wait(30)


def write_motion(out: Path, config: DemoConfig) -> Path:
    """A reproducible talking-head FlameSequence as a .npz the add-on keys onto the rig."""
    from shared_proto.sequence_io import save_sequence_npz

    from .flame.motion import talking_head

    return save_sequence_npz(talking_head(config.frames, 24, n_expression=20, seed=7), out / "motion.npz")


def install_addon(out: Path) -> Path:
    """Build the extension zip (build.py addon) and extract it as `<out>/addon/keyface`; returns `<out>/addon`."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("keyface_build", REPO_ROOT / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    archive = build.addon(out / "dist")
    target = out / "addon"
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(target / "keyface")
    return target


def run_blender(out: Path, endpoint: str, motion: Path, config: DemoConfig) -> dict:
    """Run blender_addon/demo_session.py with this environment's bpy; returns its DEMO line's facts."""
    extensions = install_addon(out)
    script = REPO_ROOT / "blender_addon" / "demo_session.py"
    args = [str(extensions), endpoint, str(out), str(motion), str(config.frames), str(config.size),
            str(config.gaussians)]
    command = [sys.executable, "-P", str(script), *args]  # -P: not its own folder on sys.path
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # only the add-on, as in Blender
    process = subprocess.Popen(command, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, made = [], None
    for line in process.stdout:  # echoed as it comes: the render's progress shows while it runs
        lines.append(line)
        if line.startswith(("blender:", "keyface:", "Info:", "Error:")):
            print(f"  {line.rstrip()}", flush=True)
        elif line.startswith("DEMO "):
            made = json.loads(line[5:])
    if process.wait() != 0 or made is None:
        raise RuntimeError(f"the Blender step failed ({process.returncode}):\n{''.join(lines[-60:])}")
    return made


def encode_take(take: Path, mp4: Path) -> Path:
    """The take's straight-alpha PNGs composited over BACKGROUND, as an H.264 MP4 (24 fps)."""
    import imageio.v3 as iio

    from .atomic import atomic_path

    frames = []
    for path in sorted(take.glob("frame_*.png")):
        rgba = iio.imread(path).astype(np.float64)  # [H, W, 4]
        alpha = rgba[..., 3:] / 255.0
        frames.append((rgba[..., :3] * alpha + BACKGROUND * (1 - alpha) + 0.5).astype(np.uint8))
    with atomic_path(mp4) as temp:
        iio.imwrite(temp, np.stack(frames), fps=24, codec="libx264")
    return mp4
