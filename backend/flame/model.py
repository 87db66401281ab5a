"""`FlameModel`: the FLAME head as a torch module (any device), built from `smplx.lbs`.

Keyface adds loading, layout and API; the skinning math is smplx's (`blend_shapes`, `vertices2joints`,
`batch_rodrigues`, `batch_rigid_transform`, `vertices2landmarks`), composed as in `smplx.lbs.lbs` so the
per-joint transforms come out too. Output matches `smplx.FLAME` on the same file and parameters.

Eyelid blendshapes (metrical-tracker's `l_eyelid.npy` / `r_eyelid.npy`) are added to the rest-pose template
before skinning, as VHAP does, so closed lids turn with the head and neck. (metrical-tracker adds them after
skinning; its sequences keep the head unrotated, so the two differ only by the neck's turn of the lid offsets.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints, vertices2landmarks
from torch import nn

from shared_proto.types import FlameParams, FlameSequence

from .io import N_JOINTS, FlameData, FlameFileError, FlameFileMissingError, PathLike, read_flame

BUILTIN_HEAD_PATH = Path(__file__).resolve().parent / "assets" / "keyface_head.npz"
"""Keyface's own licence-free head (same `.npz` layout as a FLAME file), made by `make_builtin_head`."""
_BUILTIN_HINT = "Generate it with `python -m backend.flame.make_builtin_head`."

# pose argument -> columns, in the order of FLAME's pose vector (joints 0..4)
_POSE_WIDTHS = {"rotation": 3, "neck": 3, "jaw": 3, "eyes": 6}
# every argument of `forward` -> columns (None: up to the model's component count)
_WIDTHS = {"shape": None, "expression": None, **_POSE_WIDTHS, "translation": 3, "eyelids": 2}


@dataclasses.dataclass(frozen=True, eq=False)
class FlameOutput:
    """One batch of posed FLAME heads.

    Attributes:
        vertices: [B, V, 3] posed vertices in metres (translation included).
        joints: [B, 5, 3] posed joints: global, neck, jaw, left eye, right eye.
        landmarks: [B, L, 3] landmarks on the posed surface ([B, 0, 3] when the model has no embedding).
        transforms: [B, 5, 4, 4] per-joint skinning transforms: a rest-pose point (after shape, expression,
            eyelid and pose-corrective offsets) bound rigidly to joint j lands at `transforms[b, j] @ [p, 1]`.
            Vertices are the skinning-weighted blend of these.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks: torch.Tensor
    transforms: torch.Tensor


class FlameModel(nn.Module):
    """The FLAME head model: shape, expression, pose and eyelid parameters in, posed mesh out.

    Build it with `FlameModel.from_file(...)` or `FlameModel.builtin()`. All tensors are buffers, so
    `.to(device)` / `.double()` move and convert the whole model; float32 by default.
    """

    def __init__(self, data: FlameData, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(data, FlameData):
            raise TypeError(f"FlameModel needs FlameData (see FlameModel.from_file), got {type(data).__name__}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.source = data.path
        self.n_shape = data.n_shape
        self.n_expression = data.shapedirs.shape[2] - data.n_shape
        self.shape_names = data.shape_names
        self.expression_names = data.expression_names

        def floats(array: np.ndarray) -> torch.Tensor:
            return torch.tensor(array, dtype=dtype)

        def longs(array: np.ndarray) -> torch.Tensor:
            return torch.tensor(array, dtype=torch.long)

        n_vertices = data.v_template.shape[0]
        self.register_buffer("v_template", floats(data.v_template))  # [V, 3]
        self.register_buffer("shapedirs", floats(data.shapedirs))  # [V, 3, S + E]
        # [V, 3, 36] -> [36, V * 3], the layout smplx.lbs multiplies with
        self.register_buffer("posedirs", floats(data.posedirs.reshape(n_vertices * 3, -1).T))
        self.register_buffer("J_regressor", floats(data.J_regressor))  # [5, V]
        self.register_buffer("parents", longs(data.parents))  # [5]
        self.register_buffer("lbs_weights", floats(data.weights))  # [V, 5]
        self.register_buffer("faces", longs(data.faces))  # [F, 3]
        self.register_buffer("landmark_faces", longs(data.landmark_faces))  # [L]
        self.register_buffer("landmark_barycentric", floats(data.landmark_barycentric))  # [L, 3]
        self.register_buffer("mediapipe_indices", longs(data.mediapipe_indices))  # [L], -1: none
        eyelids = None if data.eyelids is None else floats(data.eyelids)  # [2, V, 3]
        self.register_buffer("eyelid_blendshapes", eyelids)

    @classmethod
    def from_file(cls, path: PathLike, *, eyelids: PathLike | Sequence[PathLike] | None = None,
                  landmarks: PathLike | None = None, mediapipe_embedding: PathLike | None = None,
                  dtype: torch.dtype = torch.float32) -> FlameModel:
        """Load an official FLAME `.pkl` (2020 / 2023, chumpy-free) or an `.npz` with the same keys.

        Args:
            path: the model file.
            eyelids: a folder with metrical-tracker's `l_eyelid.npy` and `r_eyelid.npy`, or that (left, right)
                pair of files; replaces eyelids embedded in an `.npz`.
            landmarks: FLAME's `flame_static_embedding.pkl`.
            mediapipe_embedding: metrical-tracker's `mediapipe_landmark_embedding.npz`.
            dtype: floating-point type of the model's tensors.

        Raises:
            FlameFileMissingError: (a FileNotFoundError) a file does not exist.
            FlameFileError: (a ValueError) a file is unreadable or has the wrong layout.
        """
        data = read_flame(path, eyelids=eyelids, landmarks=landmarks, mediapipe_embedding=mediapipe_embedding)
        return cls(data, dtype=dtype)

    @classmethod
    def builtin(cls, dtype: torch.dtype = torch.float32) -> FlameModel:
        """Keyface's built-in head (`backend/flame/assets/keyface_head.npz`), for use without a FLAME licence."""
        if not BUILTIN_HEAD_PATH.is_file():
            raise FlameFileMissingError(BUILTIN_HEAD_PATH, "the built-in head asset is missing", _BUILTIN_HINT)
        try:
            data = read_flame(BUILTIN_HEAD_PATH)
        except FlameFileError as error:
            raise FlameFileError(BUILTIN_HEAD_PATH, f"the built-in head asset is broken: {error.problem}",
                                 _BUILTIN_HINT) from error
        return cls(data, dtype=dtype)

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def n_landmarks(self) -> int:
        return self.landmark_faces.shape[0]

    @property
    def has_eyelids(self) -> bool:
        return self.eyelid_blendshapes is not None

    def forward(self, shape: torch.Tensor | None = None, expression: torch.Tensor | None = None,
                rotation: torch.Tensor | None = None, neck: torch.Tensor | None = None,
                jaw: torch.Tensor | None = None, eyes: torch.Tensor | None = None,
                translation: torch.Tensor | None = None, eyelids: torch.Tensor | None = None) -> FlameOutput:
        """Pose the head. Omitted arguments are zeros; an argument with one row is shared by the whole batch.

        Args:
            shape: [B, s] identity coefficients, s <= n_shape (missing columns are zeros).
            expression: [B, e] expression coefficients, e <= n_expression.
            rotation: [B, 3] global rotation (axis-angle, radians) about the root joint.
            neck: [B, 3] neck rotation.
            jaw: [B, 3] jaw rotation.
            eyes: [B, 6] left then right eyeball rotation.
            translation: [B, 3] metres, applied last.
            eyelids: [B, 2] left / right eyelid weights (needs a model with eyelid blendshapes).

        Returns:
            FlameOutput with vertices [B, V, 3], joints [B, 5, 3], landmarks [B, L, 3], transforms [B, 5, 4, 4].
        """
        given = {"shape": shape, "expression": expression, "rotation": rotation, "neck": neck, "jaw": jaw,
                 "eyes": eyes, "translation": translation, "eyelids": eyelids}
        args = {name: self._checked(name, value, _WIDTHS[name]) for name, value in given.items() if value is not None}
        batch = self._batch_size(args)
        for name, available in (("shape", self.n_shape), ("expression", self.n_expression)):
            if name in args and args[name].shape[1] > available:
                raise ValueError(f"{name} has {args[name].shape[1]} columns but the model has {available} "
                                 f"{name} components")
        if "eyelids" in args and not self.has_eyelids:
            raise ValueError(f"eyelids were given but the model from {self.source} has no eyelid blendshapes; "
                             "load it with eyelids=<folder with l_eyelid.npy and r_eyelid.npy>")

        def column(name: str, width: int) -> torch.Tensor:  # [B, width], zero-padded on the right
            value = args.get(name)
            if value is None:
                return self.v_template.new_zeros(batch, width)
            return F.pad(value, (0, width - value.shape[1])).expand(batch, -1)

        coefficients = torch.cat([column("shape", self.n_shape), column("expression", self.n_expression)], dim=1)
        pose = torch.cat([column(name, width) for name, width in _POSE_WIDTHS.items()], dim=1)  # [B, 15]
        translation = column("translation", 3)  # [B, 3]

        # 1. Rest pose: template (+ eyelids) + identity and expression blendshapes; joints regressed from it.
        template = self.v_template  # [V, 3]
        if "eyelids" in args:
            template = template + torch.einsum("bk,kvc->bvc", column("eyelids", 2), self.eyelid_blendshapes)
        v_shaped = template + blend_shapes(coefficients, self.shapedirs)  # [B, V, 3]
        rest_joints = vertices2joints(self.J_regressor, v_shaped)  # [B, 5, 3]

        # 2. Pose correctives from the non-root joint rotations.
        rotations = batch_rodrigues(pose.reshape(-1, 3)).reshape(batch, N_JOINTS, 3, 3)  # [B, 5, 3, 3]
        identity = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rotations[:, 1:] - identity).reshape(batch, -1)  # [B, 36]
        v_posed = v_shaped + torch.matmul(pose_feature, self.posedirs).reshape(batch, -1, 3)  # [B, V, 3]

        # 3. Forward kinematics and linear blend skinning.
        joints, relative = batch_rigid_transform(rotations, rest_joints, self.parents, dtype=pose.dtype)
        blended = torch.matmul(self.lbs_weights, relative.reshape(batch, N_JOINTS, 16))  # [B, V, 16]
        homogeneous = F.pad(v_posed, (0, 1), value=1.0).unsqueeze(-1)  # [B, V, 4, 1]
        vertices = torch.matmul(blended.reshape(batch, -1, 4, 4), homogeneous)[:, :, :3, 0]  # [B, V, 3]

        # 4. Landmarks on the posed surface, then the global translation.
        if self.n_landmarks:
            landmarks = vertices2landmarks(vertices, self.faces, self.landmark_faces.expand(batch, -1).contiguous(),
                                           self.landmark_barycentric.expand(batch, -1, -1))  # [B, L, 3]
        else:
            landmarks = vertices.new_zeros(batch, 0, 3)
        offset = translation.unsqueeze(1)  # [B, 1, 3]
        last_column = F.pad(translation, (0, 1))[:, None, :, None]  # [B, 1, 4, 1]
        transforms = torch.cat([relative[..., :3], relative[..., 3:] + last_column], dim=-1)  # [B, 5, 4, 4]
        return FlameOutput(vertices=vertices + offset, joints=joints + offset, landmarks=landmarks + offset,
                           transforms=transforms)

    def forward_params(self, params: FlameParams | FlameSequence) -> FlameOutput:
        """Pose the head for one frame (B = 1) or a whole sequence (B = T, one shared shape vector)."""
        if not isinstance(params, (FlameParams, FlameSequence)):
            raise TypeError(f"forward_params needs FlameParams or FlameSequence, got {type(params).__name__}")
        device, dtype = self.v_template.device, self.v_template.dtype

        def rows(value: np.ndarray | None) -> torch.Tensor | None:  # [n] -> [1, n]; [T, n] stays
            return None if value is None else torch.tensor(np.atleast_2d(value), dtype=dtype, device=device)

        return self(**{name: rows(getattr(params, name)) for name in _WIDTHS})

    def _checked(self, name: str, value: object, width: int | None) -> torch.Tensor:
        """`value` as a [B, width] tensor on the model's device and dtype."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, {width or 'n'}], got {type(value).__name__}")
        if value.ndim != 2 or (width is not None and value.shape[1] != width):
            raise ValueError(f"{name} must have shape [B, {width or 'n'}], got {list(value.shape)}")
        return value.to(device=self.v_template.device, dtype=self.v_template.dtype)

    @staticmethod
    def _batch_size(args: dict[str, torch.Tensor]) -> int:
        sizes = {name: value.shape[0] for name, value in args.items()}
        batch = max(sizes.values(), default=1)
        if batch == 0 or any(size not in (1, batch) for size in sizes.values()):
            raise ValueError(f"batch sizes must agree (or be 1 to share a row) and be at least 1, got {sizes}")
        return batch
