"""Read the files tracked datasets are made of, and validate what is in them.

Every failure becomes a `TrackedImportError` naming the file and the key. The exception tuples below
are what numpy / zipfile / json raise on damaged bytes; they are caught only around the read itself.
"""

from __future__ import annotations

import json
import math
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, MutableMapping

import numpy as np

from shared_proto.errors import ProtocolError
from shared_proto.types import Camera, FlameParams, FlameSequence

from .result import TrackedImportError

# What np.load and reading an npz member raise on truncated / corrupted archives (a damaged .npy
# header is parsed with `ast.literal_eval` after `tokenize`, hence SyntaxError and TokenError; zipfile raises
# RuntimeError for a member flagged as encrypted).
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
               struct.error, MemoryError, SyntaxError, tokenize.TokenError, RuntimeError)

MAX_OFFSET = 1.0
"""Largest |static offset| in metres (VHAP's per-vertex offsets are millimetres)."""
MAX_PIXELS = 1e7
"""Largest |intrinsic| in pixels a camera may have (float32 holds it; anything larger is garbage)."""

Dim = int | str
"""A dimension in a shape spec: a fixed size, or a name bound to the first size seen (e.g. "T")."""


def check_fps(fps: Any) -> float:
    """Validate an `fps` argument (a public-boundary check: the caller's value, not a file's)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0.0 < fps <= 1000.0:
        raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
    return float(fps)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path` (the top level must be an object)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise TrackedImportError(path, None, "file not found") from None
    except OSError as error:
        raise TrackedImportError(path, None, f"cannot read the file: {error}") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TrackedImportError(path, None, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise TrackedImportError(path, None, f"the top level must be a JSON object, got {type(data).__name__}")
    return data


def read_npz(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays of `keys` that the archive holds (absent keys are left out; never unpickles)."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise TrackedImportError(path, None, "file not found") from None
    except OSError as error:
        raise TrackedImportError(path, None, f"cannot read the file: {error}") from None
    with file:
        try:
            archive = np.load(file, allow_pickle=False)
        except _NPZ_ERRORS as error:
            raise TrackedImportError(path, None, f"not a readable .npz archive: {error}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise TrackedImportError(path, None, "is a single .npy array, expected an .npz archive of named arrays")
        with archive:
            result = {}
            for key in [key for key in keys if key in archive.files]:
                try:
                    result[key] = archive[key]
                except _NPZ_ERRORS as error:
                    raise TrackedImportError(path, key, f"cannot read the array: {error}") from None
    return result


def read_text_floats(path: Path) -> np.ndarray:
    """[N] the whitespace-separated numbers in a text file (e.g. INSTA's `flame/exp/<id>.txt`)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise TrackedImportError(path, None, "file not found") from None
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise TrackedImportError(path, None, f"cannot read the file as ASCII text: {error}") from None
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as error:
        raise TrackedImportError(path, None, f"must hold only numbers: {error}") from None
    return check_array(path, "values", values, ("N",))


def check_array(path: Path, key: str, value: Any, shape: tuple[Dim, ...],
                dims: MutableMapping[str, int] | None = None, leading_one: bool = False,
                limit: float = 1e30) -> np.ndarray:
    """Validate `value` as a finite real array of `shape` with |values| <= `limit` and return it as float64.

    Args:
        shape: sizes, or names bound in `dims` the first time they are seen and checked afterwards.
        dims: named sizes shared between calls (e.g. {"T": 120}); a fresh dict when None.
        leading_one: also accept (and drop) an extra leading axis of size 1, as in [1, 3] for [3].
        limit: the largest magnitude that makes sense (the default keeps float32 casts finite).
    """
    dims = {} if dims is None else dims
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise TrackedImportError(path, key, f"must be a numeric array: {error}") from None
    if array.dtype.kind not in "iuf":
        raise TrackedImportError(path, key, f"must be numeric, got dtype {array.dtype}")
    if leading_one and array.ndim == len(shape) + 1 and array.shape[0] == 1:
        array = array[0]
    expected = [dims.get(d, d) if isinstance(d, str) else d for d in shape]
    if array.ndim != len(shape) or any(isinstance(e, int) and e != got for e, got in zip(expected, array.shape)):
        want = ", ".join(f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d) for d in shape)
        raise TrackedImportError(path, key, f"has shape {list(array.shape)}, expected [{want}]")
    for name, got in zip(shape, array.shape):
        if isinstance(name, str):
            dims.setdefault(name, got)
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise TrackedImportError(path, key, f"has {len(bad)} NaN/inf values, first at index {list(index)}: "
                                            f"{array[index]}")
    if array.size and np.abs(array).max() > limit:
        index = np.unravel_index(np.argmax(np.abs(array)), array.shape)
        raise TrackedImportError(path, key, f"is out of range (|value| <= {limit:g}): {array[index]:.6g} "
                                            f"at index {[int(i) for i in index]}")
    return array


def get(path: Path, mapping: Any, key: str, where: str | None = None) -> Any:
    """`mapping[key]`, with an error naming the key when `mapping` is not a dict or lacks it."""
    label = key if where is None else f"{where}.{key}"
    if not isinstance(mapping, dict):
        raise TrackedImportError(path, where, f"must be an object, got {type(mapping).__name__}")
    if key not in mapping:
        raise TrackedImportError(path, label, f"missing (present: {sorted(map(str, mapping))[:20]})")
    return mapping[key]


def number(path: Path, key: str, value: Any, integer: bool = False) -> float:
    """A finite JSON/array number (bools refused); with `integer`, one with no fractional part."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TrackedImportError(path, key, f"must be a number, got {value!r:.80}")
    if isinstance(value, int) and abs(value) > 2**53:
        raise TrackedImportError(path, key, "is too large (|value| > 2**53)")
    if not math.isfinite(value):
        raise TrackedImportError(path, key, f"must be finite, got {value}")
    if integer and value != int(value):
        raise TrackedImportError(path, key, f"must be a whole number, got {value}")
    return float(value)


def relative_path(path: Path, key: str, value: Any, root: Path) -> Path:
    """`root / value` for a path string stored in a dataset file."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise TrackedImportError(path, key, f"must be a non-empty path string, got {value!r:.80}")
    return root / value


def camera(path: Path, key: str, K: np.ndarray, world_to_camera: np.ndarray, width: float, height: float) -> Camera:
    """A validated Keyface `Camera`; a rejected value names the file and the key it came from."""
    if not np.abs(K).max() < MAX_PIXELS:
        raise TrackedImportError(path, key, f"intrinsics out of range (|value| < {MAX_PIXELS:g} px): {K.tolist()}")
    try:
        return Camera(K=K, world_to_camera=world_to_camera, width=int(width), height=int(height))
    except ProtocolError as error:
        raise TrackedImportError(path, key, f"not a valid camera: {error.message}") from None


def sequence(path: Path, fields: dict[str, Any], row_paths: list[Path] | None = None) -> FlameSequence:
    """A validated `FlameSequence` built from `fields`.

    A rejected value names `path`, or with `row_paths` ([T] the file each frame came from) the file of
    the first frame whose values are rejected.
    """
    try:
        return FlameSequence(**fields)
    except ProtocolError as error:
        culprit = path if row_paths is None else _first_bad_row(fields, row_paths) or path
        raise TrackedImportError(culprit, None, f"not a valid FLAME sequence: {error.message}") from None


def _first_bad_row(fields: dict[str, Any], row_paths: list[Path]) -> Path | None:
    per_frame = [name for name in ("expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids")
                 if fields.get(name) is not None]
    for i, row_path in enumerate(row_paths):
        try:
            FlameParams(shape=fields["shape"], **{name: fields[name][i] for name in per_frame})
        except ProtocolError:
            return row_path
    return None
