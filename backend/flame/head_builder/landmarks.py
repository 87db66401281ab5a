"""The 68 iBUG landmarks embedded on the built-in head, and the MediaPipe face-mesh points they match.

iBUG order: 0-16 jaw line (subject's right ear to left ear via the chin), 17-21 right brow and 22-26
left brow (each lateral to medial on the right, medial to lateral on the left), 27-30 nose bridge to
tip, 31-35 nose base right to left, 36-41 right eye and 42-47 left eye (each from the outer/inner corner
along the upper lid, then back along the lower lid), 48-59 outer lip contour from the right corner over
the upper lip, 60-67 inner lip contour. "Right" is the subject's right (-X).

Eye corners, lid points and inner-lip points sit exactly on the lid margins and the lips' inner
borders; the other points are where rays aimed at anatomical targets (brow line, lip outline, nose
profile, jaw contour) meet the skin.

`MEDIAPIPE_INDICES` gives, per landmark, the MediaPipe 468-point face-mesh index at the same anatomical
place. The choice follows MediaPipe's published contour groups (face oval, brows, eyes, lips, nose) and
was checked by running MediaPipe's face mesh on renders of this head (see BUILTIN_HEAD.md).
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from .assemble import Head

MEDIAPIPE_INDICES = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,  # jaw line
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,                                    # brows
    168, 197, 5, 4, 98, 97, 2, 326, 327,                                              # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,                        # eyes
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,                               # outer lips
    78, 81, 13, 311, 308, 402, 14, 178,                                               # inner lips
)
# Jaw line rays: azimuth 90 deg * sign(u) |u|^JAW_SWING for u in [-1, 1] (right ear, chin, left ear), height
# JAW_TOP - JAW_DROP sin(gamma). Calibrated so that, seen from the front, the points fall on the face contour
# MediaPipe's face mesh finds on renders of this head (mean error 4% of the eye-corner distance).
JAW_SWING = 0.4
JAW_TOP = 0.020
JAW_DROP = 0.090


def ray_hit(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, direction: np.ndarray
            ) -> tuple[int, np.ndarray]:
    """First triangle a ray meets (Moller-Trumbore) and the hit's barycentric coordinates.  # (id, [3])"""
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    h = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - tri[:, 0]
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = inv * (q @ direction)
    t = inv * np.einsum("ij,ij->i", e2, q)
    hit = ok & (u >= 0.0) & (v >= 0.0) & (u + v <= 1.0) & (t > 0.0)
    if not hit.any():
        raise ValueError(f"landmark ray from {origin.tolist()} along {direction.tolist()} misses the head")
    k = int(np.flatnonzero(hit)[np.argmin(t[hit])])
    return k, np.array([1.0 - u[k] - v[k], u[k], v[k]])


def _on_polyline(vertices: np.ndarray, faces: np.ndarray, chain: np.ndarray, t: float, interior: np.ndarray
                 ) -> tuple[int, np.ndarray]:
    """The point at arc-length fraction t of a vertex chain, on the face that holds that edge and an
    `interior` vertex side (the lid or lip the chain borders).  # (id, [3])"""
    pts = vertices[chain]
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    target = t * cum[-1]
    i = min(int(np.searchsorted(cum, target, side="right")) - 1, chain.size - 2)
    s = (target - cum[i]) / seg[i]
    a, b = chain[i], chain[i + 1]
    for k, face in enumerate(faces):
        if a in face and b in face and interior[face].all():
            bary = np.zeros(3)
            bary[list(face).index(a)] = 1.0 - s
            bary[list(face).index(b)] = s
            return k, bary
    raise ValueError(f"no face holds the landmark edge ({a}, {b})")


def _from_front(head: Head, skin_faces: np.ndarray, x: float, y: float, tilt: float = 0.0
                ) -> tuple[int, np.ndarray]:
    """Where a ray from in front (tilted up by `tilt`) through (x, y) meets the skin."""
    direction = np.array([0.0, tilt, -1.0]) / np.hypot(1.0, tilt)
    origin = np.array([x, y, 0.06]) - 0.15 * direction
    k, bary = ray_hit(head.vertices, head.faces[skin_faces], origin, direction)
    return int(skin_faces[k]), bary


def _jaw_line(head: Head, skin_faces: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """17 points from under the right ear, round the jaw's edge and chin, to under the left ear."""
    out = []
    for k in range(17):
        gamma = np.pi * k / 16.0
        u = 2.0 * k / 16.0 - 1.0
        azimuth = 0.5 * np.pi * np.sign(u) * np.abs(u) ** JAW_SWING
        origin = np.array([0.0, JAW_TOP - JAW_DROP * np.sin(gamma), -0.025])
        direction = np.array([np.sin(azimuth), -0.1 * np.sin(gamma) ** 4, np.cos(azimuth)])
        f, bary = ray_hit(head.vertices, head.faces[skin_faces], origin, direction / np.linalg.norm(direction))
        out.append((int(skin_faces[f]), bary))
    return out


def embed(head: Head) -> tuple[np.ndarray, np.ndarray]:
    """The 68 landmarks as ([68] face ids, [68, 3] barycentric coordinates)."""
    v, faces = head.vertices, head.faces
    skin = head.part("skin")
    skin_faces = np.flatnonzero(skin[faces].all(axis=1))
    above = v[:, 1] >= A.MOUTH_Y
    points = _jaw_line(head, skin_faces)
    for sign in (-1.0, 1.0):  # right brow lateral->medial, then left brow medial->lateral
        for t in (np.linspace(1.0, 0.0, 5) if sign < 0 else np.linspace(0.0, 1.0, 5)):
            x, y, _ = A.brow_line(np.array(t))
            points.append(_from_front(head, skin_faces, sign * float(x), float(y)))
    for y in (0.0205, 0.0120, 0.0035, A.NOSE_TIP[1]):
        points.append(_from_front(head, skin_faces, 0.0, float(y)))
    for x, y in ((-0.0105, -0.0140), (-0.0055, -0.0165), (0.0, -0.0180), (0.0055, -0.0165), (0.0105, -0.0140)):
        points.append(_from_front(head, skin_faces, x, y, tilt=0.35))
    upper, lower = head.shell.eye_upper, head.shell.eye_lower  # [2, K]: left eye, right eye; medial -> lateral
    lids = skin.copy()
    for eye, order in ((1, "right"), (0, "left")):
        fractions = ((1.0, "u"), (2 / 3, "u"), (1 / 3, "u"), (0.0, "u"), (1 / 3, "l"), (2 / 3, "l")) \
            if order == "right" else ((0.0, "u"), (1 / 3, "u"), (2 / 3, "u"), (1.0, "u"), (2 / 3, "l"), (1 / 3, "l"))
        for t, lid in fractions:
            chain = upper[eye] if lid == "u" else lower[eye]
            points.append(_on_polyline(v, faces, chain, t, lids))
    hw = A.MOUTH_HALF_WIDTH
    top_x = (-0.6 * hw, -0.25 * hw, 0.0, 0.25 * hw, 0.6 * hw)
    bottom_x = (0.6 * hw, 0.25 * hw, 0.0, -0.25 * hw, -0.6 * hw)
    mouth_up, mouth_low = head.shell.mouth_upper, head.shell.mouth_lower
    points.append(_on_polyline(v, faces, mouth_up, 0.0, skin & above))
    for x in top_x:
        points.append(_from_front(head, skin_faces, x, float(A.lip_outline(np.array(x))[0])))
    points.append(_on_polyline(v, faces, mouth_up, 1.0, skin & above))
    for x in bottom_x:
        points.append(_from_front(head, skin_faces, x, float(A.lip_outline(np.array(x))[1])))
    below = skin & ~above
    below[mouth_low] = True
    inner = ((mouth_up, 0.0, skin & above), (mouth_up, 0.25, skin & above), (mouth_up, 0.5, skin & above),
             (mouth_up, 0.75, skin & above), (mouth_up, 1.0, skin & above), (mouth_low, 0.75, below),
             (mouth_low, 0.5, below), (mouth_low, 0.25, below))
    for chain, t, side in inner:
        points.append(_on_polyline(v, faces, chain, t, side))
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])
