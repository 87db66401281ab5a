"""Hand-designed identity (shape) components, in FLAME's order of importance: global proportions first.

Each component is a displacement field for a coefficient of 1, sized so that coefficients in [-3, 3]
span plausible adult variation (1 is about one standard deviation: a few millimetres, or a few
percent of a dimension). Eyeballs follow the field at their centres (translation only), ears follow the
field at their roots except for the ear components, which reshape the ears themselves.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import anatomy as A
from .fields import Frame, along, blob, eye_angles, lid_rotation, mirrored_scale, outward_x, rotated, scaled, \
    smoothstep

LID_COMPONENTS = ("eye_size", "eye_tilt")  # these slide the lids over fixed eyeballs
_EAR_HINGE = (A.EAR_ROOT[0], A.EAR_ROOT[1], A.EAR_ROOT[2] + 0.012)
_CORNER = (A.MOUTH_HALF_WIDTH, A.MOUTH_Y, 0.046)


def _head(f: Frame) -> np.ndarray:
    """1 on the head, fading to 0 down the neck.  # [N]"""
    return smoothstep(-0.135, -0.07, f.y)


def _face(f: Frame) -> np.ndarray:
    """The front of the head from brow to chin.  # [N]"""
    return smoothstep(-0.03, 0.01, f.z) * smoothstep(-0.115, -0.08, f.y) * smoothstep(0.075, 0.045, f.y)


def _w(weight: np.ndarray) -> np.ndarray:
    return weight[:, None]


def _eye_region(f: Frame) -> np.ndarray:
    """Everything around both eyes moving as one (lids, sockets), fading by the brows and cheeks.  # [N]"""
    return blob(f, A.EYE_CENTER + [0.0, 0.0, 0.004], (0.038, 0.032, 0.042), plateau=0.4)


def _ear_only(f: Frame, field: np.ndarray) -> np.ndarray:
    return field * _w(f.ear)


def _mirror_x(field: np.ndarray, f: Frame) -> np.ndarray:
    """Make a field authored for the left side act mirror-symmetrically (flip x on the right).  # [N, 3]"""
    out = field.copy()
    out[:, 0] *= np.where(f.x < 0.0, -1.0, 1.0)
    return out


def _left(f: Frame) -> Frame:
    """The frame folded onto the left side (x -> |x|), for fields authored on the left.  # Frame"""
    return dataclasses.replace(f, p=f.p * np.stack([np.sign(f.x) + (f.x == 0.0), np.ones_like(f.x),
                                                      np.ones_like(f.x)], -1))


def _lids(f: Frame) -> np.ndarray:
    """The skin around each eyeball (lids and canthi).  # [N]"""
    _, _, r = eye_angles(_left(f), 1.0)
    return smoothstep(A.EYE_RADIUS + 0.012, A.EYE_RADIUS + 0.005, r) * f.skin


COMPONENTS = (
    ("head_size", lambda f: scaled(f, (0.0, -0.03, -0.04), (0.03, 0.03, 0.03)) * _w(_head(f))),
    ("head_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.035, 0.0, 0.0)) * _w(_head(f))),
    ("head_length", lambda f: scaled(f, (0.0, 0.0, -0.035), (0.0, 0.0, 0.035)) * _w(_head(f))),
    ("head_height", lambda f: scaled(f, (0.0, 0.02, 0.0), (0.0, 0.045, 0.0)) * _w(smoothstep(0.02, 0.06, f.y))),
    ("face_length", lambda f: scaled(f, (0.0, 0.02, 0.0), (0.0, 0.04, 0.0))
     * _w(smoothstep(0.02, -0.01, f.y) * smoothstep(-0.13, -0.085, f.y) * smoothstep(-0.06, -0.02, f.z))),
    ("face_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.04, 0.0, 0.0)) * _w(_face(f))),
    ("face_depth", lambda f: scaled(f, (0.0, 0.0, -0.01), (0.0, 0.0, 0.05)) * _w(_face(f))),
    ("jaw_width", lambda f: outward_x(f) * 0.0035 * _w(blob(f, (0.052, -0.058, -0.02), (0.03, 0.035, 0.045)))),
    ("chin_length", lambda f: along(f, (0.0, -0.0028, 0.0)) * _w(blob(f, (0.0, -0.085, 0.035), (0.04, 0.035, 0.06),
                                                                      mirror=False, plateau=0.3))),
    ("chin_projection", lambda f: along(f, (0.0, 0.0, 0.003)) * _w(blob(f, (0.0, -0.078, 0.045), (0.03, 0.025, 0.04),
                                                                         mirror=False, plateau=0.2))),
    ("cheekbone_width", lambda f: outward_x(f) * 0.0016 * _w(blob(f, (0.055, 0.006, 0.005), (0.03, 0.03, 0.04)))),
    ("nose_length", lambda f: along(f, (0.0, -0.0022, 0.0008)) * _w(
        smoothstep(0.02, -0.002, f.y) * blob(f, (0.0, -0.008, 0.066), (0.022, 0.024, 0.03), mirror=False))),
    ("nose_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.09, 0.0, 0.0)) * _w(
        blob(f, (0.0, -0.008, 0.060), (0.028, 0.016, 0.025), mirror=False, plateau=0.3))),
    ("nose_projection", lambda f: along(f, (0.0, 0.0, 0.0025)) * _w(
        blob(f, A.NOSE_TIP - [0.0, 0.002, 0.004], (0.016, 0.026, 0.025), mirror=False, plateau=0.2))),
    ("eye_spacing", lambda f: outward_x(f) * 0.0015 * _w(_eye_region(f))),
    ("brow_ridge", lambda f: along(f, (0.0, 0.0, 0.0016)) * _w(
        blob(f, (0.030, 0.041, 0.047), (0.028, 0.010, 0.015)) * smoothstep(0.030, 0.036, f.y))),
    ("forehead_slope", lambda f: along(f, (0.0, 0.0, -0.06)) * _w(
        np.clip(f.y - 0.045, 0.0, None) * smoothstep(-0.01, 0.03, f.z) * smoothstep(0.13, 0.1, f.y))),
    ("lips_fullness", lambda f: f.n * 0.0011 * _w(blob(f, (0.0, A.MOUTH_Y, 0.058), (0.027, 0.016, 0.018),
                                                        mirror=False, plateau=0.2))),
    ("mouth_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.06, 0.0, 0.0)) * _w(
        blob(f, (0.0, A.MOUTH_Y, 0.05), (0.036, 0.02, 0.03), mirror=False, plateau=0.35))),
    ("ear_size", lambda f: _ear_only(f, mirrored_scale(f, A.EAR_ROOT, (0.08, 0.08, 0.08)))),
    ("ear_protrusion", lambda f: _ear_only(f, _mirror_x(
        rotated(_left(f), _EAR_HINGE, (0.0, 1.0, 0.0), np.radians(-5.0)), f))),
    ("neck_thickness", lambda f: scaled(f, (0.0, -0.1, -0.055), (0.06, 0.0, 0.06)) * _w(
        smoothstep(-0.07, -0.11, f.y))),
    ("eye_height", lambda f: along(f, (0.0, 0.0014, 0.0)) * _w(_eye_region(f))),
    ("cheek_fullness", lambda f: f.n * 0.0015 * _w(blob(f, (0.042, -0.025, 0.020), (0.030, 0.032, 0.04)) * f.skin)),
    ("jaw_angle_height", lambda f: along(f, (0.0, 0.003, 0.0)) * _w(blob(f, (0.055, -0.065, -0.025),
                                                                         (0.025, 0.03, 0.035)))),
    ("chin_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.12, 0.0, 0.0)) * _w(
        blob(f, (0.0, -0.078, 0.035), (0.035, 0.025, 0.04), mirror=False, plateau=0.3))),
    ("nose_bridge_height", lambda f: along(f, (0.0, 0.0, 0.0014)) * _w(
        blob(f, (0.0, 0.013, 0.052), (0.012, 0.017, 0.02), mirror=False, plateau=0.2))),
    ("nose_bridge_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.12, 0.0, 0.0)) * _w(
        blob(f, (0.0, 0.014, 0.050), (0.016, 0.018, 0.02), mirror=False, plateau=0.2))),
    ("nose_tip_size", lambda f: scaled(f, A.NOSE_TIP - [0.0, 0.0, 0.008], (0.1, 0.1, 0.1)) * _w(
        blob(f, A.NOSE_TIP - [0.0, 0.002, 0.006], (0.016, 0.014, 0.02), mirror=False, plateau=0.3))),
    ("nose_tip_angle", lambda f: along(f, (0.0, 0.0016, -0.0004)) * _w(
        blob(f, A.NOSE_TIP - [0.0, 0.004, 0.004], (0.014, 0.014, 0.02), mirror=False, plateau=0.2))),
    ("nose_hump", lambda f: along(f, (0.0, 0.0, 0.0012)) * _w(
        blob(f, (0.0, 0.006, 0.061), (0.009, 0.010, 0.012), mirror=False))),
    ("nasion_depth", lambda f: along(f, (0.0, 0.0, 0.0015)) * _w(
        blob(f, A.NASION + [0.0, 0.0, 0.001], (0.014, 0.013, 0.016), mirror=False))),
    ("nostril_size", lambda f: mirrored_scale(f, (0.0065, -0.0150, 0.060), (0.15, 0.15, 0.1)) * _w(
        blob(f, (0.0080, -0.0130, 0.058), (0.009, 0.008, 0.012)))),
    ("philtrum_length", lambda f: along(f, (0.0, -0.0018, 0.0)) * _w(
        smoothstep(-0.02, -0.028, f.y) * blob(f, (0.0, -0.06, 0.04), (0.045, 0.045, 0.05), mirror=False))),
    ("upper_lip_fullness", lambda f: f.n * 0.0011 * _w(
        blob(f, (0.0, A.MOUTH_Y + 0.006, 0.058), (0.025, 0.008, 0.015), mirror=False, plateau=0.2))),
    ("lower_lip_fullness", lambda f: f.n * 0.0012 * _w(
        blob(f, (0.0, A.MOUTH_Y - 0.007, 0.056), (0.023, 0.009, 0.015), mirror=False, plateau=0.2))),
    ("lip_protrusion", lambda f: along(f, (0.0, 0.0, 0.0018)) * _w(
        blob(f, (0.0, A.MOUTH_Y, 0.055), (0.032, 0.022, 0.025), mirror=False, plateau=0.3))),
    ("mouth_corner_height", lambda f: along(f, (0.0, 0.001, 0.0)) * _w(blob(f, _CORNER, (0.014, 0.012, 0.02)))),
    ("chin_tip", lambda f: along(f, (0.0, -0.0008, 0.0015)) * _w(
        blob(f, (0.0, -0.083, 0.048), (0.016, 0.014, 0.02), mirror=False))),
    ("jawline_definition", lambda f: f.n * -0.0018 * _w(blob(f, (0.035, -0.085, 0.0), (0.03, 0.02, 0.045)) * f.skin)),
    ("double_chin", lambda f: f.n * 0.003 * _w(blob(f, (0.0, -0.1, 0.012), (0.035, 0.018, 0.03), mirror=False))),
    ("cheekbone_height", lambda f: along(f, (0.0, 0.0018, 0.0)) * _w(blob(f, (0.05, 0.006, 0.015),
                                                                          (0.022, 0.02, 0.03)))),
    ("cheekbone_prominence", lambda f: along(f, (0.0, 0.0, 0.0013)) * _w(blob(f, (0.048, 0.004, 0.015),
                                                                              (0.026, 0.024, 0.035)))),
    ("cheek_hollow", lambda f: f.n * -0.0012 * _w(blob(f, (0.048, -0.03, 0.010), (0.024, 0.026, 0.035)) * f.skin)),
    ("temple_width", lambda f: outward_x(f) * 0.002 * _w(blob(f, (0.066, 0.04, 0.005), (0.02, 0.03, 0.035)))),
    ("forehead_height", lambda f: along(f, (0.0, 0.0025, 0.0)) * _w(
        smoothstep(0.045, 0.09, f.y) * smoothstep(-0.02, 0.02, f.z))),
    ("forehead_width", lambda f: scaled(f, (0.0, 0.0, 0.0), (0.04, 0.0, 0.0)) * _w(
        smoothstep(0.04, 0.07, f.y) * smoothstep(-0.03, 0.01, f.z))),
    ("brow_height", lambda f: along(f, (0.0, 0.0016, 0.0)) * _w(
        blob(f, (0.030, 0.044, 0.044), (0.032, 0.016, 0.02)) * smoothstep(0.030, 0.038, f.y))),
    ("eye_depth", lambda f: along(f, (0.0, 0.0, -0.0015)) * _w(_eye_region(f))),
    ("eye_size", lambda f: lid_rotation(f, 1.0, -0.12, -0.12) + lid_rotation(f, -1.0, -0.12, -0.12)),
    ("eye_tilt", lambda f: _mirror_x(rotated(_left(f), A.EYE_CENTER, (0.0, 0.0, 1.0), np.radians(3.0)), f)
     * _w(_lids(f))),
    ("upper_lid_fold", lambda f: along(f, (0.0, -0.0014, 0.0006)) * _w(
        blob(f, (0.033, 0.037, 0.041), (0.018, 0.007, 0.014)) * f.skin)),
    ("ear_height", lambda f: _ear_only(f, along(f, (0.0, 0.003, 0.0)))),
    ("ear_rotation", lambda f: _ear_only(f, _mirror_x(
        rotated(_left(f), _EAR_HINGE, (1.0, 0.0, 0.0), np.radians(-5.0)), f))),
    ("cranium_back", lambda f: along(f, (0.0, 0.0, -0.003)) * _w(blob(f, (0.0, 0.03, -0.13), (0.07, 0.07, 0.06),
                                                                      mirror=False))),
    ("cranium_top", lambda f: along(f, (0.0, 0.003, 0.0)) * _w(blob(f, (0.0, 0.125, -0.04), (0.06, 0.05, 0.07),
                                                                    mirror=False))),
    ("parietal_width", lambda f: outward_x(f) * 0.0025 * _w(blob(f, (0.072, 0.07, -0.05), (0.03, 0.04, 0.05)))),
    ("neck_length", lambda f: along(f, (0.0, -0.004, 0.0)) * _w(smoothstep(-0.09, -0.19, f.y))),
    ("adams_apple", lambda f: along(f, (0.0, 0.0, 0.002)) * _w(blob(f, (0.0, -0.12, -0.002), (0.015, 0.02, 0.015),
                                                                     mirror=False))),
    ("face_asymmetry", lambda f: along(f, (0.0, 0.012, 0.0)) * _w(f.x * _face(f))),
)
