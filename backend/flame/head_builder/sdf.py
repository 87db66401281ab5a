"""Signed distance primitives and the smooth blend operators the head surface is sculpted with.

All functions take points `p` as `[N, 3]` float64 arrays and return `[N]` signed distances (negative
inside). They are (close to) Euclidean near the surface, which is all the shrink-wrapping needs.
"""

from __future__ import annotations

import numpy as np


def ellipsoid(p: np.ndarray, center, radii) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (Quilez's bound).  # [N]"""
    q = (p - np.asarray(center)) / np.asarray(radii)  # [N, 3]
    k0 = np.linalg.norm(q, axis=1)
    k1 = np.linalg.norm(q / np.asarray(radii), axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def sphere(p: np.ndarray, center, radius: float) -> np.ndarray:
    """Signed distance to a sphere.  # [N]"""
    return np.linalg.norm(p - np.asarray(center), axis=1) - radius


def round_cone(p: np.ndarray, a, b, ra: float, rb: float) -> np.ndarray:
    """Signed distance to a capsule whose radius goes linearly from `ra` at `a` to `rb` at `b`.  # [N]"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)  # [N]
    closest = a + t[:, None] * ab
    return np.linalg.norm(p - closest, axis=1) - (ra + (rb - ra) * t)


def elliptic_cylinder(p: np.ndarray, bottom, top, radius_x: float, radius_z: float) -> np.ndarray:
    """Approximate distance to an infinite elliptic cylinder along the (nearly vertical) line bottom-top.  # [N]"""
    bottom, top = np.asarray(bottom, dtype=np.float64), np.asarray(top, dtype=np.float64)
    t = (p[:, 1] - bottom[1]) / (top[1] - bottom[1])  # [N]
    axis = bottom + t[:, None] * (top - bottom)
    q = np.stack([(p[:, 0] - axis[:, 0]) / radius_x, (p[:, 2] - axis[:, 2]) / radius_z], axis=1)
    k0 = np.linalg.norm(q, axis=1)
    k1 = np.linalg.norm(q / np.array([radius_x, radius_z]), axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: union with a fillet of size `k`.  # [N]"""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def smooth_subtract(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Remove `b` from `a` with a fillet of size `k`.  # [N]"""
    return -smooth_union(-a, b, k)


def cast(field, origins: np.ndarray, directions: np.ndarray, t_max: float, step: float = 7.5e-4) -> np.ndarray:
    """First point where rays leave the solid (field goes from < 0 to >= 0), origins inside.  # [N, 3]

    Rays march in fixed steps, then the crossing is refined by bisection. A ray that never leaves
    returns its end point.
    """
    n = origins.shape[0]
    lo = np.zeros(n)
    hi = np.full(n, t_max)
    found = np.zeros(n, dtype=bool)
    t = 0.0
    while t < t_max and not found.all():
        t_next = t + step
        todo = ~found
        inside = field(origins[todo] + t_next * directions[todo]) >= 0.0
        idx = np.flatnonzero(todo)[inside]
        lo[idx], hi[idx], found[idx] = t, t_next, True
        t = t_next
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        outside = field(origins + mid[:, None] * directions) >= 0.0
        hi = np.where(outside, mid, hi)
        lo = np.where(outside, lo, mid)
    return origins + hi[:, None] * directions
