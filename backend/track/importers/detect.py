"""Recognise which tracker wrote a file or folder, and import it with the matching importer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _read, insta, metrical, vhap_export, vhap_tracked
from .result import TrackedImportError, TrackedSequence

_LOOKED_FOR = (
    "transforms.json or transforms_{train,val,test}.json whose frames have flame_param_path / timestep_index "
    "(VHAP / GaussianAvatars export) or exp_path (INSTA); checkpoint/*.frame or *.frame (metrical-tracker); "
    "tracked_flame_params*.npz (VHAP tracker output)"
)


def detect_format(path: Path | str) -> str:
    """The format name of a tracked dataset: "vhap_export", "vhap_tracked", "metrical_tracker" or "insta".

    Raises:
        FileNotFoundError: `path` does not exist.
        TrackedImportError: nothing recognisable is there (the message lists what was looked for).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".frame":
            return metrical.FORMAT
        if path.suffix == ".npz":
            return vhap_tracked.FORMAT
        if path.suffix == ".json":
            return _json_format(path)
    else:
        for name in (vhap_export.TRANSFORMS, *vhap_export.SPLITS):
            if (path / name).is_file():
                return _json_format(path / name)
        if metrical.find_checkpoints(path)[1]:
            return metrical.FORMAT
        if vhap_tracked.find_tracked_params(path) is not None:
            return vhap_tracked.FORMAT
    raise TrackedImportError(path, None, f"not a tracked dataset Keyface can read; looked for {_LOOKED_FOR}")


def load_tracked(path: Path | str, *, camera_index: int | None = None, fps: float | None = None) -> TrackedSequence:
    """Import a tracked sequence from any supported tracker's output (see `detect_format`).

    Args:
        path: a dataset folder or file.
        camera_index: the camera of a multi-camera VHAP / GaussianAvatars export (None: the lowest);
            only valid for that format.
        fps: frames per second; None keeps the format's default (25 for all four).

    Raises:
        FileNotFoundError: `path` does not exist.
        TrackedImportError: unrecognised or malformed data (names the file and the key).
        ValueError: `camera_index` given for a single-camera format, or a bad `fps`.
    """
    options: dict[str, Any] = {} if fps is None else {"fps": _read.check_fps(fps)}
    fmt = detect_format(path)
    if fmt == vhap_export.FORMAT:
        return vhap_export.load_vhap_export(path, camera_index=camera_index, **options)
    if camera_index is not None:
        raise ValueError(f"camera_index={camera_index} applies only to multi-camera VHAP/GaussianAvatars exports; "
                         f"{path} is {fmt}")
    loaders = {vhap_tracked.FORMAT: vhap_tracked.load_vhap_tracked, metrical.FORMAT: metrical.load_metrical_tracker,
               insta.FORMAT: insta.load_insta}
    return loaders[fmt](path, **options)


def _json_format(path: Path) -> str:
    """Tell a VHAP export from an INSTA dataset by the keys of its first frame."""
    frames = _read.get(path, _read.read_json(path), "frames")
    first = next((f for f in frames if isinstance(f, dict)), None) if isinstance(frames, list) else None
    if first is not None and ("flame_param_path" in first or "timestep_index" in first):
        return vhap_export.FORMAT
    if first is not None and "exp_path" in first:
        return insta.FORMAT
    keys = sorted(first)[:20] if first is not None else []
    raise TrackedImportError(path, "frames", f"frames have none of flame_param_path / timestep_index (VHAP) or "
                                             f"exp_path (INSTA); first frame keys: {keys}")
