"""VHAP tracker output: `tracked_flame_params_<epoch>.npz` (one archive for the whole sequence).

Keys (VHAP `vhap/model/tracker.py`, `FlameTracker.save_result`): `rotation`, `translation`, `neck_pose`,
`jaw_pose` [T, 3], `eyes_pose` [T, 6], `expr` [T, E], `shape` [S], `timestep_id` [T], `image_size`
(H, W), `focal_length` [1] (only when the cameras were not calibrated, i.e. monocular video),
`static_offset` [1, V, 3] (optional); also `tex`, `lights`, `dynamic_offset`, ... which are ignored.

Camera (`GlobalTracker.init_params` and `fill_cam_params_into_sample`): fixed for the whole sequence,
world-to-camera R = I, t = (0, 0, -1) in OpenGL camera axes (the camera sits at (0, 0, 1) looking down
-z at the origin); fx = fy = focal_length * max(H, W); principal point at the image centre (W/2, H/2).
In OpenCV axes (flip the camera's y and z): R = diag(1, -1, -1), t = (0, 0, 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import _read
from .conventions import intrinsics, opengl_w2c_to_opencv, rigid
from .result import TrackedImportError, TrackedSequence

FORMAT = "vhap_tracked"
PATTERN = "tracked_flame_params*.npz"
_KEYS = ("rotation", "translation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr", "focal_length",
         "image_size", "timestep_id", "static_offset")
_VHAP_WORLD_TO_CAMERA_GL = rigid(np.eye(3), np.array([0.0, 0.0, -1.0]))
"""[4, 4] VHAP's fixed monocular camera, OpenGL axes: `RT = eye(3, 4); RT[2, 3] = -1`."""


def find_tracked_params(folder: Path) -> Path | None:
    """The `tracked_flame_params_<epoch>.npz` with the highest epoch in `folder` (VHAP's export does the same)."""
    def epoch(path: Path) -> int:
        match = re.search(r"_(\d+)$", path.stem)
        return int(match.group(1)) if match else -1
    candidates = sorted(folder.glob(PATTERN), key=lambda p: (epoch(p), p.name))
    return candidates[-1] if candidates else None


def load_vhap_tracked(path: Path | str, fps: float = 25.0) -> TrackedSequence:
    """Import a VHAP `tracked_flame_params*.npz` (a file, or a folder holding them: the latest epoch).

    Args:
        path: the .npz file or VHAP's output folder.
        fps: frames per second of the tracked video (VHAP's video preprocessing defaults to 25).

    Raises:
        FileNotFoundError: `path` does not exist, or a folder holds no tracked_flame_params*.npz.
        TrackedImportError: the archive is unreadable, or a key is missing, misshapen or not finite.
    """
    fps = _read.check_fps(fps)
    path = Path(path)
    notes = []
    if path.is_dir():
        found = find_tracked_params(path)
        if found is None:
            raise FileNotFoundError(f"{path}: no {PATTERN} in this folder")
        notes.append(f"read {found.name} (the highest epoch in the folder)")
        path = found
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    data = _read.read_npz(path, _KEYS)
    for key in ("rotation", "translation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr", "image_size"):
        if key not in data:
            raise TrackedImportError(path, key, f"missing (present: {sorted(data)}); "
                                     "not a VHAP tracked_flame_params file?")
    if "focal_length" not in data:
        raise TrackedImportError(path, "focal_length", "missing: this sequence was tracked with calibrated cameras, "
                                 "which the .npz does not store; import VHAP's exported folder (transforms.json)")
    dims: dict[str, int] = {}
    fields = {
        "expression": _read.check_array(path, "expr", data["expr"], ("T", "E"), dims),
        "shape": _read.check_array(path, "shape", data["shape"], ("S",), dims, leading_one=True),
        "rotation": _read.check_array(path, "rotation", data["rotation"], ("T", 3), dims),
        "translation": _read.check_array(path, "translation", data["translation"], ("T", 3), dims),
        "neck": _read.check_array(path, "neck_pose", data["neck_pose"], ("T", 3), dims),
        "jaw": _read.check_array(path, "jaw_pose", data["jaw_pose"], ("T", 3), dims),
        "eyes": _read.check_array(path, "eyes_pose", data["eyes_pose"], ("T", 6), dims),
    }
    frames = dims["T"]
    height, width = (_read.number(path, "image_size", v, integer=True)
                     for v in _read.check_array(path, "image_size", data["image_size"], (2,)))
    focal = _read.number(path, "focal_length", _read.check_array(path, "focal_length", data["focal_length"], (1,)))
    K = intrinsics(focal * max(height, width), focal * max(height, width), width / 2.0, height / 2.0)
    cam = _read.camera(path, "focal_length", K, opengl_w2c_to_opencv(_VHAP_WORLD_TO_CAMERA_GL), width, height)
    static_offset = None
    if "static_offset" in data:
        static_offset = _read.check_array(path, "static_offset", data["static_offset"], ("V", 3),
                                          leading_one=True, limit=_read.MAX_OFFSET)
    return TrackedSequence(
        sequence=_read.sequence(path, {**fields, "fps": fps}),
        cameras=(cam,) * frames,
        image_paths=(None,) * frames,
        mask_paths=(None,) * frames,
        mesh_paths=(None,) * frames,
        static_offset=static_offset,
        source=FORMAT,
        frame_ids=_frame_ids(path, data.get("timestep_id"), frames),
        notes=tuple(notes),
    )


def _frame_ids(path: Path, ids: np.ndarray | None, frames: int) -> tuple[str, ...]:
    """VHAP's `timestep_id` strings, or the row numbers when the archive has none."""
    if ids is None:
        return tuple(f"{i:05d}" for i in range(frames))
    if ids.dtype.kind not in "USiu" or ids.shape != (frames,):
        raise TrackedImportError(path, "timestep_id", f"must be [{frames}] strings or integers, "
                                                      f"got dtype {ids.dtype} shape {list(ids.shape)}")
    return tuple(str(v.decode("ascii", "replace") if isinstance(v, bytes) else v) for v in ids.tolist())
