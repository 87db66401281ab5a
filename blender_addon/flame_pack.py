"""FLAME parameters <-> rig values, and the coefficient tables the rig's drivers evaluate (numpy only, no bpy).

The rig (see rig_build.py) keeps FLAME coordinates inside the armature object. Per FLAME joint j there is a
control bone (`BONE_NAMES[j]`, the one the animator rotates; quaternion w x y z = FLAME's axis-angle) and a
hidden deform bone (`DEFORM_PREFIX + name`, child of the control bone, same head), all with identity rest
orientation and heads at the template's rest joints J0_j. The control bone of joint j hangs from the deform
bone of its parent. With ΔJ_j = J_j(shape, expression, eyelids) - J0_j (linear in the coefficients), FLAME's
skinning transform G_j · T(-J_j) equals Blender's P_j · Rest_j⁻¹ for every joint when

    control bone location = ΔJ_j          (root: translation + ΔJ_0)
    deform bone location  = -ΔJ_j

(by induction over the chain: the control bone's pose matrix is then G_j and the deform bone's G_j T(-ΔJ_j)).
No location depends on a rotation, so no driver reads the bone it drives. Pose correctives follow the
elements of (R_j - I) of the normalised control-bone quaternion.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

BONE_NAMES = ("root", "neck", "jaw", "eye_L", "eye_R")
"""Control bone per FLAME joint (0 global, 1 neck, 2 jaw, 3 left eye, 4 right eye)."""
DEFORM_PREFIX = "DEF-"
"""Deform bone (and vertex group) name = DEFORM_PREFIX + control bone name."""
POSE_FIELDS = ("rotation", "neck", "jaw", "eyes", "eyes")
"""FlameParams field holding each joint's axis-angle (the eyes share one [6] field: left then right)."""
N_JOINTS = len(BONE_NAMES)
MAX_COEFFICIENT = 10.0
"""Blender's shape-key slider limit: shape, expression and eyelid values must lie in [-10, 10]."""
EXPRESSION_LIMIT = 250
"""Longest driver expression written (Blender truncates at 256 characters)."""
AXES = "xyz"

# (R(q) - I)[r][c] · |q|² as a polynomial in w x y z: [(coefficient, factor, factor), ...]; diagonal entries
# written as -2(..) so they stay accurate near the identity.
ROTATION_MINUS_IDENTITY_TERMS: tuple[tuple[tuple[tuple[float, str, str], ...], ...], ...] = (
    (((-2.0, "y", "y"), (-2.0, "z", "z")), ((2.0, "x", "y"), (-2.0, "w", "z")), ((2.0, "x", "z"), (2.0, "w", "y"))),
    (((2.0, "x", "y"), (2.0, "w", "z")), ((-2.0, "x", "x"), (-2.0, "z", "z")), ((2.0, "y", "z"), (-2.0, "w", "x"))),
    (((2.0, "x", "z"), (-2.0, "w", "y")), ((2.0, "y", "z"), (2.0, "w", "x")), ((-2.0, "x", "x"), (-2.0, "y", "y"))),
)

EXPRESSION_PRESETS: dict[str, dict[str, Any]] = {
    "neutral": {"expression": {}, "jaw": 0.0, "eyelids": (0.0, 0.0)},
    "smile": {"expression": {"smile": 2.0, "mouth_smile_left": 1.0, "mouth_smile_right": 1.0,
                             "cheek_raise_left": 1.0, "cheek_raise_right": 1.0, "squint_left": 0.5,
                             "squint_right": 0.5}, "jaw": 0.05},
    "surprise": {"expression": {"brow_raise_left": 2.0, "brow_raise_right": 2.0, "brow_inner_up": 1.5,
                                "eye_wide_left": 2.0, "eye_wide_right": 2.0, "mouth_narrow": 0.5}, "jaw": 0.3},
    "anger": {"expression": {"brow_lower_left": 2.0, "brow_lower_right": 2.0, "nose_sneer_left": 1.0,
                             "nose_sneer_right": 1.0, "lips_press": 1.5, "squint_left": 1.0,
                             "squint_right": 1.0, "jaw_clench": 1.0}, "jaw": 0.0},
    "sadness": {"expression": {"mouth_frown_left": 2.0, "mouth_frown_right": 2.0, "brow_inner_up": 2.0,
                               "chin_raise": 1.0}, "jaw": 0.0},
    "pucker": {"expression": {"lips_pucker": 2.5, "cheek_suck": 0.5}, "jaw": 0.0},
    "blink": {"expression": {"blink_left": 2.5, "blink_right": 2.5}, "jaw": 0.0, "eyelids": (1.0, 1.0)},
}
"""Presets by expression component name (the built-in head's names; components a head lacks are skipped),
with a jaw opening in radians about x and optional eyelid weights."""


# --- rotations --------------------------------------------------------------------------------------------


def axis_angle_to_quaternion(axis_angle: Any) -> np.ndarray:
    """[..., 3] axis-angle (radians) -> [..., 4] unit quaternion w x y z (float64)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    if aa.shape[-1:] != (3,):
        raise ValueError(f"axis-angle needs a last axis of 3, got shape {list(aa.shape)}")
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)  # [..., 1]
    half = 0.5 * angle
    # sin(θ/2)/θ, with its series near 0
    scale = np.where(angle > 1e-8, np.sin(half) / np.where(angle > 1e-8, angle, 1.0), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), aa * scale], axis=-1)


def quaternion_to_axis_angle(quaternion: Any) -> np.ndarray:
    """[..., 4] quaternion w x y z (any length > 0, normalised here) -> [..., 3] axis-angle, angle in [0, π]."""
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternion needs a last axis of 4, got shape {list(q.shape)}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("a zero quaternion has no rotation")
    q = q / norm
    q = np.where(q[..., :1] < 0, -q, q)  # w >= 0: the shorter way round
    vector = q[..., 1:]  # [..., 3]
    sin_half = np.linalg.norm(vector, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    scale = np.where(sin_half > 1e-8, angle / np.where(sin_half > 1e-8, sin_half, 1.0), 2.0)
    return vector * scale


def continuous_quaternions(quaternions: Any) -> np.ndarray:
    """[T, 4] -> [T, 4] with signs flipped so neighbours have a non-negative dot product (interpolate the
    short way between keyframes; q and -q are the same rotation)."""
    q = np.array(quaternions, dtype=np.float64)
    for t in range(1, len(q)):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    return q


def rotation_minus_identity(quaternion: Any) -> np.ndarray:
    """[..., 4] quaternion (normalised here) -> [..., 3, 3] R - I, from ROTATION_MINUS_IDENTITY_TERMS (the
    same polynomials the corrective drivers evaluate)."""
    q = np.asarray(quaternion, dtype=np.float64)
    parts = dict(zip("wxyz", np.moveaxis(q, -1, 0)))
    norm2 = sum(value * value for value in parts.values())
    rows = [[sum(c * parts[a] * parts[b] for c, a, b in entry) / norm2 for entry in row]
            for row in ROTATION_MINUS_IDENTITY_TERMS]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def corrective_expression(row: int, column: int) -> str:
    """The driver expression of (R - I)[row][column] in variables w x y z (a normalised quaternion)."""
    terms = ROTATION_MINUS_IDENTITY_TERMS[row][column]
    polynomial = "".join(f"{'-' if c < 0 else '+'}{abs(c):g}*{a}*{b}" for c, a, b in terms).lstrip("+")
    return f"({polynomial})/(w*w+x*x+y*y+z*z)"


# --- model data ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class RigData:
    """A head model as the rig needs it (the `head_model` job's result, validated).

    Attributes:
        head: the head name the backend loaded ('builtin' or a path on its machine).
        template: [V, 3] rest vertices.
        faces: [F, 3] triangles.
        shapedirs: [V, 3, S] identity blendshapes.
        exprdirs: [V, 3, E] expression blendshapes.
        eyelids: [2, V, 3] eyelid blendshapes, or None.
        posedirs: [36, V, 3] pose correctives; entry 9 (j - 1) + 3 r + c follows (R_j - I)[r][c].
        J_regressor: [5, V] rest joints from rest vertices.
        lbs_weights: [V, 5] skinning weights (rows sum to 1).
        parents: [5] parent joint, -1 for the root.
        shape_names: S names.
        expression_names: E names.
    """

    head: str
    template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    eyelids: np.ndarray | None
    posedirs: np.ndarray
    J_regressor: np.ndarray
    lbs_weights: np.ndarray
    parents: np.ndarray
    shape_names: tuple[str, ...]
    expression_names: tuple[str, ...]

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def n_expression(self) -> int:
        return self.exprdirs.shape[2]

    @property
    def rest_joints(self) -> np.ndarray:
        """[5, 3] joints of the template (bone heads)."""
        return self.J_regressor @ self.template

    def coefficient_dirs(self) -> np.ndarray:
        """[V, 3, K] every linear blendshape in coefficient order: shape, expression, then eyelids (K = S+E(+2))."""
        parts = [self.shapedirs, self.exprdirs]
        if self.eyelids is not None:
            parts.append(np.moveaxis(self.eyelids, 0, -1))  # [2, V, 3] -> [V, 3, 2]
        return np.concatenate(parts, axis=2)

    def joint_offset_table(self) -> np.ndarray:
        """[5, 3, K]: ΔJ_j[axis] = Σ_k table[j, axis, k] · coefficient_k (coefficients as in coefficient_dirs)."""
        return np.einsum("jv,vck->jck", self.J_regressor, self.coefficient_dirs())


def rig_data(result: Mapping[str, Any]) -> RigData:
    """Validate a `head_model` result into RigData; raises ValueError naming the bad key and its shape."""
    if not isinstance(result, Mapping):
        raise TypeError(f"head_model result must be a mapping, got {type(result).__name__}")

    def array(key: str, shape: tuple[int | None, ...], dtype: Any = np.float64) -> np.ndarray:
        if key not in result:
            raise ValueError(f"head_model result has no {key!r}")
        value = np.asarray(result[key], dtype=dtype)
        if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
            raise ValueError(f"head_model {key!r} must have shape {list(shape)}, got {list(value.shape)}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"head_model {key!r} has non-finite values")
        return value

    template = array("template", (None, 3))
    n_vertices = template.shape[0]
    faces = array("faces", (None, 3), np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= n_vertices):
        raise ValueError(f"head_model 'faces' index outside 0..{n_vertices - 1}: {faces.min()}..{faces.max()}")
    parents = array("parents", (N_JOINTS,), np.int64)
    if parents[0] != -1 or any(not 0 <= parents[j] < j for j in range(1, N_JOINTS)):
        raise ValueError(f"head_model 'parents' must be -1 then parents before children, got {parents.tolist()}")
    shapedirs = array("shapedirs", (n_vertices, 3, None))
    exprdirs = array("exprdirs", (n_vertices, 3, None))
    names = {key: tuple(str(n) for n in result.get(key, ())) for key in ("shape_names", "expression_names")}
    for key, count in (("shape_names", shapedirs.shape[2]), ("expression_names", exprdirs.shape[2])):
        if len(names[key]) != count:
            raise ValueError(f"head_model {key!r} has {len(names[key])} names for {count} components")
    weights = array("lbs_weights", (n_vertices, N_JOINTS))
    if np.abs(weights.sum(axis=1) - 1.0).max() > 1e-4:
        raise ValueError(f"head_model 'lbs_weights' rows must sum to 1 (Blender normalises them), worst sum "
                         f"{weights.sum(axis=1)[np.argmax(np.abs(weights.sum(axis=1) - 1.0))]:.6g}")
    return RigData(
        head=str(result.get("head", "")), template=template, faces=faces, shapedirs=shapedirs, exprdirs=exprdirs,
        eyelids=array("eyelids", (2, n_vertices, 3)) if result.get("eyelids") is not None else None,
        posedirs=array("posedirs", (4 * 9, n_vertices, 3)), J_regressor=array("J_regressor", (N_JOINTS, n_vertices)),
        lbs_weights=weights, parents=parents, **names)


# --- drivers --------------------------------------------------------------------------------------------------


def partial_sums(coefficients: Any, limit: int = EXPRESSION_LIMIT) -> list[tuple[str, list[int]]]:
    """Split Σ_k c_k · v_k into driver expressions of at most `limit` characters 

    Returns [(expression, [k, ...])]: expression i uses variables `a0`, `a1`, ... for the listed coefficient
    indices, in order. Zero coefficients are left out; printed with 15 significant digits (plain or
    exponent notation, both of which Blender's simple expression evaluator reads).
    """
    values = np.asarray(coefficients, dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"coefficients must be a finite vector, got shape {list(values.shape)}")
    out: list[tuple[str, list[int]]] = []
    text, used = "", []
    for k in np.flatnonzero(values):
        c = values[k]
        term = f"{'-' if c < 0 else '+'}{abs(c):.15g}*a{len(used)}"
        if used and len((text + term).lstrip("+")) > limit:
            out.append((text.lstrip("+"), used))
            text, used = "", []
            term = f"{'-' if c < 0 else '+'}{abs(c):.15g}*a0"
        text += term
        used.append(int(k))
    if used:
        out.append((text.lstrip("+"), used))
    return out


# --- parameters <-> rig values --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class RigValues:
    """Rig channel values for T frames (what the properties and bones hold).

    Attributes:
        shape: [T, S] obj.keyface.shape values.
        expression: [T, E] obj.keyface.expression values.
        eyelids: [T, 2] obj.keyface.eyelids, or None.
        translation: [T, 3] obj.keyface.translation.
        quaternions: [T, 5, 4] control-bone rotations (w x y z), joints in BONE_NAMES order.
    """

    shape: np.ndarray
    expression: np.ndarray
    eyelids: np.ndarray | None
    translation: np.ndarray
    quaternions: np.ndarray

    def channels(self) -> list[tuple[str, int, np.ndarray]]:
        """(data path on the rig object, array index, [T] values) for every channel, for bulk keyframing; the
        values are views into this object's arrays."""
        out = [(f"keyface.shape[{i}].value", 0, self.shape[:, i]) for i in range(self.shape.shape[1])]
        out += [(f"keyface.expression[{i}].value", 0, self.expression[:, i]) for i in range(self.expression.shape[1])]
        if self.eyelids is not None:
            out += [("keyface.eyelids", i, self.eyelids[:, i]) for i in range(2)]
        out += [("keyface.translation", i, self.translation[:, i]) for i in range(3)]
        for j, name in enumerate(BONE_NAMES):
            out += [(f'pose.bones["{name}"].rotation_quaternion', i, self.quaternions[:, j, i]) for i in range(4)]
        return out


def joint_axis_angles(sequence: Any) -> np.ndarray:
    """[T, 5, 3] per-joint axis-angles of a FlameSequence (global, neck, jaw, left eye, right eye)."""
    eyes = np.asarray(sequence.eyes, dtype=np.float64)
    return np.stack([np.asarray(sequence.rotation, np.float64), np.asarray(sequence.neck, np.float64),
                     np.asarray(sequence.jaw, np.float64), eyes[:, :3], eyes[:, 3:]], axis=1)


def sequence_to_rig_values(sequence: Any, n_shape: int, n_expression: int, has_eyelids: bool, *,
                           drop_eyelids: bool = False) -> RigValues:
    """A FlameSequence as rig values for a rig with S = n_shape, E = n_expression.

    Coefficients the rig lacks must be zero (else the rig could not reproduce the sequence); missing ones
    are zero. Eyelid weights on a rig whose head has no eyelid blendshapes are an error unless `drop_eyelids`
    (such a head shows no eyelids anywhere, in Blender or in the backend). Raises ValueError naming the first
    dropped non-zero component or an out-of-range value.
    """
    frames = len(sequence)

    def fit(name: str, values: Any, count: int) -> np.ndarray:
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))  # [T or 1, n]
        extra = values[:, count:]
        if extra.size and np.any(extra != 0):
            first = count + int(np.flatnonzero(np.any(extra != 0, axis=0))[0])
            raise ValueError(f"the sequence uses {name} component {first} (of {values.shape[1]}) but the rig has "
                             f"only {count}; rebuild the rig with at least {first + 1} {name} components")
        out = np.zeros((values.shape[0], count))
        out[:, :min(count, values.shape[1])] = values[:, :count]
        worst = np.abs(out).max(initial=0.0)
        if worst > MAX_COEFFICIENT:
            raise ValueError(f"{name} coefficient {worst:.6g} exceeds the rig's slider limit {MAX_COEFFICIENT}")
        return np.broadcast_to(out, (frames, count)).copy()

    eyelids = None
    if has_eyelids:
        eyelids = fit("eyelid", np.zeros((frames, 2)) if sequence.eyelids is None else sequence.eyelids, 2)
    elif sequence.eyelids is not None and np.any(np.asarray(sequence.eyelids) != 0) and not drop_eyelids:
        raise ValueError("the sequence has eyelid weights but the rig's head has no eyelid blendshapes")
    quaternions = np.stack([continuous_quaternions(q) for q in
                            np.moveaxis(axis_angle_to_quaternion(joint_axis_angles(sequence)), 1, 0)], axis=1)
    return RigValues(shape=fit("shape", sequence.shape, n_shape), expression=fit("expression", sequence.expression,
                                                                                  n_expression),
                     eyelids=eyelids, translation=np.asarray(sequence.translation, dtype=np.float64),
                     quaternions=quaternions)


def rig_values_to_fields(values: RigValues) -> dict[str, np.ndarray | None]:
    """Rig values -> FlameSequence fields (shape from the first frame; it must not change over the frames)."""
    if len(values.shape) and np.any(values.shape != values.shape[:1]):
        frame = int(np.flatnonzero(np.any(values.shape != values.shape[:1], axis=1))[0])
        raise ValueError(f"the rig's shape (identity) changes at row {frame}; a FLAME sequence has one identity, "
                         "so keep the shape constant over the exported frames")
    aa = quaternion_to_axis_angle(values.quaternions)  # [T, 5, 3]
    return {"shape": values.shape[0], "expression": values.expression, "rotation": aa[:, 0], "neck": aa[:, 1],
            "jaw": aa[:, 2], "eyes": np.concatenate([aa[:, 3], aa[:, 4]], axis=1), "translation": values.translation,
            "eyelids": values.eyelids}


def preset_values(preset: str, expression_names: Sequence[str]) -> tuple[dict[int, float], float,
                                                                           tuple[float, float] | None]:
    """({expression index: value}, jaw opening (rad), eyelids or None) of a preset for a head's components.

    Raises KeyError for an unknown preset."""
    if preset not in EXPRESSION_PRESETS:
        raise KeyError(f"unknown expression preset {preset!r}; known: {sorted(EXPRESSION_PRESETS)}")
    spec = EXPRESSION_PRESETS[preset]
    index = {name: i for i, name in enumerate(expression_names)}
    values = {index[name]: float(v) for name, v in spec["expression"].items() if name in index}
    return values, float(spec["jaw"]), spec.get("eyelids")


def random_values(rng: np.random.Generator, n_shape: int, n_expression: int, *, shape_scale: float = 1.0,
                  expression_scale: float = 1.0, pose_scale: float = 0.2) -> dict[str, np.ndarray]:
    """Random rig values: shape [S] and expression [E] ~ N(0, scale²) clipped to ±3 scale, jaw opening in
    [0, 1.5 pose_scale], neck and eyes ~ N(0, pose_scale²) per axis (axis-angles)."""
    def coefficients(count: int, scale: float) -> np.ndarray:
        return np.clip(rng.normal(size=count) * scale, -3 * scale, 3 * scale)

    jaw = np.array([rng.uniform(0.0, 1.5 * pose_scale), 0.0, 0.0])
    return {"shape": coefficients(n_shape, shape_scale), "expression": coefficients(n_expression, expression_scale),
            "neck": rng.normal(size=3) * pose_scale, "jaw": jaw, "eyes": np.tile(rng.normal(size=3) * pose_scale, 2)}
