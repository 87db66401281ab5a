"""The add-on's Gaussian importer: numpy PLY reading, and the Blender side (mesh + attributes + splat preview).

Input: a synthetic 3DGS PLY written by the backend's `write_ply` (binary little-endian float32, SH degree 3, i.e.
62 properties per Gaussian, like a trained 3DGS scene): N Gaussians with random means, quaternions, scales.

Prints one JSON line per result (nothing else on stdout):
  {"bench": "splat_ply_read", "n", "max_points", "ms", "mb_per_s"}: `read_splat_ply` wall time (median of 3)
      for all Gaussians and for a max_points subset; mb_per_s = file size / time.
  {"bench": "splat_import_bpy", "n", "import_ms", "evaluate_ms", "evaluated_vertices"}: in Blender (bpy module,
      background), `keyface.import_gaussians` (read + mesh + attributes + node group) and the first depsgraph
      evaluation of the preview (instancing + realize), one run each in a fresh process.

    python bench/import_gaussians.py [--n 200000] [--max-points 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.avatar import StaticGaussians, write_ply  # noqa: E402
from blender_addon.splat_ply import read_splat_ply  # noqa: E402

BPY_DRIVER = """
import json, sys, time
import bpy
from blender_addon import gaussian_ops
bpy.ops.wm.read_factory_settings(use_empty=True)
for cls in gaussian_ops.CLASSES:
    bpy.utils.register_class(cls)
start = time.perf_counter()
bpy.ops.keyface.import_gaussians(filepath=sys.argv[1], max_points=0)
imported = time.perf_counter()
evaluated = bpy.context.active_object.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
done = time.perf_counter()
print("RESULT" + json.dumps({"import_ms": 1e3 * (imported - start), "evaluate_ms": 1e3 * (done - imported),
                             "evaluated_vertices": len(evaluated.vertices)}))
"""


def synthetic(n: int, path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    gaussians = StaticGaussians(means=torch.randn(n, 3, generator=generator) * 0.1,
                                quats=torch.randn(n, 4, generator=generator),
                                log_scales=torch.randn(n, 3, generator=generator) * 0.3 - 5,
                                opacity_logits=torch.randn(n, generator=generator),
                                sh=torch.randn(n, 16, 3, generator=generator) * 0.3)
    return write_ply(path, gaussians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--max-points", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic(args.n, Path(tmp) / "scene.ply")
        size_mb = path.stat().st_size / 1e6
        for max_points in (None, args.max_points):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                read_splat_ply(path, max_points=max_points)
                times.append(time.perf_counter() - start)
            ms = 1e3 * statistics.median(times)
            print(json.dumps({"bench": "splat_ply_read", "n": args.n, "max_points": max_points, "ms": round(ms, 1),
                              "mb_per_s": round(size_mb / (ms / 1e3), 1)}), flush=True)
        done = subprocess.run([sys.executable, "-c", BPY_DRIVER, str(path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT")), None)
        if line is None:
            raise SystemExit(f"bpy driver failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        result = json.loads(line[len("RESULT"):])
        print(json.dumps({"bench": "splat_import_bpy", "n": args.n,
                          **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
