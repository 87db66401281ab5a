"""The demo's render: the default avatar posed by the demo's talking-head motion, through `render_frames`.

Scene: `python build.py demo`'s take — FlameSequence `talking_head(frames, 24, n_expression=20, seed=7)`, the
default avatar with `--gaussians` Gaussians, one 85 mm-equivalent camera 0.75 m in front of the face, square
`--size` images, quality 'final', CPU, no render cache. The avatar is built (and cached) before timing.

Prints one JSON line per torch tile size (nothing else on stdout):
  {"bench": "demo_render", "tile_size", "frames", "size", "gaussians", "threads", "omp_wait_policy",
   "seconds" (median of --repeats wall-clock runs over all frames), "ms_per_frame", "runs" (every run, s)}

    python bench/demo_render.py [--frames 8] [--size 128] [--gaussians 5000] [--threads 2] [--repeats 3]

Set OMP_WAIT_POLICY yourself to compare (the demo's backend runs with PASSIVE, see backend/demo.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backend.render.gaussian_rasterizer as rasterizer  # noqa: E402
from backend.avatar.render_job import render_frames  # noqa: E402
from backend.avatar.sources import load_avatar, resolve_avatar  # noqa: E402
from backend.flame.motion import talking_head  # noqa: E402
from shared_proto import Camera  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--gaussians", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sequence = talking_head(args.frames, 24, n_expression=20, seed=7)
    focal = 85.0 / 36.0 * args.size  # [px] an 85 mm lens on a 36 mm sensor
    world_to_camera = np.eye(4)
    world_to_camera[:3, 3] = (0.0, -0.02, 0.75)
    camera = Camera(K=np.array([[focal, 0.0, args.size / 2], [0.0, focal, args.size / 2], [0.0, 0.0, 1.0]]),
                    world_to_camera=world_to_camera, width=args.size, height=args.size, near=0.1, far=100.0)
    source = resolve_avatar("default", None, args.gaussians)
    load_avatar(source, "cpu")  # built once, outside the timing (a running backend keeps it cached)
    default_tile = rasterizer.TILE_SIZE["torch"]
    for tile in sorted({16, default_tile}, reverse=True):
        rasterizer.TILE_SIZE["torch"] = tile
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for _ in render_frames(source, sequence, [camera] * args.frames, width=args.size, height=args.size,
                                   quality="final"):
                pass
            runs.append(time.perf_counter() - started)
        seconds = statistics.median(runs)
        print(json.dumps({"bench": "demo_render", "tile_size": tile, "default": tile == default_tile,
                          "frames": args.frames, "size": args.size, "gaussians": args.gaussians,
                          "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                          "seconds": round(seconds, 3), "ms_per_frame": round(1000 * seconds / args.frames, 1),
                          "runs": [round(run, 3) for run in runs]}), flush=True)
    rasterizer.TILE_SIZE["torch"] = default_tile


if __name__ == "__main__":
    main()
