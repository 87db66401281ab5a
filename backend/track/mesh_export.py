"""Write FLAME meshes as OBJ, PLY or GLB (one mesh, or one file per frame of a sequence), via trimesh.

UVs follow the OBJ convention (v = 0 at the bottom row of the texture); textures are images with row 0
at the top. FLAME's UV layout has seams (more UV coordinates than vertices, one UV index per face
corner): pass those as `uv` [U, 2] with `uv_faces` [F, 3] and the mesh is split along the seams (each
distinct (vertex, uv) pair becomes one written vertex, so the written vertex order differs). Per-vertex
UVs ([V, 2], no `uv_faces`) keep the vertex order.

PLY carries UVs (`s`, `t` vertex properties) but has no standard way to reference a texture, so a
texture with `.ply` is refused. Every file is written atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import trimesh
from trimesh.exchange.obj import export_obj
from trimesh.visual.material import SimpleMaterial

FORMATS = ("obj", "ply", "glb")
"""File formats (suffixes without the dot) this module writes."""


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How the written mesh is built from the input: which input vertex each written vertex copies."""

    source: np.ndarray
    """[V'] input vertex index of each written vertex."""
    faces: np.ndarray
    """[F, 3] faces indexing the written vertices."""
    uv: np.ndarray | None
    """[V', 2] UV of each written vertex, or None."""


def export_mesh(vertices: np.ndarray, faces: np.ndarray, path: str | os.PathLike[str], uv: np.ndarray | None = None,
                uv_faces: np.ndarray | None = None, texture: np.ndarray | None = None) -> Path:
    """Write one mesh; the format comes from the suffix of `path` (.obj, .ply or .glb).

    Args:
        vertices: [V, 3] positions.
        faces: [F, 3] vertex indices (integers in [0, V)).
        path: the file to write; an OBJ with a texture also gets `<stem>.mtl` and `<stem>.png` beside it.
        uv: [V, 2] per-vertex UVs, or [U, 2] UV coordinates indexed by `uv_faces`.
        uv_faces: [F, 3] UV indices per face corner (integers in [0, U)), or None for per-vertex UVs.
        texture: [H, W, 3|4] uint8 image (row 0 at the top); needs `uv`.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown suffix, bad shapes or values, or a texture with .ply.
        TypeError: non-integer face indices or a non-uint8 texture.
    """
    path = Path(path)
    fmt = _format(path.suffix.lstrip(".").lower())
    vertices = _vertices(vertices)
    layout = _layout(faces, uv, uv_faces, len(vertices), texture, fmt)
    stem = _safe_name(path.stem)
    material = _material(texture, stem)
    for name, data in _encode(vertices, layout, material, fmt, f"{stem}.mtl").items():
        _write_atomic(path if name is None else path.with_name(name), data)
    return path


def export_mesh_sequence(vertices: np.ndarray, faces: np.ndarray, folder: str | os.PathLike[str], fmt: str = "obj",
                         uv: np.ndarray | None = None, uv_faces: np.ndarray | None = None,
                         texture: np.ndarray | None = None, first_index: int = 0) -> list[Path]:
    """Write one file per frame, `<folder>/<first_index + t, 5 digits>.<fmt>`, sharing faces, UVs and texture.

    Args:
        vertices: [T, V, 3] positions per frame.
        faces: [F, 3] vertex indices shared by every frame.
        folder: created if missing.
        fmt: "obj", "ply" or "glb".
        uv, uv_faces, texture: as in `export_mesh`; an OBJ sequence writes `material.mtl` and
            `material.png` once and every frame refers to them.
        first_index: the number of frame 0's file (e.g. the Blender frame it belongs to).

    Returns:
        [T] the paths written, in frame order.

    Raises:
        ValueError / TypeError: as in `export_mesh`, or vertices not [T, V, 3] with T >= 1.
    """
    fmt = _format(fmt)
    frames = np.asarray(vertices)
    if frames.ndim != 3 or frames.shape[0] < 1 or frames.shape[2] != 3:
        raise ValueError(f"vertices must have shape [T, V, 3] with T >= 1, got {list(frames.shape)}")
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)) or first_index < 0:
        raise ValueError(f"first_index must be a non-negative integer, got {first_index!r}")
    layout = _layout(faces, uv, uv_faces, frames.shape[1], texture, fmt)
    material = _material(texture, "material")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        path = folder / f"{first_index + t:05d}.{fmt}"
        for name, data in _encode(_vertices(frame), layout, material, fmt, "material.mtl").items():
            if name is None:
                _write_atomic(path, data)
            elif t == 0:  # the material and texture are the same for every frame
                _write_atomic(folder / name, data)
        paths.append(path)
    return paths


def _format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unsupported mesh format {fmt!r}; expected one of {list(FORMATS)}")
    return fmt


def _vertices(vertices: Any) -> np.ndarray:
    """[V, 3] finite float64 positions."""
    array = np.asarray(vertices)
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"vertices must be a non-empty real [V, 3] array, got {array.dtype} {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"vertices have NaN/inf at rows {np.unique(np.argwhere(~np.isfinite(array))[:, 0])[:5]}")
    return array.astype(np.float64)


def _indices(name: str, value: Any, count: int, what: str) -> np.ndarray:
    """[F, 3] integer indices in [0, count)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"{name} must have shape [F, 3] with F >= 1, got {list(array.shape)}")
    if array.min() < 0 or array.max() >= count:
        raise ValueError(f"{name} index out of range: min {array.min()}, max {array.max()}, {count} {what}")
    return array.astype(np.int64)


def _layout(faces: Any, uv: Any, uv_faces: Any, vertex_count: int, texture: Any, fmt: str) -> _Layout:
    """Validate faces / UVs / texture and decide which vertices to write (splitting UV seams)."""
    faces = _indices("faces", faces, vertex_count, "vertices")
    if texture is not None and uv is None:
        raise ValueError("a texture needs uv coordinates")
    if texture is not None and fmt == "ply":
        raise ValueError("PLY has no standard way to reference a texture; use .obj or .glb")
    if uv is None:
        if uv_faces is not None:
            raise ValueError("uv_faces given without uv")
        return _Layout(np.arange(vertex_count), faces, None)
    uv = np.asarray(uv)
    if uv.dtype.kind not in "iuf" or uv.ndim != 2 or uv.shape[1] != 2 or not np.all(np.isfinite(uv)):
        raise ValueError(f"uv must be a finite real [U, 2] array, got {uv.dtype} {list(uv.shape)}")
    if uv_faces is None:
        if len(uv) != vertex_count:
            raise ValueError(f"per-vertex uv must have one row per vertex ({vertex_count}), got {len(uv)}; "
                             "pass uv_faces for UVs indexed per face corner")
        return _Layout(np.arange(vertex_count), faces, uv.astype(np.float64))
    uv_faces = _indices("uv_faces", uv_faces, len(uv), "uv coordinates")
    if uv_faces.shape != faces.shape:
        raise ValueError(f"uv_faces must match faces {list(faces.shape)}, got {list(uv_faces.shape)}")
    corners = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], axis=1)  # [3F, 2] (vertex, uv) per corner
    pairs, inverse = np.unique(corners, axis=0, return_inverse=True)  # [V', 2], [3F]
    return _Layout(pairs[:, 0], inverse.reshape(faces.shape), uv[pairs[:, 1]].astype(np.float64))


def _material(texture: Any, name: str) -> SimpleMaterial | None:
    """A trimesh material holding `texture` ([H, W, 3|4] uint8), or None."""
    if texture is None:
        return None
    image = np.asarray(texture)
    if image.dtype != np.uint8:
        raise TypeError(f"texture must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape:
        raise ValueError(f"texture must have shape [H, W, 3|4], got {list(image.shape)}")
    return SimpleMaterial(image=PIL.Image.fromarray(image), name=name)


def _encode(vertices: np.ndarray, layout: _Layout, material: SimpleMaterial | None, fmt: str,
            mtl_name: str) -> dict[str | None, bytes]:
    """The bytes of the mesh file (key None) and of its side files (key: file name)."""
    visual = None
    if layout.uv is not None:
        visual = trimesh.visual.TextureVisuals(uv=layout.uv, material=material)
    mesh = trimesh.Trimesh(vertices[layout.source], layout.faces, visual=visual, process=False)
    if fmt != "obj":
        return {None: mesh.export(file_type=fmt)}
    text, side_files = export_obj(mesh, return_texture=True, mtl_name=mtl_name, include_normals=False)
    return {None: text.encode("utf-8"), **side_files}


def _safe_name(stem: str) -> str:
    """A file stem usable as an OBJ material / texture name (no spaces or odd characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "mesh"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary sibling of `path`, then rename it into place."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
        done = True
    finally:
        if not done:
            os.unlink(temp)
