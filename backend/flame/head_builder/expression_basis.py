"""Hand-designed expression components (FACS-like, per side where faces are asymmetric).

A coefficient of 1 is a moderate expression; 2.5-3 is a strong one (a blink of 2.5 closes the eye).
Jaw opening is the jaw joint, not a blendshape. Eyeballs never move with expressions; lips only part
where a component says so (upper lip raise, lower lip depress, funnel).
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from .fields import Frame, along, blob, lid_rotation, outward_x, scaled, smoothstep

_LIPS_Z = 0.055


def _w(weight: np.ndarray) -> np.ndarray:
    return weight[:, None]


def _corner(f: Frame, sign: float) -> np.ndarray:
    """Around one mouth corner (sign +1 left, -1 right).  # [N]"""
    return blob(f, (sign * A.MOUTH_HALF_WIDTH, A.MOUTH_Y, 0.046), (0.020, 0.022, 0.03), mirror=False, plateau=0.15)


def _lips(f: Frame) -> np.ndarray:
    return blob(f, (0.0, A.MOUTH_Y, _LIPS_Z), (0.031, 0.021, 0.03), mirror=False, plateau=0.3)


def _upper_lip(f: Frame) -> np.ndarray:
    return blob(f, (0.0, A.MOUTH_Y + 0.005, _LIPS_Z), (0.029, 0.015, 0.03), mirror=False, plateau=0.2) * f.above


def _lower_lip(f: Frame) -> np.ndarray:
    return blob(f, (0.0, A.MOUTH_Y - 0.007, _LIPS_Z), (0.027, 0.017, 0.03), mirror=False, plateau=0.2) * (1 - f.above)


def _vermilion_middle(f: Frame) -> np.ndarray:
    """Lip skin away from where the lips meet (their contact line stays put).  # [N]"""
    return smoothstep(0.0008, 0.0035, np.abs(f.y - A.MOUTH_Y))


def _cheek(f: Frame, sign: float) -> np.ndarray:
    return blob(f, (sign * 0.037, -0.004, 0.040), (0.020, 0.019, 0.03), mirror=False)


def _brow(f: Frame, sign: float, inner: float = 1.0, outer: float = 1.0) -> np.ndarray:
    """One brow and the forehead above it, never the lid margin.  # [N]"""
    t = np.clip((sign * f.x - 0.008) / 0.048, 0.0, 1.0)
    along_brow = inner + (outer - inner) * t
    reach = smoothstep(0.070, 0.052, sign * f.x) * smoothstep(-0.002, 0.006, sign * f.x)
    height = smoothstep(0.029, 0.039, f.y) * smoothstep(0.10, 0.055, f.y)
    return along_brow * reach * height * smoothstep(0.0, 0.025, f.z) * f.skin


def _smile(f: Frame, sign: float) -> np.ndarray:
    corner = along(f, (sign * 0.0012, 0.0022, -0.0010)) * _w(_corner(f, sign))
    return corner + along(f, (0.0, 0.0008, 0.0006)) * _w(_cheek(f, sign))


def _squint(f: Frame, sign: float) -> np.ndarray:
    return lid_rotation(f, sign, 0.12, 0.45) + along(f, (0.0, 0.0006, 0.0003)) * _w(_cheek(f, sign))


def _sneer(f: Frame, sign: float) -> np.ndarray:
    nose_side = blob(f, (sign * 0.012, -0.002, 0.056), (0.012, 0.016, 0.02), mirror=False)
    lip = blob(f, (sign * 0.010, A.MOUTH_Y + 0.006, _LIPS_Z), (0.014, 0.012, 0.03), mirror=False) * f.above
    return along(f, (0.0, 0.0018, 0.0005)) * _w(nose_side) + along(f, (0.0, 0.0014, 0.0002)) * _w(lip)


def _brow_lower(f: Frame, sign: float) -> np.ndarray:
    return along(f, (-sign * 0.0008, -0.0020, 0.0005)) * _w(_brow(f, sign, 1.0, 0.6))


COMPONENTS = (
    ("mouth_smile_left", lambda f: _smile(f, 1.0)),
    ("mouth_smile_right", lambda f: _smile(f, -1.0)),
    ("mouth_frown_left", lambda f: along(f, (0.0004, -0.0020, -0.0003)) * _w(_corner(f, 1.0))),
    ("mouth_frown_right", lambda f: along(f, (-0.0004, -0.0020, -0.0003)) * _w(_corner(f, -1.0))),
    ("mouth_stretch_left", lambda f: along(f, (0.0020, -0.0005, -0.0008)) * _w(_corner(f, 1.0))),
    ("mouth_stretch_right", lambda f: along(f, (-0.0020, -0.0005, -0.0008)) * _w(_corner(f, -1.0))),
    ("mouth_wide", lambda f: outward_x(f) * 0.0020 * _w(_corner(f, 1.0) + _corner(f, -1.0))),
    ("mouth_narrow", lambda f: (outward_x(f) * -0.0018 + along(f, (0.0, 0.0, 0.0010)))
     * _w(_corner(f, 1.0) + _corner(f, -1.0))),
    ("lips_pucker", lambda f: (along(f, (0.0, 0.0, 0.0030)) + scaled(f, (0.0, A.MOUTH_Y, 0.0), (-0.12, 0.0, 0.0)))
     * _w(_lips(f))),
    ("lips_funnel", lambda f: along(f, (0.0, 0.0, 0.0025)) * _w(_lips(f)) + along(f, (0.0, 0.0016, 0.0)) * _w(
        _upper_lip(f) * smoothstep(0.02, 0.008, np.abs(f.x))) + along(f, (0.0, -0.0016, 0.0)) * _w(
        _lower_lip(f) * smoothstep(0.02, 0.008, np.abs(f.x)))),
    ("lips_press", lambda f: along(f, (0.0, -0.0008, -0.0006)) * _w(_upper_lip(f) * _vermilion_middle(f))
     + along(f, (0.0, 0.0008, -0.0006)) * _w(_lower_lip(f) * _vermilion_middle(f))),
    ("lips_roll_in", lambda f: along(f, (0.0, 0.0, -0.0015)) * _w(_lips(f) * f.skin)),
    ("upper_lip_raise", lambda f: along(f, (0.0, 0.0025, 0.0003)) * _w(_upper_lip(f))),
    ("lower_lip_depress", lambda f: along(f, (0.0, -0.0025, 0.0003)) * _w(_lower_lip(f))),
    ("chin_raise", lambda f: along(f, (0.0, 0.0012, 0.0008)) * _w(
        blob(f, (0.0, A.MOUTH_Y - 0.016, 0.05), (0.03, 0.03, 0.04), mirror=False, plateau=0.2))),
    ("cheek_puff", lambda f: f.n * 0.0040 * _w(
        blob(f, (0.040, -0.035, 0.030), (0.022, 0.028, 0.035)) * (1.0 - _lips(f)) * f.skin)),
    ("cheek_suck", lambda f: f.n * -0.0030 * _w(blob(f, (0.045, -0.035, 0.020), (0.018, 0.022, 0.03)) * f.skin)),
    ("cheek_raise_left", lambda f: along(f, (0.0, 0.0015, 0.0008)) * _w(_cheek(f, 1.0))
     + lid_rotation(f, 1.0, 0.0, 0.15)),
    ("cheek_raise_right", lambda f: along(f, (0.0, 0.0015, 0.0008)) * _w(_cheek(f, -1.0))
     + lid_rotation(f, -1.0, 0.0, 0.15)),
    ("nostril_flare", lambda f: outward_x(f) * 0.0012 * _w(blob(f, (0.012, -0.011, 0.055), (0.009, 0.009, 0.012)))),
    ("nose_sneer_left", lambda f: _sneer(f, 1.0)),
    ("nose_sneer_right", lambda f: _sneer(f, -1.0)),
    ("brow_raise_left", lambda f: along(f, (0.0, 0.0030, 0.0)) * _w(_brow(f, 1.0))),
    ("brow_raise_right", lambda f: along(f, (0.0, 0.0030, 0.0)) * _w(_brow(f, -1.0))),
    ("brow_lower_left", lambda f: _brow_lower(f, 1.0)),
    ("brow_lower_right", lambda f: _brow_lower(f, -1.0)),
    ("brow_inner_up", lambda f: along(f, (0.0, 0.0025, 0.0)) * _w(_brow(f, 1.0, 1.0, 0.0) + _brow(f, -1.0, 1.0, 0.0))),
    ("brow_outer_up_left", lambda f: along(f, (0.0, 0.0025, 0.0)) * _w(_brow(f, 1.0, 0.0, 1.0))),
    ("brow_outer_up_right", lambda f: along(f, (0.0, 0.0025, 0.0)) * _w(_brow(f, -1.0, 0.0, 1.0))),
    ("blink_left", lambda f: lid_rotation(f, 1.0, 0.4, 0.4)),
    ("blink_right", lambda f: lid_rotation(f, -1.0, 0.4, 0.4)),
    ("squint_left", lambda f: _squint(f, 1.0)),
    ("squint_right", lambda f: _squint(f, -1.0)),
    ("eye_wide_left", lambda f: lid_rotation(f, 1.0, -0.25, -0.15)),
    ("eye_wide_right", lambda f: lid_rotation(f, -1.0, -0.25, -0.15)),
    ("smile", lambda f: 0.7 * (_smile(f, 1.0) + _smile(f, -1.0)) + 0.3 * (_squint(f, 1.0) + _squint(f, -1.0))),
    ("mouth_left", lambda f: along(f, (0.0030, 0.0, 0.0)) * _w(_lips(f))),
    ("mouth_right", lambda f: along(f, (-0.0030, 0.0, 0.0)) * _w(_lips(f))),
    ("dimple_left", lambda f: along(f, (-0.0004, 0.0, -0.0012)) * _w(_corner(f, 1.0))),
    ("dimple_right", lambda f: along(f, (0.0004, 0.0, -0.0012)) * _w(_corner(f, -1.0))),
    ("jaw_clench", lambda f: outward_x(f) * 0.0015 * _w(blob(f, (0.058, -0.045, -0.02), (0.015, 0.025, 0.025)))),
    ("neck_tense", lambda f: f.n * 0.0015 * _w(blob(f, (0.022, -0.125, 0.0), (0.012, 0.05, 0.025)) * f.skin)),
)

EYELIDS = (("l_eyelid", lambda f: lid_rotation(f, 1.0, 1.0, 1.0)), ("r_eyelid", lambda f: lid_rotation(f, -1.0, 1.0, 1.0)))
