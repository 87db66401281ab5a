"""The head shell: a structured latitude/longitude grid shrink-wrapped onto the sculpted skin.

Rows run from a pole at the crown down to an open ring at the base of the neck, columns go around the
head (column NC/2 is the face's mid-line, column 0 the back of the head). Head rows are rays cast from a
point inside the skull; neck rows are horizontal rays from the neck's axis. Before casting, the grid's
angles are warped harmonically so that one row pair runs along the line where the lips meet and
another along each eye's lid margins; the faces between those rows are left out and their end vertices
welded, which opens the mouth slit and the two eye fissures with clean, grid-aligned borders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from . import anatomy as A
from . import sculpt
from .sdf import cast

N_COLUMNS = 100
N_HEAD_ROWS = 58       # rows below the crown pole, down to under the chin
N_NECK_ROWS = 9
COLUMN_LINEARITY = 0.45  # 1 = uniform columns; smaller packs columns onto the face
MOUTH_HALF_COLUMNS = 10  # columns from the mid-line to each mouth corner
WARP_MARGIN = (5, 4)     # rows, columns of grid around a feature that its warp may move


@dataclasses.dataclass(frozen=True)
class Shell:
    """The head shell mesh and the grid bookkeeping later stages need.

    Attributes:
        vertices: [V, 3] positions.
        faces: [F, 3] triangles (counter-clockwise seen from outside).
        uv: [R, C + 1, 2] texture coordinates of each grid node (column C repeats column 0 at u = 1).
        faces_uv: [F, 3] (row, column) pairs flattened as row * (C + 1) + column, for `uv`.
        mouth_upper: [M] vertices of the upper lip's inner border, right corner to left corner.
        mouth_lower: [M] the lower lip's, same order; both share the corner vertices.
        eye_upper: [2, K] upper lid margin vertices (left eye, right eye), medial to lateral.
        eye_lower: [2, K] lower lid margin vertices, same order; both share the canthi.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray
    mouth_upper: np.ndarray
    mouth_lower: np.ndarray
    eye_upper: np.ndarray
    eye_lower: np.ndarray


def column_angles(n: int = N_COLUMNS) -> np.ndarray:
    """Azimuth of each column, 0 at the face's mid-line, +-pi at the back, denser in front.  # [C]"""
    u = 2.0 * np.arange(n) / n - 1.0
    a = COLUMN_LINEARITY
    return np.pi * (a * u + (1.0 - a) * u ** 3)


def head_row_fractions(n: int = N_HEAD_ROWS) -> np.ndarray:
    """Fraction of the crown-to-chin sweep at each head row (pole excluded), denser over the face.  # [n]"""
    s = np.linspace(0.0, 1.0, 2001)
    density = 1.0 + 1.6 * np.exp(-((s - 0.68) / 0.2) ** 4)  # the face band
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(s))])
    targets = np.linspace(0.0, cumulative[-1], n + 1)[1:]
    return np.interp(targets, cumulative, s)


def sweep_end(theta: np.ndarray) -> np.ndarray:
    """Polar angle of the last head row: under the chin in front, at the nape behind.  # [C]"""
    return np.radians(150.0 + 11.0 * np.cos(theta))


def direction(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Unit ray direction from polar angle (from +Y) and azimuth (from +Z towards +X).  # [..., 3]"""
    return np.stack([np.sin(phi) * np.sin(theta), np.cos(phi), np.sin(phi) * np.cos(theta)], axis=-1)


def angles_of(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(polar, azimuth) of points seen from the head's ray origin.  # ([N], [N])"""
    d = points - A.HEAD_RAY_ORIGIN
    return np.arctan2(np.hypot(d[:, 0], d[:, 2]), d[:, 1]), np.arctan2(d[:, 0], d[:, 2])


def eye_margin_angles(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lid margins along the fissure, t = 0 medial to 1 lateral: (azimuth, upper, lower elevation).  # 3 x [K]"""
    psi = A.EYE_MEDIAL_PSI + (A.EYE_LATERAL_PSI - A.EYE_MEDIAL_PSI) * t
    base = A.EYE_MEDIAL_ETA + (A.EYE_LATERAL_ETA - A.EYE_MEDIAL_ETA) * t
    upper = base + (A.EYE_UPPER_ETA - 0.5 * (A.EYE_MEDIAL_ETA + A.EYE_LATERAL_ETA)) * np.sin(np.pi * t ** 0.78) ** 0.75
    lower = base + (A.EYE_LOWER_ETA - 0.5 * (A.EYE_MEDIAL_ETA + A.EYE_LATERAL_ETA)) * np.sin(np.pi * t ** 1.15) ** 0.9
    return psi, upper, lower


def eye_point(side: float, psi: np.ndarray, eta: np.ndarray, radius: float) -> np.ndarray:
    """Point on a sphere about an eye centre; side +1 left, -1 right; psi > 0 is lateral.  # [K, 3]"""
    center = A.EYE_CENTER * [side, 1.0, 1.0]
    offset = np.stack([side * np.sin(psi) * np.cos(eta), np.sin(eta), np.cos(psi) * np.cos(eta)], axis=-1)
    return center + radius * offset


def _nearest(values: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(values - target)))


def _mouth_pins(phi: np.ndarray) -> tuple[int, list[int], np.ndarray]:
    """Row of the upper lip border, mouth columns (right to left) and their crease points."""
    mid = N_COLUMNS // 2
    columns = list(range(mid - MOUTH_HALF_COLUMNS, mid + MOUTH_HALF_COLUMNS + 1))
    x = A.MOUTH_HALF_WIDTH * np.linspace(-1.0, 1.0, len(columns))
    origins = np.stack([x, np.full_like(x, A.MOUTH_Y), np.zeros_like(x)], axis=1)
    points = cast(sculpt.head, origins, np.tile([0.0, 0.0, 1.0], (len(x), 1)), 0.12)
    row = _nearest(phi[:, mid], angles_of(points[len(columns) // 2][None])[0][0])
    return row, columns, points


def _eye_pins(phi: np.ndarray, theta: np.ndarray, side: float):
    """Row of the upper lid margin, the eye's columns (medial to lateral), upper and lower margin points."""
    radius = A.EYE_RADIUS + A.LID_MARGIN_GAP
    corners = eye_point(side, np.array([A.EYE_MEDIAL_PSI, A.EYE_LATERAL_PSI]),
                        np.array([A.EYE_MEDIAL_ETA, A.EYE_LATERAL_ETA]), radius)
    _, corner_theta = angles_of(corners)
    first, last = _nearest(theta[0], corner_theta[0]), _nearest(theta[0], corner_theta[1])
    step = 1 if last > first else -1
    columns = list(range(first, last + step, step))
    psi, upper, lower = eye_margin_angles(np.linspace(0.0, 1.0, len(columns)))
    center_phi = angles_of(eye_point(side, np.zeros(1), np.zeros(1), radius))[0][0]
    row = _nearest(phi[:, columns[len(columns) // 2]], center_phi) - 1
    return row, columns, eye_point(side, psi, upper, radius), eye_point(side, psi, lower, radius)


def _harmonic_fill(values: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Solve the grid's Laplace equation on `free` nodes, every other node held at `values`.  # [R, C]

    Neighbours are the 4-connected grid nodes; columns wrap around.
    """
    rows, cols = values.shape
    ids = -np.ones(values.shape, dtype=np.int64)
    ids[free] = np.arange(int(free.sum()))
    r, c = np.nonzero(free)
    me = ids[r, c]
    diag = np.zeros(r.size)
    rhs = np.zeros(r.size)
    rows_idx, cols_idx = [], []
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        rn, cn = r + dr, (c + dc) % cols
        ok = (rn >= 0) & (rn < rows)
        diag[ok] += 1.0
        k = ids[rn[ok], cn[ok]]
        rows_idx.append(me[ok][k >= 0])
        cols_idx.append(k[k >= 0])
        np.add.at(rhs, me[ok][k < 0], values[rn[ok][k < 0], cn[ok][k < 0]])
    rows_idx, cols_idx = np.concatenate(rows_idx), np.concatenate(cols_idx)
    lap = scipy.sparse.csr_matrix((-np.ones(rows_idx.size), (rows_idx, cols_idx)), shape=(r.size, r.size))
    out = values.copy()
    out[free] = scipy.sparse.linalg.spsolve((lap + scipy.sparse.diags(diag)).tocsc(), rhs)
    return out


def _feature_targets(phi: np.ndarray, theta: np.ndarray):
    """Grid nodes pinned onto the mouth crease and the lid margins, and the welded node pairs.

    Returns (targets {(row, col): [3] point}, welds [((row, col), (row, col))], mouth, eyes) where mouth
    is (row, columns) and eyes is a list of (row, columns) for the left then the right eye.
    """
    targets, welds = {}, []
    row, columns, points = _mouth_pins(phi)
    for col, point in zip(columns, points):
        targets[(row, col)] = point
        targets[(row + 1, col)] = point
    welds += [((row, columns[0]), (row + 1, columns[0])), ((row, columns[-1]), (row + 1, columns[-1]))]
    mouth = (row, columns)
    eyes = []
    for side in (1.0, -1.0):
        row, columns, upper, lower = _eye_pins(phi, theta, side)
        for col, up, low in zip(columns, upper, lower):
            targets[(row, col)] = up
            targets[(row + 1, col)] = low
        welds += [((row, columns[0]), (row + 1, columns[0])), ((row, columns[-1]), (row + 1, columns[-1]))]
        eyes.append((row, columns))
    return targets, welds, mouth, eyes


def _warp_angles(phi: np.ndarray, theta: np.ndarray, targets: dict) -> tuple[np.ndarray, np.ndarray]:
    """Grid angles moved so pinned nodes look at their targets, neighbours following harmonically."""
    keys = list(targets)
    nodes = tuple(np.array(k) for k in zip(*keys))
    want_phi, want_theta = angles_of(np.array([targets[k] for k in keys]))
    pinned = np.zeros(phi.shape, dtype=bool)
    pinned[nodes] = True
    near = np.zeros(phi.shape, dtype=bool)
    dr, dc = WARP_MARGIN
    for r, c in keys:
        near[max(r - dr, 1):r + dr + 1, np.arange(c - dc, c + dc + 1) % phi.shape[1]] = True
    out = []
    for base, want in ((phi, want_phi), (theta, want_theta)):
        offset = np.zeros(phi.shape)
        offset[nodes] = want - base[nodes]
        out.append(base + _harmonic_fill(offset, near & ~pinned))
    return out[0], out[1]


def _neck_rows(last_row: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Neck rings below the last head row, cast horizontally from the neck's axis.  # [N_NECK_ROWS, C, 3]"""
    k = np.arange(1, N_NECK_ROWS + 1)[:, None] / N_NECK_ROWS
    y = last_row[None, :, 1] + k * (A.NECK_BOTTOM_Y - last_row[None, :, 1])  # [N, C]
    f = (y - A.NECK_AXIS_BOTTOM[1]) / (A.NECK_AXIS_TOP[1] - A.NECK_AXIS_BOTTOM[1])
    axis_z = A.NECK_AXIS_BOTTOM[2] + f * (A.NECK_AXIS_TOP[2] - A.NECK_AXIS_BOTTOM[2])
    origins = np.stack([np.zeros_like(y), y, axis_z], axis=-1).reshape(-1, 3)
    dirs = np.stack(np.broadcast_arrays(np.sin(theta), 0.0 * y, np.cos(theta)), axis=-1).reshape(-1, 3)
    return cast(sculpt.head, origins, dirs, 0.15).reshape(N_NECK_ROWS, -1, 3)


def _diagonal_down_right(row: int, col: int, cols: int) -> bool:
    """Which diagonal splits quad (row, col): mirror images of each other across the mid-line.

    Quads beside the two mirror lines (face front, back of the head) alternate by row, so vertices on
    those lines see no up/down bias in their normals.
    """
    if col < cols // 2:
        return not _diagonal_down_right(row, cols - 1 - col, cols)
    return row % 2 == 0 if col in (cols // 2, cols - 1) else True


def _grid_faces(index: np.ndarray, holes: set) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of the grid (pole fan + quads, mirror-symmetric diagonals) and their grid-node ids.

    `holes` holds the (row, col) of quads to leave out. Returns ([F, 3] vertex ids, [F, 3] uv node ids
    into the [R, C + 1] uv grid); triangles made degenerate by welding are dropped.
    """
    rows, cols = index.shape
    tris = []
    for c in range(cols):
        tris.append(((0, c), (1, c), (1, c + 1)))
    for r in range(1, rows - 1):
        for c in range(cols):
            if (r, c) in holes:
                continue
            a, b, cc, d = (r, c), (r, c + 1), (r + 1, c + 1), (r + 1, c)
            if _diagonal_down_right(r, c, cols):
                tris += [(a, cc, b), (a, d, cc)]
            else:
                tris += [(a, d, b), (b, d, cc)]
    nodes = np.array(tris)  # [F, 3, 2]
    uv_ids = nodes[..., 0] * (cols + 1) + nodes[..., 1]
    vid = index[nodes[..., 0], nodes[..., 1] % cols]
    keep = (vid[:, 0] != vid[:, 1]) & (vid[:, 1] != vid[:, 2]) & (vid[:, 0] != vid[:, 2])
    return vid[keep], uv_ids[keep]


def _grid_uv(rows: int, theta: np.ndarray) -> np.ndarray:
    """Texture coordinates of the grid: u around the head (face in the middle, enlarged), v down.  # [R, C + 1, 2]"""
    full = np.concatenate([theta, [np.pi]])
    weight = 1.0 + 1.5 * np.exp(-(full / 0.8) ** 2)
    u = np.concatenate([[0.0], np.cumsum(0.5 * (weight[1:] + weight[:-1]) * np.diff(full))])
    u /= u[-1]
    v = 1.0 - np.arange(rows) / (rows - 1)
    uv = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), axis=-1).astype(np.float64)
    uv[0, :-1, 0] = 0.5 * (u[:-1] + u[1:])  # the pole: one uv per fan triangle
    return uv


def build_shell() -> Shell:
    """Cast, warp and stitch the head shell."""
    theta_c = column_angles()
    phi = np.zeros((N_HEAD_ROWS + 1, N_COLUMNS))
    phi[1:] = head_row_fractions()[:, None] * sweep_end(theta_c)[None]
    theta = np.broadcast_to(theta_c, phi.shape).copy()
    targets, welds, mouth, eyes = _feature_targets(phi, theta)
    phi, theta = _warp_angles(phi, theta, targets)
    dirs = direction(phi, theta).reshape(-1, 3)
    head = cast(sculpt.head, np.tile(A.HEAD_RAY_ORIGIN, (dirs.shape[0], 1)), dirs, 0.25).reshape(*phi.shape, 3)
    for (r, c), point in targets.items():
        head[r, c] = point
    grid = np.concatenate([head, _neck_rows(head[-1], theta_c)], axis=0)  # [R, C, 3]
    rows = grid.shape[0]
    index = np.arange(rows * N_COLUMNS).reshape(rows, N_COLUMNS)
    index[0] = 0
    for keep, drop in welds:
        index[drop] = index[keep]
    holes = {(mouth[0], c) for c in mouth[1][:-1]}
    for row, columns in eyes:
        holes |= {(row, min(a, b)) for a, b in zip(columns[:-1], columns[1:])}
    faces, faces_uv = _grid_faces(index, holes)
    used, compact = np.unique(index, return_inverse=True)
    index = compact.reshape(index.shape)
    vertices = grid.reshape(-1, 3)[used]
    faces = np.searchsorted(used, faces)
    mouth_row, mouth_cols = mouth
    return Shell(
        vertices=vertices, faces=faces, uv=_grid_uv(rows, theta_c), faces_uv=faces_uv,
        mouth_upper=index[mouth_row, mouth_cols], mouth_lower=index[mouth_row + 1, mouth_cols],
        eye_upper=np.stack([index[r, cols] for r, cols in eyes]),
        eye_lower=np.stack([index[r + 1, cols] for r, cols in eyes]))
