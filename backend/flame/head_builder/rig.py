"""FLAME's five-joint rig for the built-in head: skinning weights, joint regressor, pose correctives.

Joints (FLAME order): 0 global (root), 1 neck, 2 jaw, 3 left eye, 4 right eye; the neck's parent is
the root, the jaw's and the eyes' parent is the neck. Joints are regressed from vertices (convex rows),
so they follow any shape change. Pose correctives use FLAME's convention (`posedirs [V, 3, 36]`,
36 = 4 non-root joints x the 9 entries of R - I, applied by smplx as `pose_feature @ posedirs`).
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from . import meshops
from .assemble import Head
from .fields import smoothstep
from .parts import EYE_EQUATOR_RING, EYE_SEGMENTS

JOINT_NAMES = ("global", "neck", "jaw", "eye_left", "eye_right")
ROOT_PARENT = 4294967295  # FLAME's marker for "no parent"
PARENTS = (ROOT_PARENT, 0, 1, 1, 1)
N_POSE_FEATURES = 36
CORRECTIVE_ANGLE = 0.3  # radians at which correctives are fitted exactly
# Entries of (R - I) that carry sin(angle) (+ then -) and the diagonal signs giving (cos(angle) - 1), per axis.
_SIN_ENTRIES = {0: ((2, 1), (1, 2)), 1: ((0, 2), (2, 0)), 2: ((1, 0), (0, 1))}
_COS_SIGNS = {0: (-1.0, 1.0, 1.0), 1: (1.0, -1.0, 1.0), 2: (1.0, 1.0, -1.0)}


def kintree_table() -> np.ndarray:
    """FLAME's kinematic tree: row 0 parents (root marked 4294967295), row 1 joint ids.  # [2, 5]"""
    return np.array([PARENTS, range(len(PARENTS))], dtype=np.int64)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)


def jaw_weights(head: Head) -> np.ndarray:
    """How much each vertex follows the jaw: lower lip, chin and jaw line 1, upper face 0, smooth between.  # [V]"""
    v = head.vertices
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    skin = head.part("skin")
    values = np.zeros(v.shape[0])
    fixed_one = skin & (y < A.MOUTH_Y - 0.010) & (y > -0.095) & (z > 0.025) & (np.abs(x) < 0.032)
    q = v.copy()
    q[:, 0] = np.abs(q[:, 0])  # the jaw line, mirrored onto the left
    fixed_one |= skin & (_segment_distance(q, np.array([0.050, -0.062, -0.025]), np.array([0.020, -0.080, 0.035]))
                         < 0.012)
    fixed_one[head.shell.mouth_lower[1:-1]] = True
    fixed_zero = skin & ((y > -0.005) | ((y > A.MOUTH_Y + 0.012) & (z > -0.02)) | (y < -0.115)
                         | ((z < -0.045) & (y > -0.06)) | ((z < -0.06) & (y < -0.04)))
    fixed_zero[head.shell.mouth_upper[1:-1]] = True
    fixed_one &= ~fixed_zero
    mouth = head.part("mouth")
    values[fixed_one] = 1.0
    values[mouth] = 0.5 - 0.5 * np.clip((y[mouth] - A.MOUTH_Y) / 0.003, -1.0, 1.0)
    adj = meshops.adjacency(head.faces, v.shape[0])
    free = skin & ~fixed_one & ~fixed_zero
    return np.clip(meshops.harmonic(adj, values, fixed_one | fixed_zero | ~skin, free), 0.0, 1.0)


def skinning_weights(head: Head) -> np.ndarray:
    """Linear blend skinning weights, rows summing to 1.  # [V, 5]"""
    v = head.vertices
    weights = np.zeros((v.shape[0], len(JOINT_NAMES)))
    jaw = jaw_weights(head)
    skin = head.part("skin")
    root = np.where(skin, smoothstep(-0.105, -0.165, v[:, 1]), 0.0) * (1.0 - jaw)
    weights[:, 2] = jaw
    weights[:, 0] = root
    weights[:, 1] = 1.0 - jaw - root
    for joint, name in ((3, "eye_left"), (4, "eye_right")):
        eye = head.part(name)
        weights[eye] = 0.0
        weights[eye, joint] = 1.0
    return weights


def joint_regressor(head: Head) -> np.ndarray:
    """Convex vertex weights per joint: eyes from their equator rings, the rest from skin patches.  # [5, V]

    Root, neck and jaw each average two symmetric skin patches where a left-right line through the
    joint's anchor leaves the head, so joints move with the head's width, height and depth.
    """
    v = head.vertices
    regressor = np.zeros((len(JOINT_NAMES), v.shape[0]))
    skin = head.part("skin")
    for joint, anchor in ((0, A.ROOT_ANCHOR), (1, A.NECK_ANCHOR), (2, A.JAW_ANCHOR)):
        d2 = (v[:, 1] - anchor[1]) ** 2 + (v[:, 2] - anchor[2]) ** 2
        w = np.where(skin & (np.abs(v[:, 0]) > 0.02), np.exp(-d2 / 0.006 ** 2), 0.0)
        w[w < 1e-3 * w.max()] = 0.0
        regressor[joint] = w / w.sum()
    for joint, name in ((3, "eye_left"), (4, "eye_right")):
        first = np.flatnonzero(head.part(name))[0]
        ring = first + 1 + EYE_EQUATOR_RING * EYE_SEGMENTS + np.arange(EYE_SEGMENTS)
        regressor[joint, ring] = 1.0 / EYE_SEGMENTS
    return regressor


def _axis_rotations(axis: int, angles: np.ndarray) -> np.ndarray:
    """Right-handed rotations about a coordinate axis, one per angle.  # [N, 3, 3]"""
    c, s = np.cos(angles), np.sin(angles)
    i, j = (axis + 1) % 3, (axis + 2) % 3
    r = np.tile(np.eye(3), (angles.size, 1, 1))
    r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
    return r


def _arc_offsets(points: np.ndarray, follow: np.ndarray, center: np.ndarray, axis: int, angle: float) -> np.ndarray:
    """Rest-pose offsets that make blended skinning rotate by follow * angle instead of cutting the chord.

    For a vertex following a joint with weight w, LBS maps q to M q + t with M = (1 - w) I + w R; the
    target is the partial rotation R(w angle) about the joint. Solve M (p + d) + t = target for d.  # [V, 3]
    """
    r = _axis_rotations(axis, np.array([angle]))[0]
    target = np.einsum("nij,nj->ni", _axis_rotations(axis, follow * angle), points - center) + center
    m = (1.0 - follow)[:, None, None] * np.eye(3) + follow[:, None, None] * r  # [V, 3, 3]
    t = follow[:, None] * (center - center @ r.T)
    return np.linalg.solve(m, (target - t)[..., None])[..., 0] - points


def pose_correctives(head: Head, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Neck and jaw correctives that keep partially-skinned skin on arcs (volume, stretch).  # [V, 3, 36]

    Fitted per axis from rotations of +-CORRECTIVE_ANGLE: the sin(angle) part goes on the two
    antisymmetric entries of (R - I), the (1 - cos(angle)) part on the diagonal.
    """
    v = head.vertices
    posedirs = np.zeros((v.shape[0], 3, N_POSE_FEATURES))
    follow_by_joint = {1: weights[:, 1:].sum(axis=1), 2: weights[:, 2]}
    s, one_minus_cos = np.sin(CORRECTIVE_ANGLE), 1.0 - np.cos(CORRECTIVE_ANGLE)
    for joint, follow in follow_by_joint.items():
        moving = (follow > 1e-4) & (follow < 1.0 - 1e-4)
        for axis in range(3):
            plus = _arc_offsets(v[moving], follow[moving], joints[joint], axis, CORRECTIVE_ANGLE)
            minus = _arc_offsets(v[moving], follow[moving], joints[joint], axis, -CORRECTIVE_ANGLE)
            sin_part = (plus - minus) / (2.0 * s)
            cos_part = (plus + minus) / (2.0 * one_minus_cos)  # times (1 - cos)
            base = (joint - 1) * 9
            (r0, c0), (r1, c1) = _SIN_ENTRIES[axis]
            posedirs[moving, :, base + 3 * r0 + c0] += 0.5 * sin_part
            posedirs[moving, :, base + 3 * r1 + c1] -= 0.5 * sin_part
            for k, sign in enumerate(_COS_SIGNS[axis]):
                # feature sum_k sign_k (R_kk - 1) / 2 equals cos(angle) - 1 for this axis
                posedirs[moving, :, base + 4 * k] += -0.5 * sign * cos_part
    return posedirs
