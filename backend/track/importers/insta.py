"""INSTA's dataset (built from a metrical-tracker run by INSTA's `scripts/transforms.py`).

- `transforms.json` (every frame) and `transforms_{train,test,val}.json` (splits; val is a subset of
  test). Top level: `w h cx cy fl_x fl_y camera_angle_x camera_angle_y x_fov y_fov integer_depth_scale`,
  all written as floats. `frames` is indexed by frame number and may hold `null` where the tracker wrote
  no mesh.
- Per frame: `transform_matrix` = inverse of metrical-tracker's OpenCV world-to-camera, i.e. a
  camera-to-world matrix in OpenCV axes (INSTA's instant-ngp loader, `mica_matrix_to_ngp`, takes it as
  is, with no axis flips); `file_path` (`images/<id>.png`, RGBA: the alpha is the matte), `mesh_path`
  (`meshes/<id>.obj`, the posed FLAME mesh), `exp_path` (`flame/exp/<id>.txt`, E numbers one per line),
  `depth_path`, `seg_mask_path` (a face-parsing label image, not a foreground mask: not imported).

What INSTA does not store: the shape vector, jaw and eye rotations and eyelids (they are baked into
the meshes) and, as in metrical-tracker, any global head pose (the head pose is in the camera). Those
fields are zero here (shape has no coefficients) and listed in `TrackedSequence.missing`; import the
metrical-tracker folder INSTA was built from to get them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from . import _read
from .conventions import intrinsics, opencv_c2w_to_w2c
from .result import TrackedImportError, TrackedSequence

FORMAT = "insta"
TRANSFORMS = "transforms.json"
SPLITS = ("transforms_train.json", "transforms_test.json", "transforms_val.json")
MISSING = frozenset({"shape", "rotation", "neck", "jaw", "eyes", "translation"})


def load_insta(path: Path | str, fps: float = 25.0) -> TrackedSequence:
    """Import an INSTA dataset folder (or one of its transforms*.json files).

    Args:
        path: the folder (reads `transforms.json`, else the union of the split files) or one file.
        fps: frames per second (INSTA's input comes from metrical-tracker at 25).

    Raises:
        FileNotFoundError: `path` does not exist or holds no transforms*.json.
        TrackedImportError: a file is unreadable, or a key is missing, misshapen or not finite.
    """
    fps = _read.check_fps(fps)
    path = Path(path)
    if path.is_file():
        files = [path]
    elif (path / TRANSFORMS).is_file():
        files = [path / TRANSFORMS]
    elif path.is_dir() and any((path / name).is_file() for name in SPLITS):
        files = [path / name for name in SPLITS if (path / name).is_file()]
    else:
        raise FileNotFoundError(f"{path}: no such file, or no {TRANSFORMS} / {'/'.join(SPLITS)} in this folder")
    frames: dict[str, tuple[Path, int, dict[str, Any], dict[str, Any]]] = {}  # image path -> where it is listed
    for file in files:
        top = _read.read_json(file)
        listed = _read.get(file, top, "frames")
        if not isinstance(listed, list):
            raise TrackedImportError(file, "frames", f"must be a list, got {type(listed).__name__}")
        for i, frame in enumerate(listed):
            if frame is None:
                continue  # INSTA leaves a null where the tracker wrote no mesh
            image = _read.get(file, frame, "file_path", f"frames[{i}]")
            key = str(_read.relative_path(file, f"frames[{i}].file_path", image, file.parent))
            frames.setdefault(key, (file, i, frame, top))  # a frame listed in two split files is read once
    if not frames:
        raise TrackedImportError(files[0], "frames", "has no frames")
    dims: dict[str, int] = {}
    rows = [_row(*frames[key], dims) for key in sorted(frames, key=_frame_order)]
    count = len(rows)
    zeros = np.zeros((count, 3))
    fields = {"shape": np.zeros(0), "expression": np.stack([row["exp"] for row in rows]), "rotation": zeros,
              "neck": zeros, "jaw": zeros, "eyes": np.zeros((count, 6)), "translation": zeros, "fps": fps}
    return TrackedSequence(
        sequence=_read.sequence(rows[0]["exp_path"], fields, [row["exp_path"] for row in rows]),
        cameras=tuple(row["camera"] for row in rows),
        image_paths=tuple(row["image"] for row in rows),
        mask_paths=(None,) * count,
        mesh_paths=tuple(row["mesh"] for row in rows),
        static_offset=None,
        source=FORMAT,
        frame_ids=tuple(row["id"] for row in rows),
        missing=MISSING,
        notes=(f"read {', '.join(f.name for f in files)}",
               "INSTA stores only expressions: shape, jaw, eyes, eyelids and head pose are not in the dataset "
               "(they are baked into mesh_paths); the head pose is in the cameras",
               "images carry the foreground matte as alpha; seg_mask_path (face parsing) is not imported"),
    )


def _frame_order(file_path: str) -> tuple[int, int | str]:
    """Numbered frames (INSTA's `images/00012.png`) in numeric order, then any others by name."""
    stem = Path(file_path).stem
    return (0, int(stem)) if re.fullmatch(r"[0-9]{1,18}", stem) else (1, file_path)


def _row(file: Path, i: int, frame: dict[str, Any], top: dict[str, Any], dims: dict[str, int]) -> dict[str, Any]:
    """One frame's camera, paths and expression."""
    where = f"frames[{i}]"
    root = file.parent

    def setting(key: str) -> float:
        if key in frame:
            return _read.number(file, f"{where}.{key}", frame[key])
        return _read.number(file, key, _read.get(file, top, key))

    width, height = setting("w"), setting("h")
    for key, value in (("w", width), ("h", height)):
        _read.number(file, key, value, integer=True)
    K = intrinsics(setting("fl_x"), setting("fl_y"), setting("cx"), setting("cy"))
    matrix = _read.get(file, frame, "transform_matrix", where)
    c2w = _read.check_array(file, f"{where}.transform_matrix", matrix, (4, 4))
    exp_path = _read.relative_path(file, f"{where}.exp_path", _read.get(file, frame, "exp_path", where), root)
    exp = _read.check_array(exp_path, "values", _read.read_text_floats(exp_path), ("E",), dims)
    image = _read.relative_path(file, f"{where}.file_path", frame["file_path"], root)
    mesh = _read.relative_path(file, f"{where}.mesh_path", frame["mesh_path"], root) if "mesh_path" in frame else None
    return {"camera": _read.camera(file, where, K, opencv_c2w_to_w2c(c2w), width, height), "exp": exp,
            "exp_path": exp_path, "image": image, "mesh": mesh, "id": image.stem}
