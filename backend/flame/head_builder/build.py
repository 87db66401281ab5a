"""Everything that goes into `keyface_head.npz`, as plain arrays in FLAME's layout plus Keyface's extras."""

from __future__ import annotations

import numpy as np

from . import bases, landmarks, rig
from .assemble import PART_NAMES, build_head
from .texture import paint

VERSION = "1.0.0"
GENERATOR = "backend.flame.make_builtin_head"
# Stored floats are rounded to these steps: exact on every platform and friendlier to compression.
_GEOMETRY_STEP = 2.0 ** -22  # metres (0.24 micrometres)
_WEIGHT_STEP = 2.0 ** -20


def _quantize(values: np.ndarray, step: float) -> np.ndarray:
    """Round to multiples of `step` and store as float32 (the multiples stay exact).  # same shape"""
    return (np.round(values / step) * step).astype(np.float32)


def _convex_rows(rows: np.ndarray) -> np.ndarray:
    """Quantize rows of convex weights (skinning, regressor, barycentric) so each still sums to exactly 1."""
    q = np.round(rows / _WEIGHT_STEP) * _WEIGHT_STEP
    largest = np.argmax(q, axis=1)
    q[np.arange(q.shape[0]), largest] += 1.0 - q.sum(axis=1)
    return q.astype(np.float32)


def build_arrays() -> dict[str, np.ndarray]:
    """Generate the built-in head: every array the `.npz` holds, keyed by its name."""
    head = build_head()
    frame = bases.head_frame(head)
    shape, shape_names = bases.shape_dirs(head, frame)
    expression, expression_names = bases.expression_dirs(head, frame)
    eyelids = bases.eyelid_dirs(head, frame)
    weights = rig.skinning_weights(head)
    regressor = rig.joint_regressor(head)
    posedirs = rig.pose_correctives(head, weights, regressor @ head.vertices)
    lmk_faces, lmk_bary = landmarks.embed(head)
    return {
        "v_template": _quantize(head.vertices, _GEOMETRY_STEP),
        "f": head.faces.astype(np.int32),
        "shapedirs": _quantize(np.concatenate([shape, expression], axis=-1), _GEOMETRY_STEP),
        "n_shape": np.array(len(shape_names), dtype=np.int64),
        "shape_names": np.array(shape_names),
        "expression_names": np.array(expression_names),
        "posedirs": _quantize(posedirs, _GEOMETRY_STEP),
        "J_regressor": _convex_rows(regressor),
        "kintree_table": rig.kintree_table(),
        "weights": _convex_rows(weights),
        "l_eyelid": _quantize(eyelids["l_eyelid"], _GEOMETRY_STEP),
        "r_eyelid": _quantize(eyelids["r_eyelid"], _GEOMETRY_STEP),
        "lmk_face_idx": lmk_faces.astype(np.int64),
        "lmk_b_coords": _convex_rows(lmk_bary),
        "mediapipe_indices": np.array(landmarks.MEDIAPIPE_INDICES, dtype=np.int64),
        "vt": head.vt.astype(np.float32),
        "ft": head.ft.astype(np.int32),
        "texture": paint(head),
        "part_ids": head.part_ids.astype(np.uint8),
        "part_names": np.array(PART_NAMES),
        "version": np.array(VERSION),
        "generator": np.array(GENERATOR),
    }
