"""Procedural albedo: every atlas texel is painted from the 3D rest position it maps to.

The painter rasterises the UV triangles into the atlas, interpolates each texel's rest-pose position,
then applies colour rules written in head space (skin tone and its variation, lips, brows, a short hair
cap, eyelashes, nostrils, iris and sclera, the inside of the mouth). Seams stay invisible because both
sides of a seam sample the same 3D point. Gaps between UV islands are filled with the nearest texel.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

from . import anatomy as A
from .assemble import MOUTH_TILE, PART_NAMES, Head
from .fields import smoothstep
from .noise import value_noise
from .parts import MOUTH_RINGS, MOUTH_TEETH_RINGS

TEXTURE_SIZE = 1024

SKIN = np.array([0.86, 0.66, 0.55])
SKIN_RED = np.array([0.82, 0.52, 0.46])
LIPS = np.array([0.70, 0.44, 0.41])
BROWS = np.array([0.24, 0.17, 0.13])
HAIR = np.array([0.20, 0.14, 0.10])
LASHES = np.array([0.10, 0.07, 0.06])
SCLERA = np.array([0.93, 0.90, 0.87])
IRIS = np.array([0.36, 0.25, 0.15])
MOUTH = np.array([0.42, 0.15, 0.16])
GUMS = np.array([0.72, 0.38, 0.38])
TEETH = np.array([0.90, 0.87, 0.80])
TOOTH_GAPS = (0.0, 0.0085, 0.0150, 0.0215)  # |x| of the gaps between incisors, laterals, canines, premolars

# Hairline height y as a function of |azimuth| around the head (0 = forehead, pi = nape).
_HAIRLINE = PchipInterpolator(np.radians([0.0, 20.0, 38.0, 55.0, 66.0, 80.0, 100.0, 125.0, 150.0, 180.0]),
                              [0.094, 0.092, 0.082, 0.070, 0.020, 0.030, 0.035, -0.010, -0.045, -0.055])


def rasterize_uv(vt: np.ndarray, ft: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre, and where: ([H, W] face id or -1, [H, W, 3] barycentric).

    Row 0 of the image is v = 1 (the top), as in the OBJ convention.
    """
    px = vt[:, 0] * size - 0.5
    py = (1.0 - vt[:, 1]) * size - 0.5
    face_id = np.full((size, size), -1, dtype=np.int64)
    bary = np.zeros((size, size, 3))
    for k, (a, b, c) in enumerate(ft):
        xs, ys = px[[a, b, c]], py[[a, b, c]]
        x0, x1 = max(int(np.ceil(xs.min())), 0), min(int(np.floor(xs.max())), size - 1)
        y0, y1 = max(int(np.ceil(ys.min())), 0), min(int(np.floor(ys.max())), size - 1)
        if x1 < x0 or y1 < y0:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        det = (ys[1] - ys[2]) * (xs[0] - xs[2]) + (xs[2] - xs[1]) * (ys[0] - ys[2])
        if abs(det) < 1e-12:
            continue
        w0 = ((ys[1] - ys[2]) * (gx - xs[2]) + (xs[2] - xs[1]) * (gy - ys[2])) / det
        w1 = ((ys[2] - ys[0]) * (gx - xs[2]) + (xs[0] - xs[2]) * (gy - ys[2])) / det
        w = np.stack([w0, w1, 1.0 - w0 - w1], -1)
        inside = (w >= -1e-9).all(-1)
        face_id[gy[inside], gx[inside]] = k
        bary[gy[inside], gx[inside]] = w[inside]
    return face_id, bary


def _mix(base: np.ndarray, color: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return base + (np.asarray(color) - base) * weight[:, None]


def skin_color(p: np.ndarray, haired: np.ndarray) -> np.ndarray:
    """Skin with blush, lips, brows, a touch of mottling, and hair where `haired` allows it.  # [N, 3]"""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    c = np.tile(SKIN, (p.shape[0], 1)) * (1.0 + 0.05 * value_noise(p, 0.012) + 0.02 * value_noise(p, 0.003))[:, None]
    front = smoothstep(0.0, 0.03, z)
    blush = np.exp(-(((ax - 0.040) / 0.016) ** 2 + ((y + 0.008) / 0.016) ** 2)) * front
    blush += 0.6 * np.exp(-((ax / 0.010) ** 2 + ((y + 0.004) / 0.010) ** 2)) * smoothstep(0.06, 0.07, z)  # nose
    c = _mix(c, SKIN_RED, 0.45 * np.clip(blush, 0.0, 1.0))
    c = _mix(c, np.array([0.70, 0.55, 0.52]), 0.25 * _under_eye(p))
    c = _mix(c, LIPS, _lip_mask(p))
    c = _mix(c, BROWS, _brow_mask(p))
    hair = _hair_mask(p) * haired
    strands = 1.0 + 0.35 * value_noise(p * [3.0, 1.0, 3.0], 0.004)
    return c + (HAIR[None] * strands[:, None] - c) * hair[:, None]


def _under_eye(p: np.ndarray) -> np.ndarray:
    ax = np.abs(p[:, 0])
    return np.exp(-(((ax - 0.030) / 0.013) ** 2 + ((p[:, 1] - 0.008) / 0.005) ** 2)) * smoothstep(0.02, 0.03, p[:, 2])


def _lip_mask(p: np.ndarray) -> np.ndarray:
    """1 on the red of the lips, soft at the borders.  # [N]"""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    s = np.clip(np.abs(x) / A.MOUTH_HALF_WIDTH, 0.0, 1.5)
    top, bottom = A.lip_outline(x)
    inside = smoothstep(-0.0008, 0.0008, top - y) * smoothstep(-0.0011, 0.0011, y - bottom)
    return inside * smoothstep(1.05, 0.95, s) * smoothstep(0.035, 0.045, z)


def _brow_mask(p: np.ndarray) -> np.ndarray:
    """Eyebrows: an arched band over each eye, thick medially, tapering laterally.  # [N]"""
    ax, y, z = np.abs(p[:, 0]), p[:, 1], p[:, 2]
    t = (ax - 0.013) / 0.040  # 0 medial end, 1 lateral end
    _, center, half = A.brow_line(t)
    band = smoothstep(half + 0.0012, half - 0.0004, np.abs(y - center))
    ends = smoothstep(-0.05, 0.05, t) * smoothstep(1.05, 0.9, t)
    hairs = 0.75 + 0.25 * value_noise(p * [1.0, 6.0, 1.0], 0.0012)
    return np.clip(band * ends * hairs, 0.0, 1.0) * 0.9 * smoothstep(0.015, 0.025, z)


def _hair_mask(p: np.ndarray) -> np.ndarray:
    """A short hair cap above the hairline (forehead, temples, sideburns, nape).  # [N]"""
    d = p - [0.0, 0.0, -0.035]
    azimuth = np.abs(np.arctan2(d[:, 0], d[:, 2]))
    wobble = 0.0015 * value_noise(p, 0.004)
    return smoothstep(-0.002, 0.003, p[:, 1] - _HAIRLINE(azimuth) + wobble)


def eye_color(p: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Sclera, iris with radial fibres and a dark limbus, pupil; by angle from each eye's axis.  # [N, 3]"""
    center = A.EYE_CENTER * np.stack([side, np.ones_like(side), np.ones_like(side)], -1)
    d = p - center
    alpha = np.degrees(np.arccos(np.clip(d[:, 2] / np.linalg.norm(d, axis=1), -1.0, 1.0)))
    spoke = np.arctan2(d[:, 1], d[:, 0] * side)
    fibres = 0.8 + 0.2 * np.sin(spoke * 37.0) * np.sin(spoke * 11.0 + alpha * 0.4)
    iris = IRIS * (fibres * (0.75 + 0.5 * smoothstep(10.0, 27.0, alpha)))[:, None]
    sclera = SCLERA - np.array([0.0, 0.08, 0.08]) * smoothstep(45.0, 90.0, alpha)[:, None]
    c = sclera + (iris - sclera) * smoothstep(29.0, 27.5, alpha)[:, None]
    c = _mix(c, np.array([0.08, 0.06, 0.05]), smoothstep(24.0, 28.0, alpha) * smoothstep(30.0, 28.5, alpha))
    return _mix(c, np.array([0.02, 0.02, 0.02]), smoothstep(9.5, 8.0, alpha))


def mouth_color(p: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Inner lips, gums, teeth, the dark cavity; `ring` is the bag's ring coordinate (0 lips, 1 throat).  # [N, 3]"""
    n = len(MOUTH_RINGS) + 1
    first, last = MOUTH_TEETH_RINGS[0] / n, MOUTH_TEETH_RINGS[1] / n
    ax = np.abs(p[:, 0])
    c = _mix(np.tile(LIPS * 0.9, (p.shape[0], 1)), GUMS, smoothstep(0.6 / n, 1.4 / n, ring))
    teeth = smoothstep(first - 0.1 / n, first + 0.1 / n, ring) * smoothstep(last + 0.1 / n, last - 0.2 / n, ring)
    gap = np.min(np.abs(ax[:, None] - np.array(TOOTH_GAPS)[None]), axis=1)  # distance to the nearest tooth edge
    shade = (1.0 - 0.3 * smoothstep(0.0005, 0.0, gap)) * (1.0 - 0.55 * smoothstep(0.010, 0.022, ax))
    c = c + (TEETH[None] * shade[:, None] - c) * teeth[:, None]
    c = _mix(c, MOUTH * 0.5, smoothstep(0.019, 0.026, ax) * smoothstep(0.6 / n, 1.5 / n, ring))  # cheeks' shadow
    c = _mix(c, MOUTH, smoothstep(last, last + 0.6 / n, ring))
    return _mix(c, np.array([0.06, 0.02, 0.02]), smoothstep(0.7, 1.0, ring))


def _lid_lines(p: np.ndarray, head: Head) -> tuple[np.ndarray, np.ndarray]:
    """Distances (m) from points to the upper and to the lower lid margins (all eyes).  # ([N], [N])"""
    out = []
    for margin in (head.shell.eye_upper, head.shell.eye_lower):
        pts = head.vertices[margin]  # [2, K, 3]
        t = np.linspace(0.0, 1.0, 8)[:, None, None, None]
        dense = (pts[:, :-1][None] * (1 - t) + pts[:, 1:][None] * t).reshape(-1, 3)
        out.append(cKDTree(dense).query(p)[0])
    return out[0], out[1]


def paint(head: Head, size: int = TEXTURE_SIZE) -> np.ndarray:
    """The albedo texture for `head`'s atlas.  # [H, W, 3] uint8"""
    face_id, bary = rasterize_uv(head.vt, head.ft, size)
    covered = face_id >= 0
    faces = head.faces[face_id[covered]]
    p = np.einsum("nk,nkc->nc", bary[covered], head.vertices[faces])
    part = head.face_parts[face_id[covered]]
    color = np.zeros((p.shape[0], 3))
    skin = np.isin(part, [PART_NAMES.index(n) for n in ("skin", "ear_left", "ear_right")])
    color[skin] = skin_color(p[skin], haired=part[skin] == PART_NAMES.index("skin"))
    upper, lower = _lid_lines(p[skin], head)
    lashes = smoothstep(0.0016, 0.0004, upper) + 0.35 * smoothstep(0.0009, 0.0002, lower)
    color[skin] = _mix(color[skin], LASHES, np.clip(lashes, 0.0, 1.0))
    nostril = np.minimum(*(np.linalg.norm(p[skin] - [s * 0.0068, -0.0150, 0.0600], axis=1) for s in (1.0, -1.0)))
    color[skin] = _mix(color[skin], np.array([0.25, 0.12, 0.10]), smoothstep(0.0040, 0.0022, nostril))
    ear = np.isin(part, [PART_NAMES.index("ear_left"), PART_NAMES.index("ear_right")])
    color[ear] = _mix(color[ear], SKIN_RED * 0.9, np.full(int(ear.sum()), 0.3))
    eyes = np.isin(part, [PART_NAMES.index("eye_left"), PART_NAMES.index("eye_right")])
    color[eyes] = eye_color(p[eyes], np.where(p[eyes, 0] > 0.0, 1.0, -1.0))
    mouth = part == PART_NAMES.index("mouth")
    tex_v = np.einsum("nk,nk->n", bary[covered][mouth], head.vt[head.ft[face_id[covered][mouth]], 1])
    color[mouth] = mouth_color(p[mouth], (tex_v - MOUTH_TILE[1]) / (MOUTH_TILE[3] - MOUTH_TILE[1]))
    image = np.zeros((size, size, 3))
    image[covered] = color
    _, nearest = distance_transform_edt(~covered, return_indices=True)
    image = image[nearest[0], nearest[1]]
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
