"""How fast returned frames land in a take folder through the add-on's connection, and how long the main
thread spends per poll (what Blender's timer pays). Prints one JSON line.

A backend process streams `--frames` test-card frames (`test_pattern`, `--size`² RGBA uint8) to the add-on's
`Connection` (blender_addon/connection.py, bpy-free) with a take folder: its thread writes each frame as an
atomic PNG (takes.py, zlib level 6). The main thread drains events every 10 ms, like the add-on's timer.
Figures: `fps` = frames written per second, first-to-last FrameWritten; `drain_ms` = median and max main-thread
time of one drain; `png_ms` = median encode+write of one frame measured on its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    """A bpy-free add-on module, imported without the package's bpy __init__."""
    if "keyface_pure" not in sys.modules:
        package = types.ModuleType("keyface_pure")
        package.__path__ = [str(REPO_ROOT / "blender_addon")]
        sys.modules["keyface_pure"] = package
    return importlib.import_module(f"keyface_pure.{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    connection, takes = load("connection"), load("takes")
    from backend.demo import start_backend
    from shared_proto import Failed, Result

    with tempfile.TemporaryDirectory(prefix="keyface-bench-addon-") as folder:
        folder = Path(folder)
        backend, endpoint = start_backend(folder / "ws", folder / "backend.log", "--device", "cpu")
        try:
            conn = connection.Connection(endpoint, timeout=10.0)
            take = takes.new_take(folder / "takes", "bench")
            conn.submit("k", "test_pattern", {"count": args.frames, "width": args.size, "height": args.size},
                        str(take))
            written, drains, done = [], [], False
            deadline = time.monotonic() + 600
            while not done and time.monotonic() < deadline:
                started = time.perf_counter()
                events = conn.drain()
                drains.append(time.perf_counter() - started)
                for event in events:
                    if isinstance(event, connection.FrameWritten):
                        written.append(time.perf_counter())
                    elif isinstance(event, connection.JobRefused) or (
                            isinstance(event, connection.JobReply) and isinstance(event.message, (Result, Failed))):
                        done = True
                time.sleep(0.01)
            conn.close()
        finally:
            backend.terminate()
            backend.wait(30)
        image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 4), dtype=np.uint8)
        png = []
        for frame in range(10):
            started = time.perf_counter()
            takes.write_frame(folder, frame, image)
            png.append(time.perf_counter() - started)
    fps = (len(written) - 1) / (written[-1] - written[0]) if len(written) > 1 else 0.0
    print(json.dumps({"bench": "addon_frames", "frame": f"{args.size}x{args.size} RGBA uint8 test card",
                      "frames": args.frames, "written": len(written), "fps": round(fps, 1),
                      "drain_ms": {"median": round(1e3 * statistics.median(drains), 3),
                                   "max": round(1e3 * max(drains), 3)},
                      "png_ms_random_image": round(1e3 * statistics.median(png), 2)}))


if __name__ == "__main__":
    main()
