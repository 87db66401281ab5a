"""VHAP's exported NeRF-style dataset, which GaussianAvatars trains on: `transforms*.json` + `flame_param/`.

Layout (VHAP `vhap/export_as_nerf_dataset.py`; GaussianAvatars `scene/dataset_readers.py`):

- `transforms.json` (every frame) and `transforms_{train,val,test}.json` (splits). Top level: shared
  intrinsics `fl_x fl_y cx cy w h camera_angle_x camera_angle_y`, `timestep_indices`, `camera_indices`.
- Per frame: `timestep_index`, `timestep_id`, `camera_index`, intrinsics as above, `transform_matrix`
  (camera-to-world, OpenGL/Blender camera axes), `file_path`, `fg_mask_path`, `flame_param_path`.
- `flame_param/<timestep>.npz`: `translation`, `rotation`, `neck_pose`, `jaw_pose` [1, 3], `eyes_pose`
  [1, 6], `expr` [1, E], `shape` [S], optional `static_offset` [1, V, 3]. Axis-angle, FLAME joint order.

Conventions converted here:

- Extrinsics: flip the y and z columns of the camera-to-world rotation (OpenGL -> OpenCV, exactly
  GaussianAvatars' `c2w[:3, 1:3] *= -1`), then invert it.
- Principal point: VHAP converts calibrated cameras with `convert_camera_convention('opencv->opengl')`,
  which also sets `cy = H - cy` because its nvdiffrast renderer counts rows from the bottom (the renders
  are flipped back with `flip(1)`). So the exported `cy` is measured from the bottom edge and the OpenCV
  value is `H - cy`. Monocular exports put the principal point at the centre, where both agree.
- Exports without `fl_x` (plain NeRF style): fx = w / (2 tan(camera_angle_x / 2)), principal point at
  the centre, as GaussianAvatars computes from the field of view.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from shared_proto.types import Camera

from . import _read
from .conventions import intrinsics, opengl_c2w_to_opencv_w2c
from .result import TrackedImportError, TrackedSequence

FORMAT = "vhap_export"
TRANSFORMS = "transforms.json"
SPLITS = ("transforms_train.json", "transforms_val.json", "transforms_test.json")
_PARAM_KEYS = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr", "static_offset")


def load_vhap_export(path: Path | str, camera_index: int | None = None, fps: float = 25.0) -> TrackedSequence:
    """Import one camera of a VHAP / GaussianAvatars export.

    Args:
        path: the export folder (reads `transforms.json`, else the union of the split files) or one
            `transforms*.json` file (reads only that file).
        camera_index: which camera of a multi-camera export; None picks the lowest index (noted in
            `notes`).
        fps: frames per second of the capture (VHAP's video preprocessing defaults to 25).

    Raises:
        FileNotFoundError: `path` does not exist or holds no transforms*.json.
        TrackedImportError: a file is unreadable, or a key is missing, misshapen or not finite.
    """
    fps = _read.check_fps(fps)
    if camera_index is not None and (isinstance(camera_index, bool) or not isinstance(camera_index, int)):
        raise TypeError(f"camera_index must be an int or None, got {camera_index!r}")
    files = _transforms_files(Path(path))
    tops = {file: _read.read_json(file) for file in files}
    frames = [(file, i, frame) for file in files for i, frame in enumerate(_frames(file, tops[file]))]
    if not frames:
        raise TrackedImportError(files[0], "frames", "is empty")
    camera_of = [_integer(file, f"frames[{i}].camera_index", frame.get("camera_index", 0)) for file, i, frame in frames]
    available = sorted(set(camera_of))
    chosen = available[0] if camera_index is None else camera_index
    if chosen not in available:
        raise TrackedImportError(files[0], "camera_index", f"no frames for camera {chosen}; the export has {available}")
    notes = [f"read {', '.join(f.name for f in files)}"]
    if len(available) > 1:
        notes.append(f"multi-camera export: imported camera index {chosen} of {available}")
    by_time: dict[int, tuple[Path, int, dict[str, Any]]] = {}
    for (file, i, frame), cam in zip(frames, camera_of):
        if cam == chosen:
            time = _read.get(file, frame, "timestep_index", f"frames[{i}]")
            time = _integer(file, f"frames[{i}].timestep_index", time)
            by_time.setdefault(time, (file, i, frame))  # a frame listed twice (two split files) is read once
    dims: dict[str, int] = {}
    cache: dict[Path, dict[str, np.ndarray]] = {}
    rows = [_row(file, i, frame, tops[file], dims, cache) for _, (file, i, frame) in sorted(by_time.items())]
    return _assemble(rows, fps, notes)


def _transforms_files(path: Path) -> list[Path]:
    """The transforms file(s) to read for `path`."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if (path / TRANSFORMS).is_file():
        return [path / TRANSFORMS]
    splits = [path / name for name in SPLITS if (path / name).is_file()]
    if not splits:
        raise FileNotFoundError(f"{path}: no {TRANSFORMS} or {'/'.join(SPLITS)} in this folder")
    return splits


def _frames(file: Path, top: dict[str, Any]) -> list[Any]:
    frames = _read.get(file, top, "frames")
    if not isinstance(frames, list):
        raise TrackedImportError(file, "frames", f"must be a list, got {type(frames).__name__}")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise TrackedImportError(file, f"frames[{i}]", f"must be an object, got {type(frame).__name__}")
    return frames


def _integer(file: Path, key: str, value: Any) -> int:
    return int(_read.number(file, key, value, integer=True))


def _setting(file: Path, frame: dict[str, Any], top: dict[str, Any], key: str, where: str) -> float | None:
    """A per-frame intrinsic, else the shared one at the top level, else None."""
    if key in frame:
        return _read.number(file, f"{where}.{key}", frame[key])
    if key in top:
        return _read.number(file, key, top[key])
    return None


def _camera(file: Path, frame: dict[str, Any], top: dict[str, Any], where: str) -> Camera:
    """The frame's OpenCV camera (see the module docstring for the conversions)."""
    width, height = (_setting(file, frame, top, key, where) for key in ("w", "h"))
    if width is None or height is None:
        raise TrackedImportError(file, f"{where}.w/h", "image size missing (neither per frame nor at the top level)")
    _read.number(file, f"{where}.w", width, integer=True)
    _read.number(file, f"{where}.h", height, integer=True)
    fx, fy, cx, cy = (_setting(file, frame, top, key, where) for key in ("fl_x", "fl_y", "cx", "cy"))
    if fx is None:
        angle = _setting(file, frame, top, "camera_angle_x", where)
        if angle is None or not 0.0 < angle < math.pi:
            raise TrackedImportError(file, f"{where}.fl_x", f"focal length missing and camera_angle_x is {angle}")
        fx = width / (2.0 * math.tan(angle / 2.0))
    fy = fx if fy is None else fy
    cx = width / 2.0 if cx is None else cx
    cy = height / 2.0 if cy is None else cy
    K = intrinsics(fx, fy, cx, height - cy)  # VHAP's cy counts from the bottom edge (module docstring)
    matrix = _read.get(file, frame, "transform_matrix", where)
    c2w = _read.check_array(file, f"{where}.transform_matrix", matrix, (4, 4))
    return _read.camera(file, where, K, opengl_c2w_to_opencv_w2c(c2w), width, height)


def _row(file: Path, i: int, frame: dict[str, Any], top: dict[str, Any], dims: dict[str, int],
         cache: dict[Path, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Everything one frame contributes: camera, paths, id and FLAME parameters."""
    where = f"frames[{i}]"
    root = file.parent
    if "flame_param_path" not in frame:
        hint = (" (it has exp_path/mesh_path: VHAP's 'mesh' export mode, which this importer does not read; "
                "re-export with --flame-mode param)") if "exp_path" in frame else ""
        raise TrackedImportError(file, f"{where}.flame_param_path", f"missing{hint}")
    param_path = _read.relative_path(file, f"{where}.flame_param_path", frame["flame_param_path"], root)
    if param_path not in cache:
        cache[param_path] = _flame_params(param_path, dims)
    image = _read.relative_path(file, f"{where}.file_path", _read.get(file, frame, "file_path", where), root)
    if not image.suffix:
        image = image.with_name(image.name + ".png")  # GaussianAvatars appends the extension when absent
    mask = None
    if "fg_mask_path" in frame:
        mask = _read.relative_path(file, f"{where}.fg_mask_path", frame["fg_mask_path"], root)
    frame_id = frame.get("timestep_id", f"{_integer(file, where + '.timestep_index', frame['timestep_index']):05d}")
    if isinstance(frame_id, bool) or not isinstance(frame_id, (str, int)):
        raise TrackedImportError(file, f"{where}.timestep_id", f"must be a string, got {frame_id!r:.80}")
    return {"camera": _camera(file, frame, top, where), "image": image, "mask": mask, "id": str(frame_id),
            "params": cache[param_path], "param_path": param_path}


def _flame_params(path: Path, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """One timestep's FLAME parameters from `flame_param/<timestep>.npz`."""
    data = _read.read_npz(path, _PARAM_KEYS)
    widths = {"translation": 3, "rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "expr": "E"}
    params = {}
    for key, width in widths.items():
        if key not in data:
            raise TrackedImportError(path, key, f"missing (present: {sorted(data)})")
        params[key] = _read.check_array(path, key, data[key], (width,), dims, leading_one=True)
    if "shape" not in data:
        raise TrackedImportError(path, "shape", f"missing (present: {sorted(data)})")
    params["shape"] = _read.check_array(path, "shape", data["shape"], ("S",), dims, leading_one=True)
    if "static_offset" in data:
        params["static_offset"] = _read.check_array(path, "static_offset", data["static_offset"], ("V", 3), dims,
                                                    leading_one=True, limit=_read.MAX_OFFSET)
    return params


def _assemble(rows: list[dict[str, Any]], fps: float, notes: list[str]) -> TrackedSequence:
    first = rows[0]["params"]
    drift = max(float(np.abs(row["params"]["shape"] - first["shape"]).max(initial=0.0)) for row in rows)
    if drift > 0.0:
        notes.append(f"the shape vector differs between timesteps by up to {drift:.3g}; used the first timestep's")
    stacked = {name: np.stack([row["params"][key] for row in rows]) for name, key in (
        ("expression", "expr"), ("rotation", "rotation"), ("neck", "neck_pose"), ("jaw", "jaw_pose"),
        ("eyes", "eyes_pose"), ("translation", "translation"))}
    return TrackedSequence(
        sequence=_read.sequence(rows[0]["param_path"], {**stacked, "shape": first["shape"], "fps": fps},
                                [row["param_path"] for row in rows]),
        cameras=tuple(row["camera"] for row in rows),
        image_paths=tuple(row["image"] for row in rows),
        mask_paths=tuple(row["mask"] for row in rows),
        mesh_paths=(None,) * len(rows),
        static_offset=first.get("static_offset"),
        source=FORMAT,
        frame_ids=tuple(row["id"] for row in rows),
        notes=tuple(notes),
    )
