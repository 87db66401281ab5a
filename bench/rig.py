"""The Blender FLAME rig: build time, bulk sequence import, per-frame evaluation, read-back, and exactness.

Runs bpy (Blender as a module, background) and the backend's FlameModel in one process, without a backend
server: the `head_model` job's arrays come from `head_model_arrays` directly. HOME is pointed at a temporary
folder first (bpy writes to ~/.config).

Prints one JSON line per head (nothing else on stdout):
  {"bench": "rig", "head", "vertices", "shape", "expression", "shape_keys", "drivers",
   "build_ms"         rig_build.build_rig (mesh, armature, shape keys, vertex groups, drivers),
   "import_ms"        rig_params.keyframe_sequence of a random T-frame sequence (bulk keyframes),
   "frame_ms"         mean scene.frame_set + evaluated mesh read per frame over the first 50 frames,
   "read_ms"          rig_params.rig_sequence over all T frames,
   "max_error_m"      max |Blender evaluated mesh - FlameModel| over those 50 frames (armature space, metres),
   "frames"           T}

    python bench/rig.py [--frames 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["HOME"] = tempfile.mkdtemp(prefix="keyface-bench-home-")
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.flame.model import FlameModel  # noqa: E402
from backend.flame.model_job import head_model_arrays  # noqa: E402
from blender_addon import flame_pack, rig_build, rig_params, rig_props  # noqa: E402
from shared_proto import FlameSequence  # noqa: E402


def flame_size_model(path: Path) -> Path:
    """A random model in FLAME's layout and size (5023 vertices, 9976 faces, 300 + 100 components, eyelids)."""
    rng = np.random.default_rng(0)
    n = 5023
    regressor = np.zeros((5, n))
    for row in regressor:
        chosen = rng.choice(n, size=24, replace=False)
        row[chosen] = rng.dirichlet(np.ones(24))
    faces = np.stack([rng.choice(n, size=3, replace=False) for _ in range(9976)])
    np.savez(path, v_template=rng.normal(size=(n, 3)) * [0.08, 0.11, 0.09], f=faces,
             shapedirs=rng.normal(size=(n, 3, 400)) * 2e-3, posedirs=rng.normal(size=(n, 3, 36)) * 5e-3,
             J_regressor=regressor, kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
             weights=rng.dirichlet(np.ones(5) * 0.3, size=n), l_eyelid=rng.normal(size=(n, 3)) * 3e-3,
             r_eyelid=rng.normal(size=(n, 3)) * 3e-3)
    return path


def random_sequence(rng: np.random.Generator, frames: int, n_shape: int, n_expression: int) -> FlameSequence:
    def smooth(width: int, scale: float) -> np.ndarray:  # [T, width] random walk of about `scale`
        return np.cumsum(rng.normal(size=(frames, width)), axis=0) * scale / np.sqrt(frames)

    return FlameSequence(shape=rng.normal(size=n_shape), expression=np.clip(smooth(n_expression, 3.0), -3, 3),
                         rotation=smooth(3, 0.4), neck=smooth(3, 0.4), jaw=smooth(3, 0.3), eyes=smooth(6, 0.3),
                         translation=smooth(3, 0.05), eyelids=np.clip(smooth(2, 1.0), 0, 1), fps=25.0, frame_start=1)


def bench(name: str, model: FlameModel, n_shape: int, n_expression: int, frames: int) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    data = flame_pack.rig_data({"head": name, **head_model_arrays(model, n_shape, n_expression)})
    start = time.perf_counter()
    rig = rig_build.build_rig(bpy.context, data)
    build_ms = (time.perf_counter() - start) * 1e3
    sequence = random_sequence(np.random.default_rng(1), frames, data.n_shape, data.n_expression)
    start = time.perf_counter()
    rig_params.keyframe_sequence(rig, sequence)
    import_ms = (time.perf_counter() - start) * 1e3

    mesh_object = rig.keyface.mesh
    checked = min(50, frames)
    start, blender = time.perf_counter(), []
    for frame in range(1, checked + 1):
        bpy.context.scene.frame_set(frame)
        mesh = mesh_object.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        blender.append(co.reshape(-1, 3))
    frame_ms = (time.perf_counter() - start) * 1e3 / checked
    start = time.perf_counter()
    read = rig_params.rig_sequence(rig, 1, frames)
    read_ms = (time.perf_counter() - start) * 1e3
    with torch.no_grad():
        reference = model.double().forward_params(read).vertices[:checked].numpy()
    error = np.abs(np.stack(blender) - reference).max()
    drivers = sum(len(owner.animation_data.drivers) for owner in (rig, mesh_object, mesh_object.data.shape_keys))
    return {"bench": "rig", "head": name, "vertices": len(data.template), "shape": data.n_shape,
            "expression": data.n_expression, "shape_keys": len(mesh_object.data.shape_keys.key_blocks) - 1,
            "drivers": drivers, "build_ms": round(build_ms, 1), "import_ms": round(import_ms, 1),
            "frame_ms": round(frame_ms, 2), "read_ms": round(read_ms, 1), "max_error_m": float(error),
            "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    for cls in rig_props.CLASSES:
        bpy.utils.register_class(cls)
    rig_props.register_properties()
    with tempfile.TemporaryDirectory() as folder:
        flame = FlameModel.from_file(flame_size_model(Path(folder) / "flame_size.npz"))
        cases = [("builtin", FlameModel.builtin(), 1024, 1024), ("flame-size 100/50", flame, 100, 50)]
        for name, model, n_shape, n_expression in cases:
            print(json.dumps(bench(name, model, n_shape, n_expression, args.frames)), flush=True)


if __name__ == "__main__":
    main()
