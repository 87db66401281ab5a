"""Smooth displacement fields the shape and expression bases are written with.

A basis component is a function `Frame -> [N, 3]` displacement. The frame carries positions, normals
and per-vertex context (which part, which side of the lips, eye-centred angles), so the same function
can be evaluated on the template's vertices or on single anchor points (the eye centres, which move
the eyeballs rigidly, and the ear roots, which carry the ears).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import anatomy as A
from .shell import eye_margin_angles


@dataclasses.dataclass(frozen=True)
class Frame:
    """Where a field is evaluated.

    Attributes:
        p: [N, 3] rest positions.
        n: [N, 3] unit outward normals.
        skin: [N] 1 on the skin (head shell), else 0.
        ear: [N] 1 on the ears, else 0.
        above: [N] 1 on and above the upper lip's border, 0 on and below the lower lip's, smooth elsewhere.
    """

    p: np.ndarray
    n: np.ndarray
    skin: np.ndarray
    ear: np.ndarray
    above: np.ndarray

    @classmethod
    def points(cls, p: np.ndarray) -> Frame:
        """A frame of loose anchor points (normals face forward, counted as skin above the lips)."""
        n = np.tile([0.0, 0.0, 1.0], (p.shape[0], 1))
        one = np.ones(p.shape[0])
        return cls(p=p, n=n, skin=one, ear=0.0 * one, above=one)

    @property
    def x(self) -> np.ndarray:
        return self.p[:, 0]

    @property
    def y(self) -> np.ndarray:
        return self.p[:, 1]

    @property
    def z(self) -> np.ndarray:
        return self.p[:, 2]


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1 (either order), cubic between.  # [N]"""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blob(f: Frame, center, radii, mirror: bool = True, plateau: float = 0.0) -> np.ndarray:
    """Compact smooth weight: 1 within `plateau` (fraction of the radii) of `center`, 0 outside the ellipsoid.

    With `mirror`, the blob is repeated on the right side (evaluated at |x|).  # [N]
    """
    p = f.p.copy()
    if mirror:
        p[:, 0] = np.abs(p[:, 0])
    s = np.sqrt((((p - np.asarray(center)) / np.asarray(radii)) ** 2).sum(axis=1))
    t = np.clip((s - plateau) / (1.0 - plateau), 0.0, 1.0)
    return (1.0 - t * t) ** 2


def along(f: Frame, vector) -> np.ndarray:
    """A constant vector field.  # [N, 3]"""
    return np.broadcast_to(np.asarray(vector, dtype=np.float64), f.p.shape)


def outward_x(f: Frame) -> np.ndarray:
    """Unit lateral direction: +X on the left, -X on the right, 0 on the mid-line.  # [N, 3]"""
    out = np.zeros_like(f.p)
    out[:, 0] = np.sign(f.x)
    return out


def scaled(f: Frame, center, factors) -> np.ndarray:
    """Displacement of scaling about `center` by (1 + factors) per axis.  # [N, 3]"""
    return (f.p - np.asarray(center)) * np.asarray(factors)


def mirrored_scale(f: Frame, center, factors) -> np.ndarray:
    """`scaled` about a left-side centre and its mirror image, each on its own side.  # [N, 3]"""
    c = np.broadcast_to(np.asarray(center, dtype=np.float64), f.p.shape).copy()
    c[:, 0] *= np.where(f.x < 0.0, -1.0, 1.0)
    return (f.p - c) * np.asarray(factors)


def rotated(f: Frame, center, axis, angle: float) -> np.ndarray:
    """Displacement of a small rotation (linearised) by `angle` about `axis` through `center`.  # [N, 3]"""
    axis = np.asarray(axis, dtype=np.float64)
    return angle * np.cross(axis / np.linalg.norm(axis), f.p - np.asarray(center))


def eye_angles(f: Frame, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in one eye's frame: (azimuth psi, + lateral; elevation eta; distance from the eye centre)."""
    d = f.p - A.EYE_CENTER * [sign, 1.0, 1.0]
    r = np.linalg.norm(d, axis=1)
    psi = np.arctan2(sign * d[:, 0], d[:, 2])
    eta = np.arcsin(np.clip(d[:, 1] / np.maximum(r, 1e-9), -1.0, 1.0))
    return psi, eta, r


def lid_rotation(f: Frame, sign: float, upper_to: float, lower_to: float, reach: float = np.radians(28.0)
                 ) -> np.ndarray:
    """Slide the lids over one eyeball (sign +1 left, -1 right) by rotating about its horizontal axis.

    `upper_to` / `lower_to` give where each margin goes, as a fraction of the way to the closure line
    (1 closes the eye, negative opens it wider). Motion fades out `reach` radians beyond the margins
    and with distance from the eyeball.  # [N, 3]
    """
    psi, eta, r = eye_angles(f, sign)
    t = (psi - A.EYE_MEDIAL_PSI) / (A.EYE_LATERAL_PSI - A.EYE_MEDIAL_PSI)
    _, upper, lower = eye_margin_angles(np.clip(t, 0.0, 1.0))
    closed = lower + 0.33 * (upper - lower)
    inside_fissure = smoothstep(-0.12, 0.0, t) * smoothstep(1.12, 1.0, t)
    near = smoothstep(A.EYE_RADIUS + 0.009, A.EYE_RADIUS + 0.004, r) * f.skin * inside_fissure
    above = smoothstep(-0.02, 0.0, eta - upper) * smoothstep(reach, 0.0, eta - upper)
    below = smoothstep(0.02, 0.0, eta - lower) * smoothstep(-reach, 0.0, eta - lower)
    angle = near * (above * upper_to * (closed - upper) + below * lower_to * (closed - lower))
    center = A.EYE_CENTER * [sign, 1.0, 1.0]
    # a rotation by -angle about +X raises the elevation of points in front of the eye by angle
    return -angle[:, None] * np.cross(np.array([1.0, 0.0, 0.0]), f.p - center)
