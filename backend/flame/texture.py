"""A head's UV layout and albedo texture, read from the head's `.npz` when it carries them.

Keys (all optional): `vt [T, 2]` + `ft [F, 3]` (OBJ-style per-corner UVs, as FLAME's texture space ships
them), or `uv [V, 2]` (one UV per vertex), and `texture [H, W, 3]` uint8 (row 0 at the top, v = 1).
Keyface's built-in head carries `vt`, `ft` and a procedural `texture`; official FLAME `.pkl` files carry none.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np

from .io import FlameFileError
from .model import FlameModel

_HINT = ("A head's UVs are the arrays 'vt' [T, 2] with 'ft' [F, 3], or 'uv' [V, 2], and its albedo is 'texture' "
         "[H, W, 3] uint8, all in the head's .npz.")


@dataclasses.dataclass(frozen=True, eq=False)
class HeadTexture:
    """UV layout (OBJ convention: (0, 0) bottom-left, v up) and optional albedo of a head mesh.

    Attributes:
        vt: [T, 2] float64 texture coordinates.
        ft: [F, 3] int64 rows of `vt` at each triangle corner (same order as the head's faces).
        image: [H, W, 3] uint8 albedo, row 0 at the top, or None.
    """

    vt: np.ndarray
    ft: np.ndarray
    image: np.ndarray | None

    def face_uvs(self) -> np.ndarray:
        """[F, 3, 2] UVs of each triangle's corners."""
        return self.vt[self.ft]


def read_head_texture(head: FlameModel, path: str | os.PathLike | None = None) -> HeadTexture | None:
    """The UVs and texture stored in `path` (default: the file `head` was loaded from), or None without UVs.

    Only `.npz` archives (told by their first bytes) can carry them; any other file gives None.

    Raises:
        FlameFileError: (a ValueError) the file has UV or texture arrays of the wrong shape or type.
    """
    if not isinstance(head, FlameModel):
        raise TypeError(f"head must be a FlameModel, got {type(head).__name__}")
    path = Path(head.source if path is None else path)
    if not path.is_file():
        return None
    with open(path, "rb") as stream:
        if stream.read(4) != b"PK\x03\x04":
            return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("vt", "ft", "uv", "texture") if key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise FlameFileError(path, f"cannot be read as an .npz archive ({type(error).__name__}: {error})",
                             _HINT) from None
    n_faces, n_vertices = head.faces.shape[0], head.n_vertices
    if "vt" in arrays or "ft" in arrays:
        vt = _floats(path, arrays, "vt", (None, 2))
        ft = _indices(path, arrays, "ft", (n_faces, 3), vt.shape[0])
    elif "uv" in arrays:
        vt = _floats(path, arrays, "uv", (n_vertices, 2))
        ft = head.faces.cpu().numpy().astype(np.int64)
    else:
        return None
    image = arrays.get("texture")
    if image is not None and (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape):
        raise FlameFileError(path, f"key 'texture' must be [H, W, 3] uint8, got {image.dtype} {list(image.shape)}",
                             _HINT)
    return HeadTexture(vt=vt, ft=ft, image=image)


def _floats(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    value = _shaped(path, arrays, key, shape)
    if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
        raise FlameFileError(path, f"key '{key}' must hold finite numbers, got {value.dtype}", _HINT)
    return value.astype(np.float64)


def _indices(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int, int], limit: int) -> np.ndarray:
    value = _shaped(path, arrays, key, shape)
    if value.dtype.kind not in "iu" or (value.size and (value.min() < 0 or value.max() >= limit)):
        raise FlameFileError(path, f"key '{key}' must hold integer indices in [0, {limit}), got {value.dtype} "
                             f"in [{value.min() if value.size else '-'}, {value.max() if value.size else '-'}]", _HINT)
    return value.astype(np.int64)


def _shaped(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    if key not in arrays:
        raise FlameFileError(path, f"key '{key}' is missing (expected with the other UV key)", _HINT)
    value = arrays[key]
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        want = "[" + ", ".join("*" if n is None else str(n) for n in shape) + "]"
        raise FlameFileError(path, f"key '{key}' has shape {list(value.shape)}, expected {want}", _HINT)
    return value
