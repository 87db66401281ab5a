"""Gaussian splat rasterizers: frame rate with deformation, forward+backward time, tile vs dense speed-up.

Scene: `head_scene` — a head-sized avatar (Gaussians on a 16 x 22 x 20 cm ellipsoid seen from 0.6 m, scales
2-5 mm, opacities 0.3-1, RGB), one camera, square images. Each frame first moves the means by a cheap
sinusoidal warp (`deform`), so the timings include updating the Gaussians.

Prints one JSON line per result (nothing else on stdout):
  {"bench": "gaussian_render", ...}: per backend/device, resolution and N —
      forward_ms / forward_fps: deform + rasterize without autograd;
      forward_backward_ms: deform + rasterize + L1 loss + backward to means, quats, scales, opacities, features;
      each the median of forward_repeats / forward_backward_repeats runs after one warm-up run (CUDA timings
      synchronised), measured after a process-wide warm-up (a long-running backend's steady state).
  {"bench": "gaussian_render_speedup", ...}: torch tile rasterizer vs the dense reference compositor, forward
      without autograd, CPU, 256² and 20k Gaussians; speedup_vs_dense = dense_ms / tile_ms (goal >= 10).
      The dense reference has no early-out and touches every pixel alike, so with --quick its compositing is
      timed on `dense_rows_timed` rows and scaled to the full height (projection timed in full).

    python bench/render.py [--quick] [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

# OpenMP threads sleep at barriers instead of spinning: on a machine shared with other jobs, spinning threads
# made 2-thread timings up to 10x slower and erratic. Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.render.gaussian_projection import project_gaussians  # noqa: E402
from backend.service.allocator import keep_large_buffers_in_heap  # noqa: E402
from backend.render.gaussian_rasterizer import rasterize_gaussians  # noqa: E402
from backend.render.gaussian_reference import composite_dense  # noqa: E402
from backend.render.gaussian_scenes import GaussianScene, head_scene  # noqa: E402

MALLOC_TUNED = keep_large_buffers_in_heap()  # as `python -m backend` runs (backend/service/allocator.py)
SIZES = (256, 512)
COUNTS = (10_000, 50_000, 100_000)
SPEEDUP_SIZE, SPEEDUP_COUNT = 256, 20_000


def deform(means: torch.Tensor, frame: int) -> torch.Tensor:
    """[N, 3] -> [N, 3]: a per-frame sinusoidal warp of up to 4 mm."""
    return means + 0.004 * torch.sin(40.0 * means[:, [1, 2, 0]] + 0.3 * frame)


def timed_ms(run: Callable[[int], object], repeats: int, device: torch.device) -> float:
    """Median wall time of run(frame) in milliseconds, after one warm-up call."""
    times = []
    for frame in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run(frame)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[1:])


def render(scene: GaussianScene, means: torch.Tensor, params: list[torch.Tensor], backend: str):
    return rasterize_gaussians(means, *params, scene.K, scene.world_to_camera, scene.width, scene.height,
                               backend=backend)


def bench_frame_rate(backend: str, device: torch.device, size: int, count: int, repeats: int,
                     backward_repeats: int) -> dict:
    scene = head_scene(count, size, size, device=device)
    params = [scene.quats, scene.scales, scene.opacities, scene.features]

    def forward(frame: int) -> None:
        with torch.no_grad():
            render(scene, deform(scene.means, frame), params, backend)

    leaves = [t.clone().requires_grad_(True) for t in [scene.means, *params]]

    def forward_backward(frame: int) -> None:
        out = render(scene, deform(leaves[0], frame), leaves[1:], backend)
        (out.features - 0.5).abs().mean().backward()

    forward_ms = timed_ms(forward, repeats, device)
    return {"bench": "gaussian_render", "backend": backend, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "resolution": [size, size],
            "num_gaussians": count, "channels": 3, "cameras": 1, "forward_ms": round(forward_ms, 2),
            "forward_fps": round(1e3 / forward_ms, 2),
            "forward_backward_ms": round(timed_ms(forward_backward, backward_repeats, device), 2),
            "forward_repeats": repeats, "forward_backward_repeats": backward_repeats,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "malloc_tuned": MALLOC_TUNED,
            "metric": "forward: deform + rasterize, no autograd; forward_backward: deform + rasterize + L1 loss + "
                      "backward; median ms after 1 warm-up"}


def bench_speedup(repeats: int, dense_rows: int) -> dict:
    scene = head_scene(SPEEDUP_COUNT, SPEEDUP_SIZE, SPEEDUP_SIZE)
    cpu = torch.device("cpu")
    params = [scene.quats, scene.scales, scene.opacities, scene.features]

    def tiles(frame: int) -> None:
        with torch.no_grad():
            render(scene, deform(scene.means, frame), params, "torch")

    def project(frame: int):
        return project_gaussians(deform(scene.means, frame), scene.quats, scene.scales, scene.opacities, scene.K,
                                 scene.world_to_camera, scene.width, scene.height, near=0.01, far=100.0, eps2d=0.3)

    with torch.no_grad():
        projected = project(0)
        stacked = torch.cat([scene.features[None], projected.depths[..., None]], -1)  # [1, N, 4]
        project_ms = timed_ms(project, repeats, cpu)
        composite_ms = timed_ms(lambda frame: composite_dense(projected, stacked, scene.width, dense_rows), 1, cpu)
    dense_ms = project_ms + composite_ms * scene.height / dense_rows
    tile_ms = timed_ms(tiles, repeats, cpu)
    return {"bench": "gaussian_render_speedup", "device": "cpu", "resolution": [SPEEDUP_SIZE, SPEEDUP_SIZE],
            "num_gaussians": SPEEDUP_COUNT, "tile_ms": round(tile_ms, 2), "dense_ms": round(dense_ms, 1),
            "speedup_vs_dense": round(dense_ms / tile_ms, 1), "dense_rows_timed": dense_rows, "repeats": repeats,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "malloc_tuned": MALLOC_TUNED,
            "metric": "forward without autograd (deform + project + composite), CPU; tile: backend='torch'; dense: "
                      "the reference compositor, its compositing time scaled from dense_rows_timed rows to the "
                      "full height; median ms (the dense compositing: 1 run after 1 warm-up)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 forward / 1 forward+backward repeats, dense reference on 16 rows (< 1 min)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    backward_repeats = args.repeats or (1 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = [("torch", torch.device("cpu"))]
    if torch.cuda.is_available():
        runs.append(("gsplat", torch.device("cuda")))
    for backend, device in runs:
        bench_frame_rate(backend, device, SPEEDUP_SIZE, SPEEDUP_COUNT, 1, 1)  # process warm-up (allocator, kernels)
        for size in SIZES:
            for count in COUNTS:
                result = bench_frame_rate(backend, device, size, count, repeats, backward_repeats)
                print(json.dumps(result), flush=True)
    print(json.dumps(bench_speedup(repeats, 16 if args.quick else SPEEDUP_SIZE)), flush=True)


if __name__ == "__main__":
    main()
