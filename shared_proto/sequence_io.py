"""Save and load a `FlameSequence` as .npz (VHAP's key names) or as human-readable JSON.

Standard library + numpy only: the Blender add-on imports this too.

NPZ keys, the names VHAP's `tracked_flame_params*.npz` and GaussianAvatars' `flame_param.npz` use:

    shape [S]   expr [T, E]   rotation, neck_pose, jaw_pose, translation [T, 3]   eyes_pose [T, 6]
    eyelids [T, 2] (only when the sequence has eyelids)   fps [] float64   frame_start [] int64

`load_sequence_npz` also reads VHAP's own archives: keys it does not know (`static_offset`, `tex`,
`lights`, `focal_length`, `timestep_id`, ...) are ignored, a [1, S] shape is accepted, and a missing
`fps` / `frame_start` defaults to 25 / 0. Nothing is ever unpickled.

JSON: one object with `"format": "keyface.flame_sequence"`, `"version": 1`, `fps`, `frame_start` and
the `FlameSequence` field names (`shape`, `expression`, `rotation`, `neck`, `jaw`, `eyes`,
`translation`, optional `eyelids`) as lists of floats, one frame per line. Floats are written in the
shortest form that reads back to the same float32.

Writes are atomic (a temporary file in the same folder, then `os.replace`). Loaders raise
`ProtocolError` (a `ValueError`, code `bad_value`) naming the file for malformed content; a missing or
unreadable file raises the usual `OSError`.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from .errors import ErrorCode, ProtocolError
from .types import FlameSequence

JSON_FORMAT = "keyface.flame_sequence"
JSON_VERSION = 1
DEFAULT_FPS = 25.0
"""fps assumed for an .npz without an `fps` key (VHAP's and metrical-tracker's default frame rate)."""

# FlameSequence field -> npz key (VHAP's names).
NPZ_KEYS = {"shape": "shape", "expression": "expr", "rotation": "rotation", "neck": "neck_pose",
            "jaw": "jaw_pose", "eyes": "eyes_pose", "translation": "translation", "eyelids": "eyelids"}
_ARRAY_FIELDS = tuple(NPZ_KEYS)

# What np.load and reading an npz member raise on damaged archives (a damaged .npy header is parsed
# with `ast.literal_eval` after `tokenize`, hence SyntaxError and TokenError; zipfile raises RuntimeError
# for a member flagged as encrypted). Caught only there.
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, struct.error,
               MemoryError, SyntaxError, tokenize.TokenError, RuntimeError)


def _bad(path: Path, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, f"{path}: {message}")


def _check_sequence(sequence: Any) -> FlameSequence:
    if not isinstance(sequence, FlameSequence):
        raise TypeError(f"expected a FlameSequence, got {type(sequence).__name__}")
    return sequence


def _atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write `path` through `write(file)` into a temporary sibling, then rename it into place."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
        done = True
    finally:
        if not done:
            os.unlink(temp)
    return path


def save_sequence_npz(sequence: FlameSequence, path: str | os.PathLike[str]) -> Path:
    """Write `sequence` as an .npz with VHAP's key names (see the module docstring); returns the path."""
    sequence = _check_sequence(sequence)
    arrays = {NPZ_KEYS[name]: getattr(sequence, name) for name in _ARRAY_FIELDS if getattr(sequence, name) is not None}
    arrays["fps"] = np.array(sequence.fps, dtype=np.float64)
    arrays["frame_start"] = np.array(sequence.frame_start, dtype=np.int64)
    return _atomic_write(path, lambda file: np.savez(file, **arrays))


def load_sequence_npz(path: str | os.PathLike[str]) -> FlameSequence:
    """Read an .npz written by `save_sequence_npz`, or a VHAP `tracked_flame_params*.npz`.

    Raises:
        OSError: the file is missing or unreadable.
        ProtocolError: the content is not such an archive, or a key is missing, misshapen or not finite.
    """
    path = Path(path)
    wanted = {*NPZ_KEYS.values(), "fps", "frame_start"}
    with open(path, "rb") as file:
        try:
            archive = np.load(file, allow_pickle=False)
        except _NPZ_ERRORS as error:
            raise _bad(path, f"not a readable .npz archive: {error}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _bad(path, "is a single .npy array, expected an .npz archive of named arrays")
        arrays = {}
        with archive:
            for key in wanted & set(archive.files):
                try:
                    arrays[key] = archive[key]
                except _NPZ_ERRORS as error:
                    raise _bad(path, f"cannot read array '{key}': {error}") from None
    missing = sorted(NPZ_KEYS[name] for name in _ARRAY_FIELDS if name != "eyelids" and NPZ_KEYS[name] not in arrays)
    if missing:
        raise _bad(path, f"missing arrays {missing} (present: {sorted(arrays)})")
    for key, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise _bad(path, f"array '{key}' must be numeric, got dtype {array.dtype}")
    fields: dict[str, Any] = {name: arrays[NPZ_KEYS[name]] for name in _ARRAY_FIELDS if NPZ_KEYS[name] in arrays}
    if fields["shape"].ndim == 2 and fields["shape"].shape[0] == 1:
        fields["shape"] = fields["shape"][0]  # [1, S] as some VHAP-derived files store it
    fields["fps"] = _scalar(path, arrays, "fps", DEFAULT_FPS)
    frame_start = _scalar(path, arrays, "frame_start", 0)
    if not math.isfinite(frame_start) or frame_start != int(frame_start):
        raise _bad(path, f"frame_start must be a whole number, got {frame_start}")
    fields["frame_start"] = int(frame_start)
    return _build(path, fields)


def _scalar(path: Path, arrays: dict[str, np.ndarray], key: str, default: float) -> float:
    if key not in arrays:
        return default
    if arrays[key].size != 1:
        raise _bad(path, f"'{key}' must hold one number, got shape {list(arrays[key].shape)}")
    return arrays[key].reshape(()).item()


def _build(path: Path, fields: dict[str, Any]) -> FlameSequence:
    try:
        return FlameSequence(**fields)
    except ProtocolError as error:
        raise _bad(path, error.message) from None


def _short(values: np.ndarray) -> str:
    """[N] float32 -> a JSON list, each value in the shortest form that reads back to the same float32."""
    return "[" + ", ".join(str(value) for value in values) + "]"  # numpy prints float32 scalars that way


def save_sequence_json(sequence: FlameSequence, path: str | os.PathLike[str]) -> Path:
    """Write `sequence` as readable JSON (see the module docstring); returns the path."""
    sequence = _check_sequence(sequence)
    lines = [f'  "format": {json.dumps(JSON_FORMAT)}', f'  "version": {JSON_VERSION}',
             f'  "fps": {json.dumps(sequence.fps)}', f'  "frame_start": {sequence.frame_start}']
    for name in _ARRAY_FIELDS:
        array = getattr(sequence, name)
        if array is None:
            continue
        if array.ndim == 1:
            lines.append(f'  "{name}": {_short(array)}')
        else:
            rows = ",\n    ".join(_short(row) for row in array)
            lines.append(f'  "{name}": [\n    {rows}\n  ]')
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    return _atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def load_sequence_json(path: str | os.PathLike[str]) -> FlameSequence:
    """Read a sequence written by `save_sequence_json`.

    Raises:
        OSError: the file is missing or unreadable.
        ProtocolError: not JSON, not this format, unknown or missing fields, or invalid values.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _bad(path, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise _bad(path, f"the top level must be a JSON object, got {type(data).__name__}")
    if data.get("format") != JSON_FORMAT:
        raise _bad(path, f"'format' must be {JSON_FORMAT!r}, got {data.get('format')!r:.80}")
    if data.get("version") != JSON_VERSION or isinstance(data.get("version"), bool):
        raise _bad(path, f"unsupported version {data.get('version')!r:.80} (this reader knows {JSON_VERSION})")
    fields = {key: value for key, value in data.items() if key not in ("format", "version")}
    known = {*_ARRAY_FIELDS, "fps", "frame_start"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise _bad(path, f"unknown fields {unknown[:10]}; expected some of {sorted(known)}")
    missing = sorted({*_ARRAY_FIELDS} - {"eyelids"} - set(fields))
    if missing:
        raise _bad(path, f"missing fields {missing}")
    for name in fields:
        _check_numbers(path, name, fields[name], 1 if name == "shape" else 0 if name in ("fps", "frame_start") else 2)
    return _build(path, fields)


def _check_numbers(path: Path, name: str, value: Any, depth: int) -> None:
    """`value` must be a list (nested `depth` deep) of JSON numbers that fit a float; no bools or strings."""
    if depth == 0:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(path, f"'{name}' must hold numbers, found {value!r:.80}")
        if isinstance(value, int) and abs(value) > 2**53:
            raise _bad(path, f"'{name}' holds an integer too large for a float ({len(str(value))} digits)")
        return
    if not isinstance(value, list):
        raise _bad(path, f"'{name}' must be a {'list of ' * (depth - 1)}list of numbers, found {value!r:.80}")
    for item in value:
        _check_numbers(path, name, item, depth - 1)
