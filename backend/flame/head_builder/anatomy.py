"""Where the built-in head's features sit: one table of anatomical constants, in metres.

Axes follow FLAME's template: +X is the subject's left, +Y up, +Z forward (the face looks towards +Z).
Positions are chosen close to FLAME's mean head so tracked FLAME poses and cameras frame this head alike.
Everything else in `head_builder` derives its geometry, masks and rig from these numbers.
"""

from __future__ import annotations

import numpy as np

# Eyes (left = +X). The eyeball meshes are spheres of this radius about these centres.
EYE_CENTER = np.array([0.0315, 0.0215, 0.0235])  # [3] left eye; the right eye mirrors x
EYE_RADIUS = 0.0122
LID_THICKNESS = 0.0016   # lid skin sits this far outside the eyeball
LID_MARGIN_GAP = 0.0004  # the lid margin rests this far outside the eyeball

# Palpebral fissure, as angles on the eyeball seen from its centre (azimuth psi: + lateral, elevation eta: + up).
EYE_MEDIAL_PSI = np.radians(-62.0)
EYE_LATERAL_PSI = np.radians(64.0)
EYE_MEDIAL_ETA = np.radians(-4.0)
EYE_LATERAL_ETA = np.radians(3.0)
EYE_UPPER_ETA = np.radians(24.0)   # upper lid margin height above the eye centre, at its peak
EYE_LOWER_ETA = np.radians(-19.0)  # lower lid margin, at its lowest

# Mouth: the line where the lips meet, and its corners (x = +-MOUTH_HALF_WIDTH).
MOUTH_Y = -0.0415
MOUTH_HALF_WIDTH = 0.0245

# Nose.
NOSE_TIP = np.array([0.0, -0.0045, 0.0745])
NASION = np.array([0.0, 0.0265, 0.0440])

# Ears (left): the centre of the ear disc, and its tilt.
EAR_CENTER = np.array([0.0745, -0.0020, -0.0540])
EAR_HEIGHT = 0.060
EAR_WIDTH = 0.034
EAR_ROOT = np.array([0.0665, -0.0040, -0.0500])  # where the ear meets the head (ears follow this point)
EAR_FLARE = np.radians(22.0)  # angle between the ear and the side of the head
EAR_TILT = np.radians(14.0)   # backward tilt of the ear's long axis

# Neck and the casting origin of the head shell.
HEAD_RAY_ORIGIN = np.array([0.0, 0.012, -0.032])
NECK_AXIS_TOP = np.array([0.0, -0.035, -0.048])
NECK_AXIS_BOTTOM = np.array([0.0, -0.190, -0.058])
NECK_BOTTOM_Y = -0.190

# Joint anchors: the rig regresses joints from vertices near these points (see `rig.py`).
ROOT_ANCHOR = np.array([0.0, -0.150, -0.055])
NECK_ANCHOR = np.array([0.0, -0.045, -0.050])
JAW_ANCHOR = np.array([0.0, -0.012, -0.030])


def brow_line(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left eyebrow's centre line, t = 0 medial end to 1 lateral end: (x, y, half-height).  # 3 x [N]"""
    t = np.clip(t, 0.0, 1.0)
    x = 0.013 + 0.040 * t
    y = 0.0360 + 0.0055 * np.sin(np.pi * t ** 0.8) - 0.002 * t
    return x, y, 0.0032 * (1.0 - 0.55 * t)


def lip_outline(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights of the upper lip's top edge (with the Cupid's bow) and the lower lip's bottom edge.  # 2 x [N]"""
    ax = np.abs(x)
    s = np.clip(ax / MOUTH_HALF_WIDTH, 0.0, 1.5)
    bow = 0.0011 * np.exp(-((ax - 0.0055) / 0.0035) ** 2) - 0.0006 * np.exp(-(x / 0.002) ** 2)
    return MOUTH_Y + 0.0108 + bow - 0.0085 * s ** 2, MOUTH_Y - 0.0135 + 0.0115 * s ** 2
