"""The head-and-neck skin as one smooth signed distance field.

The face is a height field `z = F(x, y)` (forehead, orbits, cheeks, nose, lips, chin: everything seen
from the front), bounded and blended into volumes for the skull, jaw and neck. Bilateral volumes are
modelled once on the left (+X) and mirrored by evaluating them at `|x|`. Ears and eyeballs are separate
meshes (`parts.py`); the lids here are spherical shells laid over the eyeballs.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from . import anatomy as A
from .sdf import ellipsoid, elliptic_cylinder, round_cone, smooth_subtract, smooth_union, sphere

# Mid-line depth of the face without nose and lips, z(y).
_FACE_DEPTH = PchipInterpolator([-0.095, -0.080, -0.060, -0.040, -0.020, 0.000, 0.020, 0.040, 0.060, 0.075,
                                 0.090, 0.105],
                                [0.030, 0.047, 0.052, 0.054, 0.053, 0.049, 0.044, 0.047, 0.046, 0.041,
                                 0.032, 0.018])
# How fast the face falls back towards the sides, z -= c(y) x^2 + q(y) x^4.
_FACE_CURVE = PchipInterpolator([-0.09, -0.06, -0.04, -0.02, 0.00, 0.03, 0.06, 0.087, 0.11],
                                [10.0, 10.0, 12.0, 8.0, 5.5, 5.0, 5.5, 7.5, 10.0])
# Half-width of the face region seen from the front (the jaw line tapers to the chin), x(y).
_FACE_HALF_WIDTH = PchipInterpolator([-0.095, -0.085, -0.070, -0.050, -0.020, 0.050, 0.090, 0.120],
                                     [0.008, 0.021, 0.036, 0.048, 0.056, 0.058, 0.050, 0.044])
_FACE_QUARTIC = PchipInterpolator([-0.09, -0.04, 0.00, 0.06], [900.0, 1400.0, 1100.0, 900.0])
# Nose ridge height above the face and its half-width, as functions of y.
_NOSE_HEIGHT = PchipInterpolator([-0.0230, -0.0190, -0.0150, -0.0100, -0.0040, 0.0000, 0.0150, 0.0270, 0.0330],
                                 [0.0000, 0.0030, 0.0105, 0.0185, 0.0220, 0.0205, 0.0105, 0.0015, 0.0000])
_NOSE_HALF_WIDTH = PchipInterpolator([-0.023, -0.012, 0.000, 0.015, 0.033],
                                     [0.0105, 0.0115, 0.0090, 0.0072, 0.0068])
# Lip protrusion at the mid-line, as a function of y (the crease between the lips is carved separately).
_LIP_HEIGHT = PchipInterpolator([-0.0590, -0.0565, -0.0535, -0.0490, -0.0450, -0.0415, -0.0380, -0.0340, -0.0310,
                                 -0.0295, -0.0260],
                                [0.0000, 0.0008, 0.0040, 0.0062, 0.0050, 0.0025, 0.0050, 0.0055, 0.0035,
                                 0.0022, 0.0000])


def _bump(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Smooth compact bump, 1 at (cx, cy) falling to 0 at the ellipse of radii (rx, ry).  # [N]"""
    s = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    return np.where(s < 1.0, (1.0 - s) ** 2, 0.0)


def face_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth z of the face surface at (x, y), everything included but the lids.  # [N]"""
    ax = np.abs(x)
    z = _FACE_DEPTH(y) - _FACE_CURVE(y) * x ** 2 - _FACE_QUARTIC(y) * x ** 4
    ex, ey = A.EYE_CENTER[0], A.EYE_CENTER[1]
    z += 0.0030 * _bump(ax, y, 0.030, 0.040, 0.024, 0.008)            # brow ridge
    z -= 0.0080 * _bump(ax, y, ex + 0.001, ey, 0.0200, 0.0150)          # orbit
    z -= 0.0070 * _bump(ax, y, ex - 0.001, ey + 0.0070, 0.0175, 0.0100)  # upper-lid sulcus
    z += 0.0030 * _bump(ax, y, 0.047, 0.006, 0.016, 0.011)            # cheekbone
    z += 0.0025 * _bump(ax, y, 0.033, -0.018, 0.016, 0.018)           # cheek
    z -= 0.0012 * _bump(ax, y, 0.026, -0.030, 0.006, 0.016)           # nasolabial fold
    yn = np.clip(y, -0.023, 0.033)
    z += _NOSE_HEIGHT(yn) * np.exp(-2.0 * (x / _NOSE_HALF_WIDTH(yn)) ** 2)
    z += 0.0060 * _bump(ax, y, 0.0125, -0.0105, 0.0075, 0.0070)       # alae
    s2 = np.clip((ax / (A.MOUTH_HALF_WIDTH + 0.001)) ** 2, 0.0, 1.0)
    y_lip = A.MOUTH_Y + (y - A.MOUTH_Y) / (1.0 - 0.6 * s2)  # the lips thin towards the corners
    z += _LIP_HEIGHT(np.clip(y_lip, -0.059, -0.026)) * (1.0 - s2) ** 1.2
    z -= 0.0020 * _bump(ax, y, 0.0, -0.0615, 0.014, 0.0045)           # labiomental fold
    z += 0.0030 * _bump(ax, y, 0.0, -0.0740, 0.016, 0.012)            # chin point
    return z


def face(p: np.ndarray) -> np.ndarray:
    """The face height field as a solid, bounded to the front of the head.  # [N]"""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    h = 2.5e-4
    f = face_height(x, y)
    gx = (face_height(x + h, y) - face_height(x - h, y)) / (2 * h)
    gy = (face_height(x, y + h) - face_height(x, y - h)) / (2 * h)
    d = (z - f) / np.sqrt(1.0 + gx ** 2 + gy ** 2)
    half_width = _FACE_HALF_WIDTH(np.clip(y, -0.095, 0.12))
    sides = (np.hypot(x / half_width, (z + 0.010) / 0.090) - 1.0) * half_width
    under_chin = -0.956 * (y + 0.090) - 0.294 * (z - 0.035)
    d = -smooth_union(-d, -sides, 0.015)
    d = -smooth_union(-d, -under_chin, 0.012)
    d = -smooth_union(-d, -(y - 0.110), 0.015)
    return -smooth_union(-d, -(-0.015 - z), 0.015)  # nothing behind the cheeks


def cranium(p: np.ndarray) -> np.ndarray:
    """Skull vault, widened at the cheekbones and cut away below the brow where the face takes over.  # [N]"""
    q = _mirrored(p)
    d = ellipsoid(p, [0.0, 0.035, -0.042], [0.0745, 0.092, 0.092])
    d = smooth_union(d, ellipsoid(p, [0.0, 0.000, -0.022], [0.067, 0.040, 0.062]), 0.008)  # zygomatic arches
    d = smooth_subtract(d, ellipsoid(p, [0.0, -0.020, 0.050], [0.065, 0.052, 0.045]), 0.02)  # face
    return smooth_subtract(d, ellipsoid(q, [0.086, 0.032, 0.010], [0.018, 0.028, 0.026]), 0.02)  # temples


def jaw(p: np.ndarray) -> np.ndarray:
    """Mandible sides and masseters, joining the face to the neck below the ears.  # [N]"""
    q = _mirrored(p)
    d = round_cone(q, [0.046, -0.060, -0.032], [0.028, -0.072, 0.008], 0.013, 0.013)
    return smooth_union(d, ellipsoid(q, [0.050, -0.032, -0.030], [0.017, 0.036, 0.032]), 0.02)


def neck(p: np.ndarray) -> np.ndarray:
    """Neck column with the top of the trapezius behind it.  # [N]"""
    d = elliptic_cylinder(p, A.NECK_AXIS_BOTTOM, A.NECK_AXIS_TOP, 0.059, 0.062)
    d = -smooth_union(-d, -(p[:, 1] + 0.030), 0.02)  # the column ends inside the skull base
    d = smooth_union(d, ellipsoid(p, [0.0, -0.225, -0.095], [0.105, 0.050, 0.065]), 0.035)  # trapezius
    return smooth_union(d, ellipsoid(p, [0.0, -0.120, -0.010], [0.009, 0.012, 0.008]), 0.008)  # larynx


def lids(p: np.ndarray) -> np.ndarray:
    """Lid skin: a shell just outside each eyeball.  # [N]"""
    return sphere(_mirrored(p), A.EYE_CENTER, A.EYE_RADIUS + A.LID_THICKNESS)


def head(p: np.ndarray) -> np.ndarray:
    """The whole skin surface (head, face and neck) as one field.  # [N]"""
    q = _mirrored(p)
    d = smooth_union(cranium(p), face(p), 0.015)
    d = smooth_union(d, jaw(p), 0.02)
    d = smooth_union(d, neck(p), 0.03)
    d = smooth_union(d, lids(p), 0.0035)
    d = smooth_subtract(d, ellipsoid(q, [0.0068, -0.0150, 0.0610], [0.0032, 0.0018, 0.0050]), 0.0015)  # nostrils
    return smooth_subtract(d, ellipsoid(p, [0.0, A.MOUTH_Y, 0.0620], [A.MOUTH_HALF_WIDTH, 0.0006, 0.0045]), 0.001)


def _mirrored(p: np.ndarray) -> np.ndarray:
    """Points folded onto the left half (x >= 0).  # [N, 3]"""
    q = p.copy()
    q[:, 0] = np.abs(q[:, 0])
    return q
