"""metrical-tracker output (also what FlashAvatar and INSTA start from): `checkpoint/<frame>.frame`.

Each file is one `torch.save`d dict (metrical-tracker `tracker.py`, `Tracker.save_checkpoint`), holding
numpy arrays:

- `flame`: `exp` [1, E], `shape` [1, S], `jaw` [1, 6] and `eyes` [1, 12] (left then right eye) as 6D
  rotations, `eyelids` [1, 2] (left, right), `tex`, `sh` (ignored).
- `camera` (PyTorch3D `PerspectiveCameras`): `R` [1, 6] 6D, `t` [1, 3], `fl` [1, 1] and `pp` [1, 2] in NDC.
- `opencv` (PyTorch3D's `opencv_from_cameras_projection` of the same camera): `R` [1, 3, 3], `t` [1, 3]
  world-to-camera, `K` [1, 3, 3] pixels. Preferred when present.
- `img_size` (H, W), `frame_id` (zero-padded string), `global_step`.

The FLAME model is never posed globally: metrical-tracker's FLAME gets identity global and neck
rotations and no translation, and the camera moves instead. So rotation, neck and translation are zero
here and the head pose lives in the per-frame camera. The 6D rotations are PyTorch3D's (first two rows
of the matrix), see `conventions.rotation_6d_to_matrix`.

Files are loaded with `torch.load(weights_only=True)`; on top of torch's own safe list only plain numeric
numpy arrays are allowed, rebuilt by `_checkpoint`'s validating stand-ins (numpy's own unpickling is not
memory-safe on damaged files). A file that needs anything else is refused, never unpickled.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared_proto.types import Camera

from . import _checkpoint, _read
from .conventions import matrix_to_axis_angle, pytorch3d_to_opencv, rigid, rotation_6d_to_matrix
from .result import TrackedImportError, TrackedSequence

FORMAT = "metrical_tracker"
CHECKPOINT_DIR = "checkpoint"
PATTERN = "*.frame"
_FRAME_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # metrical-tracker names every output file after it

# What torch.load raises on truncated or corrupted bytes (zip reader: RuntimeError; legacy and
# restricted unpickler: UnpicklingError, EOFError, ValueError, struct.error, LookupError for a damaged
# codec name or memo index, AssertionError from its persistent-id checks, ...). Caught only there.
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
                struct.error, LookupError, TypeError, AttributeError, OverflowError, MemoryError, AssertionError)


def find_checkpoints(path: Path) -> tuple[Path, list[Path]]:
    """(the tracker's actor folder, its sorted `*.frame` files) for an actor or checkpoint folder."""
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    actor = folder.parent if folder.name == CHECKPOINT_DIR else folder
    return actor, sorted(folder.glob(PATTERN))


def load_metrical_tracker(path: Path | str, fps: float = 25.0) -> TrackedSequence:
    """Import a metrical-tracker output folder.

    Args:
        path: the actor folder (holding `checkpoint/`), the `checkpoint/` folder, or one `.frame` file in it
            (then the whole folder is read).
        fps: frames per second of the tracked video (metrical-tracker extracts frames at 25).

    Raises:
        FileNotFoundError: `path` does not exist, or no `.frame` files are there.
        TrackedImportError: a file is unreadable or needs unsafe unpickling, or a key is missing,
            misshapen, degenerate or not finite.
    """
    fps = _read.check_fps(fps)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    actor, files = find_checkpoints(path.parent if path.is_file() else path)
    if not files:
        raise FileNotFoundError(f"{path}: no {CHECKPOINT_DIR}/{PATTERN} files here")
    dims: dict[str, int] = {}
    rows = [_frame(file, load_checkpoint(file), dims) for file in files]
    lids = [row["eyelids"] is not None for row in rows]
    if any(lids) and not all(lids):
        missing = files[lids.index(False)]
        raise TrackedImportError(missing, "flame.eyelids", "missing, but other frames of the sequence have eyelids")
    first = rows[0]
    notes = ["no global head pose in metrical-tracker: rotation, neck and translation are zero and the head "
             "pose is in the per-frame camera"]
    sources = sorted({row["camera_source"] for row in rows})
    notes.append(f"cameras from the {' and '.join(sources)} block(s)")
    drift = max(float(np.abs(row["shape"] - first["shape"]).max(initial=0.0)) for row in rows)
    if drift > 0.0:
        notes.append(f"the shape vector differs between frames by up to {drift:.3g}; used the first frame's")
    frames = len(rows)
    zeros = np.zeros((frames, 3))
    fields = {
        "shape": first["shape"],
        "expression": np.stack([row["exp"] for row in rows]),
        "jaw": np.stack([row["jaw"] for row in rows]),
        "eyes": np.stack([row["eyes"] for row in rows]),
        "eyelids": np.stack([row["eyelids"] for row in rows]) if all(lids) else None,
        "rotation": zeros, "neck": zeros, "translation": zeros, "fps": fps,
    }
    return TrackedSequence(
        sequence=_read.sequence(files[0], fields, files),
        cameras=tuple(row["camera"] for row in rows),
        image_paths=tuple(_existing(actor / "input" / f"{row['id']}.png") for row in rows),
        mask_paths=(None,) * frames,
        mesh_paths=tuple(_existing(actor / "mesh" / f"{row['id']}.ply") for row in rows),
        static_offset=None,
        source=FORMAT,
        frame_ids=tuple(row["id"] for row in rows),
        notes=tuple(notes),
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The dict in one `.frame` file, loaded with `weights_only=True` (plain numeric numpy arrays allowed)."""
    try:
        payload = _checkpoint.load(path)
    except FileNotFoundError:
        raise TrackedImportError(path, None, "file not found") from None
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            raise TrackedImportError(path, None, f"refused: loading it needs unsafe unpickling of {unsafe.group(1)}; "
                                     "Keyface only loads plain tensors and numpy arrays") from None
        raise TrackedImportError(path, None, f"not a readable torch checkpoint: {_first_line(error)}") from None
    except _LOAD_ERRORS as error:
        raise TrackedImportError(path, None, f"not a readable torch checkpoint: {_first_line(error)}") from None
    if not isinstance(payload, dict):
        raise TrackedImportError(path, None, f"must hold a dict, got {type(payload).__name__}")
    return payload


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _entry(path: Path, mapping: Any, where: str | None, key: str, shape: tuple[_read.Dim, ...],
           dims: dict[str, int] | None = None) -> np.ndarray:
    """`mapping[key]` (`mapping` is the block named `where`, None: the top level) as a validated float64 array."""
    label = key if where is None else f"{where}.{key}"
    value = _read.get(path, mapping, key, where)
    if isinstance(value, torch.Tensor):
        try:
            value = value.detach().cpu()
            value = (value.double() if value.is_floating_point() else value).numpy()
        except (RuntimeError, TypeError) as error:  # sparse, quantized, ... tensors
            raise TrackedImportError(path, label, f"cannot read the tensor as an array: {error}") from None
    return _read.check_array(path, label, value, shape, dims, leading_one=True)


def _matrix(path: Path, key: str, d6: np.ndarray) -> np.ndarray:
    """[..., 6] PyTorch3D 6D rotations -> [..., 3, 3]; a degenerate one names the key."""
    try:
        return rotation_6d_to_matrix(d6)
    except ValueError as error:
        raise TrackedImportError(path, key, f"{error}: {d6.tolist()}") from None


def _frame(path: Path, payload: dict[str, Any], dims: dict[str, int]) -> dict[str, Any]:
    """One checkpoint's FLAME parameters (axis-angle) and OpenCV camera."""
    flame = _read.get(path, payload, "flame")
    eyes = _entry(path, flame, "flame", "eyes", (12,)).reshape(2, 6)  # left eye's 6D, then the right eye's
    jaw = _entry(path, flame, "flame", "jaw", (6,))
    eyelids = _entry(path, flame, "flame", "eyelids", (2,)) if "eyelids" in flame else None
    camera, source = _camera(path, payload)
    frame_id = payload.get("frame_id", path.stem)
    if isinstance(frame_id, bool) or not isinstance(frame_id, (str, int)) or not _FRAME_ID.fullmatch(str(frame_id)):
        raise TrackedImportError(path, "frame_id", f"must be a file-name-safe string, got {frame_id!r:.80}")
    return {"exp": _entry(path, flame, "flame", "exp", ("E",), dims),
            "shape": _entry(path, flame, "flame", "shape", ("S",), dims), "eyelids": eyelids,
            "jaw": matrix_to_axis_angle(_matrix(path, "flame.jaw", jaw)),
            "eyes": matrix_to_axis_angle(_matrix(path, "flame.eyes", eyes)).reshape(6),
            "camera": camera, "camera_source": source, "id": str(frame_id)}


def _camera(path: Path, payload: dict[str, Any]) -> tuple[Camera, str]:
    """The frame's OpenCV camera: the `opencv` block, else the PyTorch3D `camera` block converted."""
    height, width = (_read.number(path, "img_size", v, integer=True)
                     for v in _entry(path, payload, None, "img_size", (2,)))
    if "opencv" in payload:
        block = payload["opencv"]
        w2c = rigid(_entry(path, block, "opencv", "R", (3, 3)), _entry(path, block, "opencv", "t", (3,)))
        K = _entry(path, block, "opencv", "K", (3, 3))
        return _read.camera(path, "opencv", K, w2c, width, height), "opencv"
    block = _read.get(path, payload, "camera")
    rotation = _matrix(path, "camera.R", _entry(path, block, "camera", "R", (6,)))
    focal = _entry(path, block, "camera", "fl", ("F",))
    if focal.shape[0] not in (1, 2):
        raise TrackedImportError(path, "camera.fl", f"must hold 1 or 2 values, got {focal.shape[0]}")
    w2c, K = pytorch3d_to_opencv(rotation, _entry(path, block, "camera", "t", (3,)), np.broadcast_to(focal, (2,)),
                                 _entry(path, block, "camera", "pp", (2,)), int(height), int(width))
    return _read.camera(path, "camera", K, w2c, width, height), "PyTorch3D camera"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None
