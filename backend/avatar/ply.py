"""The standard 3DGS PLY: write it so every splat viewer opens it, read any 3DGS PLY as `StaticGaussians`.

Written: binary little-endian, one element `vertex`, float32 properties in this order:
`x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 … f_rest_{3(K-1)-1} opacity scale_0 scale_1 scale_2 rot_0 … rot_3`
(f_rest channel-major: all red coefficients, then green, then blue; logit opacity; log scales; wxyz
quaternion; zero normals), plus `binding_0` (GaussianAvatars' triangle index, as float32) only when asked.

Read: any PLY plyfile reads (ascii or binary, either endianness, float or double or integer properties) whose
`vertex` element has the 3DGS properties; the SH degree (0-3) follows from the `f_rest_*` count, other
properties and elements are ignored, quaternions are normalised (those already unit to float32 precision are
kept as stored, so files round-trip bit for bit). Anything else raises `GaussianPlyError`.
Binary files are memory-mapped while read (as 3DGS itself loads them) and copied before `read_ply` returns.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError

from backend.atomic import atomic_path

from .gaussians import StaticGaussians

PathLike = str | os.PathLike
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")
"""Properties a 3DGS PLY must have (normals and f_rest are optional)."""
_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}  # f_rest properties -> SH degree
_READ_ERRORS = (PlyParseError, ValueError, TypeError, KeyError, IndexError, EOFError, OSError, UnicodeDecodeError,
                MemoryError, OverflowError)


class GaussianPlyError(ValueError):
    """A file is not a readable 3DGS PLY; the message names the file and what is wrong or missing."""

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


def ply_property_names(sh_degree: int, binding: bool = False) -> list[str]:
    """The property names `write_ply` writes, in order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names + (["binding_0"] if binding else [])


def write_ply(path: PathLike, gaussians: StaticGaussians, *, binding: bool = False) -> Path:
    """Write `gaussians` as a standard 3DGS PLY, atomically.

    Args:
        path: the `.ply` file (parent folders are created).
        gaussians: what to write.
        binding: add the `binding_0` property (needs `gaussians.binding`).
    """
    if not isinstance(gaussians, StaticGaussians):
        raise TypeError(f"write_ply needs StaticGaussians, got {type(gaussians).__name__}")
    if binding and gaussians.binding is None:
        raise ValueError("binding=True but these Gaussians have no binding (triangle indices)")
    n = gaussians.n
    sh = gaussians.sh.detach().cpu().float()  # [N, K, 3]
    rest = sh[:, 1:].transpose(1, 2).reshape(n, 3 * (sh.shape[1] - 1))  # [N, 3 (K - 1)], channel-major
    columns = [gaussians.means, torch.zeros(n, 3), sh[:, 0], rest, gaussians.opacity_logits[:, None],
               gaussians.log_scales, gaussians.quats]
    if binding:
        columns.append(gaussians.binding[:, None])
    table = torch.cat([column.detach().cpu().float() for column in columns], dim=1).numpy()  # [N, P]
    names = ply_property_names(gaussians.sh_degree, binding)
    structured = np.ascontiguousarray(table, dtype="<f4").view([(name, "<f4") for name in names])[:, 0]  # [N]
    data = PlyData([PlyElement.describe(structured, "vertex")], text=False, byte_order="<")
    with atomic_path(path) as temp:
        with open(temp, "wb") as stream:
            data.write(stream)
    return Path(path)


def read_ply(path: PathLike) -> StaticGaussians:
    """Read a 3DGS PLY.

    Raises:
        GaussianPlyError: (a ValueError) the file is missing, unreadable, not a 3DGS PLY (e.g. a mesh), or
            holds non-finite values or zero quaternions; the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise GaussianPlyError(path, "file not found")
    try:
        with open(path, "rb") as stream:
            data = PlyData.read(stream, mmap="c")  # memory-mapped rows (checked against the file size), copied below
    except _READ_ERRORS as error:
        raise GaussianPlyError(path, f"cannot be read as a PLY file, it may be truncated or corrupt "
                               f"({type(error).__name__}: {error})") from None
    elements = [element.name for element in data.elements]
    if "vertex" not in elements:
        raise GaussianPlyError(path, f"has no 'vertex' element (it has {elements}), so it is not a 3DGS splat file")
    element = data["vertex"]
    properties = {prop.name: prop for prop in element.properties}
    table = element.data
    missing = [name for name in REQUIRED if name not in properties]
    if missing:
        raise GaussianPlyError(path, f"is not a 3DGS splat file (a mesh or point cloud?): the 'vertex' element "
                               f"lacks {missing}; it has {sorted(properties)}")
    rest = sorted((int(match.group(1)) for name in properties if (match := re.fullmatch(r"f_rest_(\d+)", name))))
    if rest != list(range(len(rest))) or len(rest) not in _REST_COUNTS:
        raise GaussianPlyError(path, f"has f_rest properties {_ranges(rest)}; a 3DGS PLY has f_rest_0 .. "
                               "f_rest_{M-1} with M in (0, 9, 24, 45) for SH degree 0-3")
    wanted = [*REQUIRED, *(f"f_rest_{i}" for i in rest)] + (["binding_0"] if "binding_0" in properties else [])
    listed = [name for name in wanted if isinstance(properties[name], PlyListProperty)]
    if listed:
        raise GaussianPlyError(path, f"properties {listed} are lists; 3DGS properties are scalars")
    columns = {}
    for name in wanted:
        with np.errstate(invalid="ignore"):  # non-finite values are reported just below
            column = np.array(table[name], dtype=np.float64)
        bad = int((~np.isfinite(column)).sum())
        if bad:
            raise GaussianPlyError(path, f"property '{name}' has {bad} non-finite values")
        columns[name] = column

    def stack(*names: str) -> np.ndarray:
        return np.array([columns[name] for name in names]).T.reshape(len(table), len(names))  # [N, P]

    quats = stack("rot_0", "rot_1", "rot_2", "rot_3")
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    if (norms == 0).any():
        raise GaussianPlyError(path, f"{int((norms == 0).sum())} Gaussians have a zero quaternion (rot_0..3)")
    k = len(rest) // 3 + 1
    rest_values = stack(*(f"f_rest_{i}" for i in rest)).reshape(len(table), 3, k - 1).transpose(0, 2, 1)
    sh = np.concatenate([stack("f_dc_0", "f_dc_1", "f_dc_2")[:, None], rest_values], axis=1)  # [N, K, 3]
    binding = None
    if "binding_0" in columns:
        values = columns["binding_0"]
        if (values < 0).any() or (values != np.round(values)).any() or (values >= 2**31).any():
            raise GaussianPlyError(path, "property 'binding_0' must hold triangle indices (integers >= 0)")
        binding = torch.from_numpy(values.astype(np.int64))

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    quats = np.where(np.abs(norms - 1.0) > 1e-6, quats / norms, quats)  # unit already: kept bit for bit
    return StaticGaussians(means=tensor(stack("x", "y", "z")), quats=tensor(quats),
                           log_scales=tensor(stack("scale_0", "scale_1", "scale_2")),
                           opacity_logits=tensor(columns["opacity"]), sh=tensor(sh), binding=binding)


def _ranges(indices: list[int]) -> str:
    return f"{len(indices)} of them ({indices[:3]}{' …' if len(indices) > 3 else ''})"
