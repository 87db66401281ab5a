"""The data types that cross the wire: FLAME parameters, cameras and frames.

Every constructor validates (shape, dtype, finiteness, sane ranges) and raises `ProtocolError`
(a `ValueError`) with code `bad_value` and the offending values in the message. Arrays are stored
as read-only float32 copies, so a validated value cannot change afterwards.

Units: metres and radians. Rotations are axis-angle. Cameras use the OpenCV convention
(x right, y down, z forward; `K` in pixels; `world_to_camera` maps world points to camera points).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from .errors import ErrorCode, ProtocolError

# Sane ranges. Generous on purpose: they catch garbage (unit mix-ups, uninitialised memory), not art.
MAX_SHAPE_DIMS = 1024
"""Most shape (identity) coefficients a parameter set may carry (FLAME has 300)."""
MAX_EXPRESSION_DIMS = 1024
"""Most expression coefficients a parameter set may carry (FLAME has 100)."""
MAX_COEFFICIENT = 50.0
"""Largest |shape| or |expression| coefficient (coefficients are in standard deviations)."""
MAX_ANGLE = 4.0 * math.pi
"""Largest axis-angle magnitude in radians (two full turns; axis-angle beyond pi is still valid)."""
MAX_TRANSLATION = 1000.0
"""Largest |translation| component in metres."""
MAX_EYELID = 10.0
"""Largest |eyelid| blend weight."""
MAX_IMAGE_SIDE = 16384
"""Largest image width or height in pixels."""
MAX_FRAMES = 1_000_000
"""Most frames in one sequence."""

# name -> per-frame width (None: variable, validated against the model later)
_POSE_FIELDS = {"rotation": 3, "neck": 3, "jaw": 3, "eyes": 6, "translation": 3}


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, message)


def _summary(values: np.ndarray) -> str:
    """Short text naming where a bad array is bad."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat))
    if bad.size:
        return f"non-finite values at flat indices {bad[:5].tolist()} (e.g. {flat[bad[0]]})"
    worst = int(np.argmax(np.abs(flat)))
    return f"max |value| {abs(flat[worst]):.6g} at flat index {worst}"


def as_float_array(name: str, value: Any, shape: tuple[int | None, ...], limit: float | None = None) -> np.ndarray:
    """Validate `value` as a finite real array of `shape` (None = any size) and return a read-only float32 copy."""
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise _bad(f"{name} must be an array of numbers, got {type(value).__name__}: {error}") from None
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise _bad(f"{name} must have shape {want}, got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise _bad(f"{name} has {_summary(array)}")
    limit = _FLOAT32_MAX if limit is None else limit
    if array.size and np.max(np.abs(array)) > limit:
        raise _bad(f"{name} is out of range (|value| <= {limit:g}): {_summary(array)}")
    result = array.astype(np.float32)
    result.flags.writeable = False
    return result


def _check_angles(name: str, array: np.ndarray) -> None:
    """Axis-angle triplets along the last axis must have magnitude <= MAX_ANGLE."""
    norms = np.linalg.norm(array.reshape(*array.shape[:-1], -1, 3), axis=-1)
    if norms.size and norms.max() > MAX_ANGLE:
        raise _bad(f"{name} has an axis-angle of {norms.max():.6g} rad (limit {MAX_ANGLE:.6g}); "
                   "angles must be in radians")


@dataclasses.dataclass(frozen=True, eq=False)
class FlameParams:
    """FLAME parameters for one frame.

    Attributes:
        shape: [S] identity coefficients.
        expression: [E] expression coefficients.
        rotation: [3] global head rotation (axis-angle, radians).
        neck: [3] neck joint rotation.
        jaw: [3] jaw joint rotation.
        eyes: [6] left then right eyeball rotation.
        translation: [3] global translation in metres.
        eyelids: [2] optional left/right eyelid closure weights.
    """

    shape: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    neck: np.ndarray
    jaw: np.ndarray
    eyes: np.ndarray
    translation: np.ndarray
    eyelids: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "shape", as_float_array("shape", self.shape, (None,), MAX_COEFFICIENT))
        set_(self, "expression", as_float_array("expression", self.expression, (None,), MAX_COEFFICIENT))
        if self.shape.shape[0] > MAX_SHAPE_DIMS or self.expression.shape[0] > MAX_EXPRESSION_DIMS:
            raise _bad(f"too many coefficients: shape {self.shape.shape[0]} (max {MAX_SHAPE_DIMS}), "
                       f"expression {self.expression.shape[0]} (max {MAX_EXPRESSION_DIMS})")
        for name, width in _POSE_FIELDS.items():
            limit = MAX_TRANSLATION if name == "translation" else None
            set_(self, name, as_float_array(name, getattr(self, name), (width,), limit))
            if name != "translation":
                _check_angles(name, getattr(self, name))
        if self.eyelids is not None:
            set_(self, "eyelids", as_float_array("eyelids", self.eyelids, (2,), MAX_EYELID))

    @classmethod
    def neutral(cls, shape_dims: int = 0, expression_dims: int = 0) -> FlameParams:
        """All-zero parameters (the template head, looking straight ahead, mouth closed)."""
        zeros = np.zeros
        return cls(zeros(shape_dims), zeros(expression_dims), zeros(3), zeros(3), zeros(3), zeros(6), zeros(3))

    def to_wire(self) -> dict[str, np.ndarray]:
        """Plain dict of arrays (the codec turns arrays into buffers)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> FlameParams:
        return cls(**_known_fields(cls, data, "FlameParams"))


@dataclasses.dataclass(frozen=True, eq=False)
class FlameSequence:
    """FLAME parameters for T frames; one identity for the whole sequence.

    Attributes:
        shape: [S] identity coefficients, shared by every frame.
        expression: [T, E]
        rotation: [T, 3] global rotation (axis-angle).
        neck: [T, 3]
        jaw: [T, 3]
        eyes: [T, 6] left then right.
        translation: [T, 3] metres.
        eyelids: [T, 2] optional.
        fps: frames per second (> 0).
        frame_start: the timeline frame number of row 0.
    """

    shape: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    neck: np.ndarray
    jaw: np.ndarray
    eyes: np.ndarray
    translation: np.ndarray
    eyelids: np.ndarray | None = None
    fps: float = 25.0
    frame_start: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "shape", as_float_array("shape", self.shape, (None,), MAX_COEFFICIENT))
        expression = as_float_array("expression", self.expression, (None, None), MAX_COEFFICIENT)
        set_(self, "expression", expression)
        frames = expression.shape[0]
        if not 1 <= frames <= MAX_FRAMES:
            raise _bad(f"a sequence needs 1..{MAX_FRAMES} frames, got {frames}")
        if self.shape.shape[0] > MAX_SHAPE_DIMS or expression.shape[1] > MAX_EXPRESSION_DIMS:
            raise _bad(f"too many coefficients: shape {self.shape.shape[0]} (max {MAX_SHAPE_DIMS}), "
                       f"expression {expression.shape[1]} (max {MAX_EXPRESSION_DIMS})")
        for name, width in _POSE_FIELDS.items():
            limit = MAX_TRANSLATION if name == "translation" else None
            set_(self, name, as_float_array(name, getattr(self, name), (frames, width), limit))
            if name != "translation":
                _check_angles(name, getattr(self, name))
        if self.eyelids is not None:
            set_(self, "eyelids", as_float_array("eyelids", self.eyelids, (frames, 2), MAX_EYELID))
        fps = _as_number("fps", self.fps)
        if not 0.0 < fps <= 1000.0:
            raise _bad(f"fps must be in (0, 1000], got {fps}")
        set_(self, "fps", fps)
        if isinstance(self.frame_start, bool) or not isinstance(self.frame_start, (int, np.integer)):
            raise _bad(f"frame_start must be an integer, got {self.frame_start!r}")
        if abs(int(self.frame_start)) > 1_048_574:  # Blender's frame range
            raise _bad(f"frame_start {self.frame_start} is outside Blender's frame range")
        set_(self, "frame_start", int(self.frame_start))

    def __len__(self) -> int:
        return self.expression.shape[0]

    def frame(self, index: int) -> FlameParams:
        """The parameters of row `index` (0-based, not the timeline frame number)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame index {index} out of range for a {len(self)}-frame sequence")
        rows = {name: getattr(self, name)[index] for name in (*_POSE_FIELDS, "expression")}
        eyelids = None if self.eyelids is None else self.eyelids[index]
        return FlameParams(shape=self.shape, eyelids=eyelids, **rows)

    @classmethod
    def from_frames(cls, frames: list[FlameParams], fps: float = 25.0, frame_start: int = 0) -> FlameSequence:
        """Stack per-frame parameters; they must share one identity (shape vector)."""
        if not frames:
            raise _bad("from_frames needs at least one frame")
        shape = frames[0].shape
        for i, params in enumerate(frames):
            if params.shape.shape != shape.shape or not np.array_equal(params.shape, shape):
                raise _bad(f"frame {i} has a different shape (identity) vector than frame 0")
        with_lids = [p.eyelids is not None for p in frames]
        if any(with_lids) and not all(with_lids):
            raise _bad("either every frame or none must carry eyelids")
        stack = {name: np.stack([getattr(p, name) for p in frames]) for name in (*_POSE_FIELDS, "expression")}
        eyelids = np.stack([p.eyelids for p in frames]) if all(with_lids) else None
        return cls(shape=shape, eyelids=eyelids, fps=fps, frame_start=frame_start, **stack)

    def to_wire(self) -> dict[str, Any]:
        """Plain dict of arrays and numbers (the codec turns arrays into buffers)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> FlameSequence:
        return cls(**_known_fields(cls, data, "FlameSequence"))


@dataclasses.dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera in the OpenCV convention.

    Attributes:
        K: [3, 3] intrinsics in pixels (fx, fy > 0; last row 0 0 1).
        world_to_camera: [4, 4] rigid transform (rotation orthonormal, det +1, last row 0 0 0 1).
        width: image width in pixels.
        height: image height in pixels.
        near: near clip distance in metres (> 0).
        far: far clip distance in metres (> near).
    """

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        K = as_float_array("K", self.K, (3, 3))
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise _bad(f"K focal lengths must be positive pixels, got fx={K[0, 0]:.6g} fy={K[1, 1]:.6g}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
            raise _bad(f"K must be upper triangular with last row [0, 0, 1], got {K.tolist()}")
        set_(self, "K", K)
        pose = as_float_array("world_to_camera", self.world_to_camera, (4, 4), MAX_TRANSLATION)
        rotation = pose[:3, :3].astype(np.float64)
        orthogonality = np.abs(rotation @ rotation.T - np.eye(3)).max()
        if orthogonality > 1e-4 or np.linalg.det(rotation) < 0 or not np.allclose(pose[3], [0, 0, 0, 1]):
            raise _bad("world_to_camera must be a rigid transform (orthonormal rotation with det +1, last row "
                       f"[0, 0, 0, 1]); off-orthogonality {orthogonality:.3g}, det {np.linalg.det(rotation):.6g}, "
                       f"last row {pose[3].tolist()}")
        set_(self, "world_to_camera", pose)
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_IMAGE_SIDE:
                raise _bad(f"{name} must be an integer in 1..{MAX_IMAGE_SIDE}, got {value!r}")
            set_(self, name, int(value))
        near, far = _as_number("near", self.near), _as_number("far", self.far)
        if not 0.0 < near < far:
            raise _bad(f"clip range must satisfy 0 < near < far, got near={near} far={far}")
        set_(self, "near", near)
        set_(self, "far", far)

    @property
    def camera_to_world(self) -> np.ndarray:
        """[4, 4] inverse of `world_to_camera` (float64)."""
        return np.linalg.inv(self.world_to_camera.astype(np.float64))

    def project(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] world points -> [N, 3] (u, v in pixels with (0, 0) the top-left corner of pixel 0, depth z)."""
        points = np.asarray(points, dtype=np.float64)
        pose = self.world_to_camera.astype(np.float64)
        cam = points @ pose[:3, :3].T + pose[:3, 3]  # [N, 3]
        uv = cam @ self.K.astype(np.float64).T  # [N, 3]
        return np.concatenate([uv[:, :2] / uv[:, 2:3], cam[:, 2:3]], axis=1)

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Camera:
        return cls(**_known_fields(cls, data, "Camera"))


_FRAME_DTYPES = (np.dtype(np.uint8), np.dtype(np.float16))


def check_frame_pixels(pixels: Any) -> None:
    """Raise ProtocolError unless `pixels` is an [H, W, 4] uint8 or finite float16 array of a sane size."""
    if not isinstance(pixels, np.ndarray):
        raise _bad(f"Frame pixels must be a numpy array, got {type(pixels).__name__}")
    if pixels.dtype not in _FRAME_DTYPES:
        raise _bad(f"Frame pixels must be uint8 or float16, got {pixels.dtype}")
    if pixels.ndim != 3 or pixels.shape[2] != 4:
        raise _bad(f"Frame pixels must have shape [H, W, 4], got {list(pixels.shape)}")
    if not (1 <= pixels.shape[0] <= MAX_IMAGE_SIDE and 1 <= pixels.shape[1] <= MAX_IMAGE_SIDE):
        raise _bad(f"Frame size {pixels.shape[1]}x{pixels.shape[0]} is outside 1..{MAX_IMAGE_SIDE}")
    if pixels.dtype == np.float16 and not np.all(np.isfinite(pixels)):
        raise _bad(f"Frame pixels have {_summary(pixels)}")


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One image: [H, W, 4] RGBA, uint8 (sRGB) or float16 (linear), straight alpha, row 0 at the top.

    Attributes:
        pixels: [H, W, 4] uint8 or float16 (finite).
    """

    pixels: np.ndarray

    def __post_init__(self) -> None:
        check_frame_pixels(self.pixels)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise _bad(f"{name} is out of range: {value}") from None
    if not math.isfinite(number):
        raise _bad(f"{name} must be finite, got {number}")
    return number


def _known_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise _bad(f"{what} must be an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise _bad(f"{what} has unknown fields {unknown}; expected some of {sorted(names)}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise _bad(f"{what} is missing fields {missing}")
    return dict(data)
