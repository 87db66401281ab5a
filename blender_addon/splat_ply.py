"""Read a 3DGS splat PLY with numpy alone (no bpy, no plyfile): the add-on's Gaussian importer uses it.

Reads every variant of the 3DGS layout (FORMATS.md, "3DGS PLY"): ascii, binary little- or big-endian; float,
double or integer properties in any order; with or without normals; SH degree 0-3 (0, 9, 24 or 45 `f_rest_*`);
extra properties and extra elements (before or after `vertex`) are skipped. Values are decoded the way 3DGS
renders them: colour = 0.5 + C0 * f_dc, opacity = sigmoid(logit), scale = exp(log scale), rotation = the
normalised wxyz quaternion. `max_points` keeps an evenly spaced subset of a huge file without decoding the rest.

Every problem raises `ValueError` whose message starts with the file's path and says what is wrong.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SH_C0 = 0.28209479177387814
"""The degree-0 real spherical harmonic, Y_0^0 = 1 / (2 sqrt(pi)): colour = 0.5 + SH_C0 * f_dc."""
MAX_HEADER_BYTES = 64 * 1024
"""A header longer than this is refused (a 3DGS header with 45 f_rest properties is about 1.3 KB)."""
MAX_PROPERTIES = 1024
"""At most this many properties per element."""
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")
"""Properties every 3DGS `vertex` element has (normals and f_rest are optional)."""
REST_COUNT_TO_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}
"""Number of `f_rest_*` properties -> SH degree."""

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


@dataclass(frozen=True)
class PlyElement:
    """One `element` of a PLY header."""

    name: str
    """Element name (`vertex` holds the Gaussians)."""
    count: int
    """Number of rows."""
    properties: tuple[tuple[str, str, str | None], ...]
    """(name, numpy type code, list-count type code or None for a scalar) per property, in file order."""


@dataclass(frozen=True)
class PlyHeader:
    """A parsed PLY header."""

    format: str
    """'ascii', 'binary_little_endian' or 'binary_big_endian'."""
    elements: tuple[PlyElement, ...]
    """The elements in file order."""
    data_offset: int
    """Byte offset of the first data byte (just after `end_header\\n`)."""


@dataclass(frozen=True)
class SplatCloud:
    """Decoded 3DGS Gaussians (all float32)."""

    positions: np.ndarray
    """[N, 3] centres, in the file's coordinates."""
    colours: np.ndarray
    """[N, 3] linear RGB from the SH DC term, 0.5 + SH_C0 * f_dc (not clamped; renderers clamp at 0)."""
    opacity: np.ndarray
    """[N] in (0, 1), sigmoid of the stored logit."""
    scales: np.ndarray
    """[N, 3] standard deviations along the Gaussian's local axes, exp of the stored log scales."""
    rotations: np.ndarray
    """[N, 4] unit quaternions w, x, y, z (local -> file coordinates)."""
    f_rest: np.ndarray | None
    """[N, K-1, 3] higher SH coefficients (K = (degree + 1)^2), or None for degree 0."""
    sh_dc: np.ndarray
    """[N, 3] the stored f_dc_0..2."""
    total: int
    """Gaussians in the file (N < total when `max_points` kept a subset)."""

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def sh_degree(self) -> int:
        return 0 if self.f_rest is None else int(round(np.sqrt(self.f_rest.shape[1] + 1))) - 1


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: {problem}")


def parse_header(path: Path, head: bytes) -> PlyHeader:
    """Parse the header at the start of `head` (the file's first bytes, at most MAX_HEADER_BYTES + some)."""
    if not head.startswith(b"ply\n") and not head.startswith(b"ply\r\n"):
        raise _fail(path, f"is not a PLY file (it starts with {head[:16]!r}, not 'ply')")
    end = re.search(rb"end_header[ \t]*\r?\n", head[:MAX_HEADER_BYTES])
    if end is None:
        raise _fail(path, f"has no 'end_header' line in its first {MAX_HEADER_BYTES} bytes (truncated, or not a PLY)")
    try:
        lines = head[:end.start()].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError as error:
        raise _fail(path, f"has non-ASCII bytes in its header at byte {error.start}") from None
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str, str | None]]]] = []
    for number, line in enumerate(lines, start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS or words[2] != "1.0":
                raise _fail(path, f"header line {number}: unsupported format {line.strip()!r:.80} (expected "
                            f"'format ascii|binary_little_endian|binary_big_endian 1.0')")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not _NAME.fullmatch(words[1]) or not words[2].isdigit():
                raise _fail(path, f"header line {number}: bad element line {line.strip()!r:.80}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise _fail(path, f"header line {number}: property before any element")
            properties = elements[-1][2]
            if len(properties) >= MAX_PROPERTIES:
                raise _fail(path, f"element {elements[-1][0]!r} has more than {MAX_PROPERTIES} properties")
            if len(words) == 3 and words[1] in _TYPES and _NAME.fullmatch(words[2]):
                properties.append((words[2], _TYPES[words[1]], None))
            elif (len(words) == 5 and words[1] == "list" and words[2] in _TYPES and words[3] in _TYPES
                  and _NAME.fullmatch(words[4]) and _TYPES[words[2]][0] in "iu"):
                properties.append((words[4], _TYPES[words[3]], _TYPES[words[2]]))
            else:
                raise _fail(path, f"header line {number}: bad property line {line.strip()!r:.80} (types: "
                            f"{sorted(set(_TYPES))})")
            if [p[0] for p in properties].count(properties[-1][0]) > 1:
                raise _fail(path, f"element {elements[-1][0]!r} has property {properties[-1][0]!r} twice")
        else:
            raise _fail(path, f"header line {number}: unknown keyword {words[0]!r:.40}")
    if fmt is None:
        raise _fail(path, "has no 'format' line in its header")
    return PlyHeader(fmt, tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements), end.end())


def _check_vertex(path: Path, element: PlyElement) -> list[str]:
    """The f_rest names of a 3DGS vertex element, in coefficient order; raises on anything not 3DGS."""
    names = {name: count for name, _, count in element.properties}
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise _fail(path, f"is not a 3DGS splat file (a mesh or point cloud?): its 'vertex' element lacks {missing}; "
                    f"it has {sorted(names)[:20]}")
    rest = sorted(int(m.group(1)) for name in names if (m := re.fullmatch(r"f_rest_(\d+)", name)))
    if rest != list(range(len(rest))) or len(rest) not in REST_COUNT_TO_DEGREE:
        raise _fail(path, f"has {len(rest)} f_rest properties {rest[:4]}...; a 3DGS PLY has f_rest_0 .. f_rest_(M-1) "
                    f"with M in {sorted(REST_COUNT_TO_DEGREE)} (SH degree 0-3)")
    wanted = [*REQUIRED, *(f"f_rest_{i}" for i in rest)]
    listed = [name for name in wanted if names[name] is not None]
    if listed:
        raise _fail(path, f"properties {listed[:5]} are lists; 3DGS properties are scalars")
    return [f"f_rest_{i}" for i in rest]


def _binary_columns(path: Path, header: PlyHeader, raw: mmap.mmap | bytes, index: np.ndarray | None,
                    wanted: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """The `wanted` vertex columns (float64) of a binary file, and the vertex count."""
    order = _FORMATS[header.format]
    offset = header.data_offset
    for element in header.elements:
        if any(count is not None for _, _, count in element.properties):
            if element.name == "vertex":
                raise _fail(path, "its 'vertex' element has list properties; 3DGS properties are scalars")
            raise _fail(path, f"element {element.name!r} before 'vertex' has list properties; Keyface reads those "
                        "only after the vertex element")
        dtype = np.dtype([(name, order + code) for name, code, _ in element.properties])
        size = element.count * dtype.itemsize
        if offset + size > len(raw):
            raise _fail(path, f"is truncated: element {element.name!r} needs {size} bytes ({element.count} rows of "
                        f"{dtype.itemsize}) from byte {offset}, the file has {len(raw)} bytes")
        if element.name == "vertex":
            rows = np.frombuffer(raw, dtype=dtype, count=element.count, offset=offset)  # [N] records, no copy
            if index is not None:
                rows = rows[index]
            return {name: rows[name].astype(np.float64) for name in wanted}, element.count
        offset += size
    raise AssertionError("vertex element vanished")  # the caller checked it exists


def _ascii_columns(path: Path, header: PlyHeader, raw: mmap.mmap | bytes, index: np.ndarray | None,
                   wanted: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """The `wanted` vertex columns (float64) of an ascii file, and the vertex count."""
    try:
        text = raw[header.data_offset:].decode("ascii")
    except UnicodeDecodeError as error:
        raise _fail(path, f"has a non-ASCII byte in its ascii data at byte {header.data_offset + error.start}") \
            from None
    lines = text.splitlines()
    first = 0
    for element in header.elements:
        if element.name == "vertex":
            break
        first += element.count
    element = next(e for e in header.elements if e.name == "vertex")
    if any(count is not None for _, _, count in element.properties):
        raise _fail(path, "its 'vertex' element has list properties; 3DGS properties are scalars")
    body = lines[first:first + element.count]
    if len(body) < element.count:
        raise _fail(path, f"is truncated: the header declares {element.count} vertices, the file has "
                    f"{len(body)} vertex lines")
    if index is not None:
        body = [body[i] for i in index]
    width = len(element.properties)
    try:
        values = np.array(" ".join(body).split(), dtype=np.float64)
    except ValueError as error:
        raise _fail(path, f"has a vertex value that is not a number ({error})") from None
    if values.size != len(body) * width:
        raise _fail(path, f"has vertex lines with the wrong number of values ({values.size} values for {len(body)} "
                    f"lines of {width} properties)")
    table = values.reshape(len(body), width)  # [N, P]
    order = [name for name, _, _ in element.properties]
    return {name: table[:, order.index(name)] for name in wanted}, element.count


def subset_indices(total: int, max_points: int | None) -> np.ndarray | None:
    """Evenly spaced row indices keeping at most `max_points` of `total` (None: keep all)."""
    if max_points is None or max_points >= total:
        return None
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1 or None, got {max_points}")
    return np.linspace(0, total - 1, max_points).round().astype(np.int64)  # [max_points], strictly increasing


def read_splat_ply(path: str | os.PathLike, max_points: int | None = None) -> SplatCloud:
    """Read a 3DGS PLY into decoded arrays (see `SplatCloud`).

    Args:
        path: the `.ply` file.
        max_points: keep at most this many Gaussians, evenly spaced through the file (None: all).

    Raises:
        ValueError: the file is missing, unreadable, not a 3DGS PLY, truncated, or holds non-finite values or zero
            quaternions; the message names the file and the problem.
    """
    path = Path(path)
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int)):
        raise TypeError(f"max_points must be an int or None, got {type(max_points).__name__}")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be >= 1 or None, got {max_points}")
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with open(path, "rb") as stream:  # mapped, not read: max_points touches only the rows it keeps
            raw = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
    except OSError as error:
        raise _fail(path, f"cannot be read ({error.strerror})") from None
    header = parse_header(path, raw[:MAX_HEADER_BYTES + 64])
    vertex = [element for element in header.elements if element.name == "vertex"]
    if len(vertex) != 1:
        raise _fail(path, f"has {len(vertex)} 'vertex' elements (elements: {[e.name for e in header.elements]}); "
                    "a 3DGS PLY has one")
    rest_names = _check_vertex(path, vertex[0])
    index = subset_indices(vertex[0].count, max_points)
    read = _ascii_columns if header.format == "ascii" else _binary_columns
    columns, total = read(path, header, raw, index, [*REQUIRED, *rest_names])
    return _decode(path, columns, rest_names, total)


def _decode(path: Path, columns: dict[str, np.ndarray], rest_names: list[str], total: int) -> SplatCloud:
    for name in (*REQUIRED, *rest_names):
        bad = int((~np.isfinite(columns[name])).sum())
        if bad:
            raise _fail(path, f"property {name!r} has {bad} non-finite values")

    def stack(*names: str) -> np.ndarray:
        return np.stack([columns[name] for name in names], axis=1)  # [N, P] float64

    n = len(columns["x"])
    quats = stack("rot_0", "rot_1", "rot_2", "rot_3")  # [N, 4] wxyz
    norms = np.linalg.norm(quats, axis=1, keepdims=True)  # [N, 1]
    if (norms == 0).any():
        raise _fail(path, f"{int((norms == 0).sum())} Gaussians have a zero quaternion (rot_0..3)")
    sh_dc = stack("f_dc_0", "f_dc_1", "f_dc_2")  # [N, 3]
    f_rest = None
    if rest_names:
        k = len(rest_names) // 3 + 1
        f_rest = stack(*rest_names).reshape(n, 3, k - 1).transpose(0, 2, 1)  # [N, K-1, 3], stored channel-major
    with np.errstate(over="ignore"):  # exp overflow -> inf scale / saturated sigmoid, both meaningful
        opacity = 1.0 / (1.0 + np.exp(-columns["opacity"]))  # [N]
        scales = np.exp(stack("scale_0", "scale_1", "scale_2"))  # [N, 3]

    def f32(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float32)

    return SplatCloud(positions=f32(stack("x", "y", "z")), colours=f32(0.5 + SH_C0 * sh_dc), opacity=f32(opacity),
                      scales=f32(scales), rotations=f32(quats / norms), f_rest=None if f_rest is None else f32(f_rest),
                      sh_dc=f32(sh_dc), total=total)
