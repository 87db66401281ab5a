"""Evaluate the hand-written shape, expression and eyelid fields on the template.

Rules shared by every component: eyeballs translate with the field at their centres for shape
components and never move for expressions or eyelids; for shape components the lids blend towards that
same translation, so the eyeballs stay seated in their sockets (except the components that slide the
lids over the eyeballs on purpose); ears translate with the field at their roots, except for `ear_*`
shape components, which reshape the ears.
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from . import expression_basis, shape_basis
from .assemble import Head
from .fields import Frame, smoothstep


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.  # [V, 3]"""
    tri = vertices[faces]
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def lip_side(head: Head) -> np.ndarray:
    """1 on and above the upper lip's border, 0 on and below the lower lip's, smooth away from the mouth.  # [V]"""
    x, y = head.vertices[:, 0], head.vertices[:, 1]
    width = 0.0003 + 0.5 * np.clip(np.abs(x) - A.MOUTH_HALF_WIDTH, 0.0, None)
    above = smoothstep(-1.0, 1.0, (y - A.MOUTH_Y) / width)
    above[head.shell.mouth_upper[1:-1]] = 1.0
    above[head.shell.mouth_lower[1:-1]] = 0.0
    return above


def head_frame(head: Head) -> Frame:
    """The evaluation frame for every template vertex.

    The two borders of the closed lips share positions; they also get a shared normal so that fields
    along normals move them together and the lips stay closed.
    """
    ears = (head.part("ear_left") | head.part("ear_right")).astype(np.float64)
    normals = vertex_normals(head.vertices, head.faces)
    upper, lower = head.shell.mouth_upper, head.shell.mouth_lower
    shared = normals[upper] + normals[lower]
    normals[upper] = normals[lower] = shared / np.linalg.norm(shared, axis=1, keepdims=True)
    return Frame(p=head.vertices, n=normals,
                 skin=head.part("skin").astype(np.float64), ear=ears, above=lip_side(head))


def evaluate(head: Head, frame: Frame, field, eyes_follow: bool, reshape_ears: bool) -> np.ndarray:
    """One component's displacement of every vertex, with the eyeball and ear rules applied.  # [V, 3]"""
    d = np.array(field(frame), dtype=np.float64)
    for name, sign in (("eye_left", 1.0), ("eye_right", -1.0)):
        center = A.EYE_CENTER * [sign, 1.0, 1.0]
        at_center = field(Frame.points(center[None]))[0]
        d[head.part(name)] = at_center if eyes_follow else 0.0
        if eyes_follow:
            r = np.linalg.norm(head.vertices - center, axis=1)
            seat = smoothstep(A.EYE_RADIUS + 0.014, A.EYE_RADIUS + 0.006, r) * frame.skin
            d += seat[:, None] * (at_center - d)
    if not reshape_ears:
        for name, sign in (("ear_left", 1.0), ("ear_right", -1.0)):
            d[head.part(name)] = field(Frame.points((A.EAR_ROOT * [sign, 1.0, 1.0])[None]))[0]
    return d


def shape_dirs(head: Head, frame: Frame) -> tuple[np.ndarray, list[str]]:
    """Identity components and their names.  # ([V, 3, S], S)"""
    cols = [evaluate(head, frame, fn, eyes_follow=name not in shape_basis.LID_COMPONENTS,
                     reshape_ears=name.startswith("ear_")) for name, fn in shape_basis.COMPONENTS]
    return np.stack(cols, axis=-1), [name for name, _ in shape_basis.COMPONENTS]


def expression_dirs(head: Head, frame: Frame) -> tuple[np.ndarray, list[str]]:
    """Expression components and their names.  # ([V, 3, E], E)"""
    cols = [evaluate(head, frame, fn, eyes_follow=False, reshape_ears=False)
            for _, fn in expression_basis.COMPONENTS]
    return np.stack(cols, axis=-1), [name for name, _ in expression_basis.COMPONENTS]


def eyelid_dirs(head: Head, frame: Frame) -> dict[str, np.ndarray]:
    """metrical-tracker-style eyelid blendshapes (1 closes the eye): {'l_eyelid', 'r_eyelid'} -> [V, 3]."""
    return {name: evaluate(head, frame, fn, eyes_follow=False, reshape_ears=False)
            for name, fn in expression_basis.EYELIDS}
