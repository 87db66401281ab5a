"""The pieces added to the head shell: eyeballs, ears and the mouth bag.

Each builder returns a `Part`: new vertices, triangles (counter-clockwise seen from the air), and its own
texture coordinates in [0, 1]^2 that `atlas.py` later places in the shared texture.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import anatomy as A

EYE_RING_DEGREES = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 55.0, 72.0, 90.0, 112.0, 135.0, 158.0)
EYE_EQUATOR_RING = 9  # index of the 90-degree ring in the vertex list (after the front pole)
EYE_SEGMENTS = 16
CORNEA_BULGE = 0.00035   # extra radius at the front of the eye
CORNEA_DEGREES = 30.0
EAR_RINGS = (0.16, 0.34, 0.50, 0.64, 0.77, 0.89, 1.0)
EAR_SEGMENTS = 24
# Mouth bag rings behind the lips: (x scale, vertical spread, depth) in metres. Upper half shown (the
# lower half mirrors it): inner lip, gum line, the teeth's cutting edge, behind the teeth, palate, throat.
MOUTH_RINGS = ((0.98, 0.0045, 0.0030), (0.95, 0.0075, 0.0055), (0.93, 0.0008, 0.0070),
               (0.88, 0.0050, 0.0130), (0.74, 0.0120, 0.0260), (0.48, 0.0090, 0.0380))
MOUTH_TEETH_RINGS = (2.0, 3.4)  # the teeth run from the gum ring to just behind their cutting edge
MOUTH_BACK_DEPTH = 0.0430


@dataclasses.dataclass(frozen=True)
class Part:
    """A mesh piece with its own texture coordinates.

    Attributes:
        vertices: [N, 3] new vertex positions.
        faces: [F, 3] triangles in assembled-mesh ids (`base + k` is vertices[k]; smaller ids are shared).
        uv: [T, 2] texture coordinates in the part's own unit square.
        faces_uv: [F, 3] indices into `uv`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray


def _strip(inner: np.ndarray, outer: np.ndarray, closed: bool = True) -> np.ndarray:
    """Triangles joining two rings (or open rows) of ids of equal length.  # [2K, 3]"""
    a = np.arange(inner.size if closed else inner.size - 1)
    b = (a + 1) % inner.size
    return np.concatenate([np.stack([inner[a], outer[a], outer[b]], 1), np.stack([inner[a], outer[b], inner[b]], 1)])


def _fan(center, ring: np.ndarray) -> np.ndarray:
    """Triangles from a centre id (or one id per triangle) to a closed ring.  # [K, 3]"""
    return np.stack([np.broadcast_to(center, ring.shape), ring, np.roll(ring, -1)], 1)


def _flip(faces: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = faces.copy()
    out[mask] = out[mask][:, [0, 2, 1]]
    return out


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3]


def eyeball(side: float, base: int) -> Part:
    """UV-sphere eyeball whose front pole looks along +Z; side +1 left, -1 right.

    Texture: a radial map about the pupil (radius 0.5 (alpha / pi)^0.6, enlarging the iris), the front pole
    at (0.5, 0.5), the back pole on the circle of radius 0.5 (one texture vertex per back-fan triangle).
    """
    alpha = np.radians(np.array(EYE_RING_DEGREES))  # [K] angle from the front pole
    beta = 2.0 * np.pi * np.arange(EYE_SEGMENTS) / EYE_SEGMENTS  # [S]
    radius = A.EYE_RADIUS + CORNEA_BULGE * np.clip(1.0 - (alpha / np.radians(CORNEA_DEGREES)) ** 2, 0.0, None)
    a, b = np.meshgrid(alpha, beta, indexing="ij")  # [K, S]
    rings_xyz = radius[:, None, None] * np.stack([np.sin(a) * np.cos(b), np.sin(a) * np.sin(b), np.cos(a)], -1)
    center = A.EYE_CENTER * [side, 1.0, 1.0]
    vertices = np.concatenate([center[None] + [0.0, 0.0, A.EYE_RADIUS + CORNEA_BULGE],
                               center + rings_xyz.reshape(-1, 3), center[None] - [0.0, 0.0, A.EYE_RADIUS]])
    rings = [1 + k * EYE_SEGMENTS + np.arange(EYE_SEGMENTS) for k in range(alpha.size)]
    back = vertices.shape[0] - 1
    body = np.concatenate([_fan(0, rings[0])] + [_strip(rings[k], rings[k + 1]) for k in range(alpha.size - 1)])
    back_fan = _fan(back, rings[-1])
    faces = np.concatenate([body, back_fan])
    faces_uv = np.concatenate([body, _fan(back + np.arange(EYE_SEGMENTS), rings[-1])])
    inward = np.einsum("ij,ij->i", _normals(vertices, faces), vertices[faces].mean(1) - center) < 0.0
    half = np.pi / EYE_SEGMENTS
    uv = np.concatenate([[[0.5, 0.5]],
                         (0.5 + 0.5 * ((a / np.pi) ** 0.6)[..., None] * np.stack([np.cos(b), np.sin(b)], -1)
                          ).reshape(-1, 2),
                         0.5 + 0.5 * np.stack([np.cos(beta + half), np.sin(beta + half)], 1)])
    return Part(vertices=vertices, faces=_flip(faces, inward) + base, uv=uv, faces_uv=_flip(faces_uv, inward))


def _ear_frame() -> np.ndarray:
    """Rows: up (long axis), back (in the ear plane), out (the ear's front normal), for the left ear.  # [3, 3]"""
    out = np.array([np.cos(A.EAR_FLARE), 0.0, np.sin(A.EAR_FLARE)])
    up = np.array([0.0, np.cos(A.EAR_TILT), -np.sin(A.EAR_TILT)])
    up -= (up @ out) * out
    up /= np.linalg.norm(up)
    return np.stack([up, np.cross(up, out), out])


def ear_relief(r: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Height of the ear's front above its plane; r in [0, 1] to the rim, beta from the top towards the back."""
    upper_back = np.clip(np.cos(beta - 0.9) * 1.4, 0.0, 1.0)        # where the helix and antihelix run
    helix = 0.0036 * np.sin(np.pi * np.clip((r - 0.76) / 0.24, 0.0, 1.0)) ** 0.6 * np.clip(
        np.cos(beta - 0.6) + 0.6, 0.0, 1.0)
    antihelix = 0.0024 * np.exp(-((r - 0.56) / 0.09) ** 2) * upper_back
    concha = -0.0065 * np.clip(1.0 - (r / 0.52) ** 2, 0.0, None) * (0.6 + 0.4 * np.clip(-np.sin(beta), 0.0, 1.0))
    lobe = 0.0022 * np.clip(-np.cos(beta), 0.0, 1.0) ** 3 * (1.0 - r ** 2)
    tragus = 0.0035 * np.exp(-((r - 0.62) / 0.12) ** 2 - ((beta - 4.45) / 0.35) ** 2)
    return 0.0015 * (1.0 - r ** 4) + helix + antihelix + concha + lobe + tragus


def _ear_outline(beta: np.ndarray) -> np.ndarray:
    """In-plane (up, back) coordinates of the rim; the lobe is narrower than the top.  # [S, 2]"""
    lower = np.clip(-np.cos(beta), 0.0, 1.0)
    up = 0.5 * A.EAR_HEIGHT * np.cos(beta) * (1.0 - 0.05 * lower)
    back = 0.5 * A.EAR_WIDTH * np.sin(beta) * (1.0 - 0.35 * lower)
    return np.stack([up, back], -1)


def _ear_point(frame: np.ndarray, plane: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Left-ear points from in-plane (up, back) coordinates and a height along the ear's normal.  # [..., 3]"""
    return A.EAR_CENTER + plane[..., :1] * frame[0] + plane[..., 1:] * frame[1] + height[..., None] * frame[2]


def ear(side: float, base: int) -> Part:
    """A closed ear: a relief front and a smooth back meeting at the rim; side +1 left, -1 right.

    Texture: the front in the left half of the tile, the back in the right half, both planar.
    """
    radii = np.array(EAR_RINGS)
    beta = 2.0 * np.pi * np.arange(EAR_SEGMENTS) / EAR_SEGMENTS
    frame = _ear_frame()
    plane = radii[:, None, None] * _ear_outline(beta)[None]  # [K, S, 2]
    r, b = np.meshgrid(radii, beta, indexing="ij")
    front_h = ear_relief(r, b)
    back_h = -0.012 * np.clip(1.0 - r ** 2, 0.0, None) ** 0.7 * (1.0 + 0.4 * np.clip(-np.sin(b), 0.0, 1.0))
    front = _ear_point(frame, plane, front_h).reshape(-1, 3)
    back = _ear_point(frame, plane[:-1], back_h[:-1]).reshape(-1, 3)
    middle = np.zeros((1, 2))
    vertices = np.concatenate([_ear_point(frame, middle, ear_relief(np.zeros(1), np.zeros(1))), front, back,
                               _ear_point(frame, middle, np.array([-0.012]))])
    K, S = radii.size, EAR_SEGMENTS
    front_rings = [1 + k * S + np.arange(S) for k in range(K)]
    back_rings = [1 + K * S + k * S + np.arange(S) for k in range(K - 1)] + [front_rings[-1]]
    last = vertices.shape[0] - 1
    front_faces = np.concatenate([_fan(0, front_rings[0])] +
                                 [_strip(front_rings[k], front_rings[k + 1]) for k in range(K - 1)])
    back_faces = np.concatenate([_fan(last, back_rings[0])] +
                                [_strip(back_rings[k], back_rings[k + 1]) for k in range(K - 1)])
    faces = np.concatenate([front_faces, back_faces])
    # uv: front nodes 0..K*S, back nodes (with their own copy of the rim) after them
    back_uv_rings = [1 + K * S + k * S + np.arange(S) for k in range(K)]
    faces_uv = np.concatenate([front_faces, np.concatenate([_fan(1 + 2 * K * S, back_uv_rings[0])] + [
        _strip(back_uv_rings[k], back_uv_rings[k + 1]) for k in range(K - 1)])])
    tile = plane / np.array([0.5 * A.EAR_HEIGHT, 0.5 * A.EAR_WIDTH])  # [K, S, 2] in [-1, 1]
    front_uv = np.stack([0.25 + 0.24 * tile[..., 1], 0.5 + 0.48 * tile[..., 0]], -1).reshape(-1, 2)
    back_uv = np.stack([0.75 - 0.24 * tile[..., 1], 0.5 + 0.48 * tile[..., 0]], -1).reshape(-1, 2)
    uv = np.concatenate([[[0.25, 0.5]], front_uv, back_uv, [[0.75, 0.5]]])
    # orient: front faces towards +out, back faces away, judged on the ear plane
    flat = np.stack([vertices @ frame[0], vertices @ frame[1]], -1)  # [N, 2]
    tri = flat[faces]
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    is_front = np.arange(faces.shape[0]) < front_faces.shape[0]
    # (up, back, out) is right-handed: seen from +out, (up, back) appear mirrored, so front faces need area < 0
    wrong = np.where(is_front, area > 0.0, area < 0.0)
    faces, faces_uv = _flip(faces, wrong), _flip(faces_uv, wrong)
    if side < 0:
        vertices = vertices * [-1.0, 1.0, 1.0]
        faces, faces_uv = faces[:, [0, 2, 1]], faces_uv[:, [0, 2, 1]]
    return Part(vertices=vertices, faces=faces + base, uv=uv, faces_uv=faces_uv)


def mouth_loop(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The lips' inner border as one closed loop: upper lip right to left, lower lip back.  # [L]"""
    return np.concatenate([upper, lower[-2:0:-1]])


def mouth_bag(shell_vertices: np.ndarray, upper: np.ndarray, lower: np.ndarray, base: int) -> Part:
    """The inner mouth: rings rolling in from the lips to a closed pouch (upper half roof, lower half floor).

    Texture: u along the loop (with a seam copy), v from the lips (0) to the back of the pouch (1).
    """
    loop = mouth_loop(upper, lower)
    rim = shell_vertices[loop]  # [L, 3]
    m = upper.size
    sign = np.concatenate([np.ones(m), -np.ones(m - 2)])
    spread = np.sqrt(np.clip(1.0 - (rim[:, 0] / A.MOUTH_HALF_WIDTH) ** 2, 0.0, None)) * sign  # [L]
    rings = [np.stack([rim[:, 0] * sx, A.MOUTH_Y + spread * sy, rim[:, 2] - depth], -1)
             for sx, sy, depth in MOUTH_RINGS]
    back = np.array([0.0, A.MOUTH_Y, rim[:, 2].max() - MOUTH_BACK_DEPTH])
    vertices = np.concatenate(rings + [back[None]])
    n, k = loop.size, len(MOUTH_RINGS)
    ids = [loop] + [base + j * n + np.arange(n) for j in range(k)]
    uv_ids = [j * (n + 1) + np.arange(n + 1) for j in range(k + 1)]  # each row repeats its first node
    a = np.arange(n)
    cap, cap_uv = base + k * n, (k + 1) * (n + 1) + a
    faces, faces_uv = [], []
    for j in range(k):
        faces += [np.stack([ids[j][a], ids[j + 1][a], ids[j + 1][(a + 1) % n]], 1),
                  np.stack([ids[j][a], ids[j + 1][(a + 1) % n], ids[j][(a + 1) % n]], 1)]
        faces_uv += [np.stack([uv_ids[j][a], uv_ids[j + 1][a], uv_ids[j + 1][a + 1]], 1),
                     np.stack([uv_ids[j][a], uv_ids[j + 1][a + 1], uv_ids[j][a + 1]], 1)]
    faces.append(np.stack([np.full(n, cap), ids[k][(a + 1) % n], ids[k][a]], 1))
    faces_uv.append(np.stack([cap_uv, uv_ids[k][a + 1], uv_ids[k][a]], 1))
    u = np.arange(n + 1) / n
    v = np.arange(k + 1) / (k + 1)
    uv = np.concatenate([np.stack(np.meshgrid(u, v), -1).reshape(-1, 2),
                         np.stack([(a + 0.5) / n, np.ones(n)], -1)])
    return Part(vertices=vertices, faces=np.concatenate(faces), uv=uv, faces_uv=np.concatenate(faces_uv))
