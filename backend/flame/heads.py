"""Heads by name for jobs: 'builtin' or a FLAME file on the backend's machine, loaded once and cached."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from .io import FlameFileMissingError
from .model import BUILTIN_HEAD_PATH, FlameModel

BUILTIN = "builtin"


def head_path(name: str) -> Path:
    """The model file a head name refers to ('builtin' or a path; '~' expanded)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"head must be 'builtin' or the path of a FLAME file, got {name!r}")
    return BUILTIN_HEAD_PATH if name == BUILTIN else Path(name).expanduser().resolve()


def load_head(name: str = BUILTIN, device: str = "cpu") -> FlameModel:
    """The FlameModel for `name` on `device` (cached per file version and device)."""
    path = head_path(name)
    if not path.is_file():
        if name == BUILTIN:
            return FlameModel.builtin()  # raises with the generator command
        raise FlameFileMissingError(path, "the FLAME model file does not exist")
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size, device)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int, device: str) -> FlameModel:
    return FlameModel.from_file(path).to(device).eval()


@dataclasses.dataclass(frozen=True)
class HeadAppearance:
    """A head's UV layout and albedo texture.

    Attributes:
        uvs: [Vt, 2] texture coordinates (v up, OBJ convention).
        uv_faces: [F, 3] indices into `uvs`, one triangle per mesh face.
        texture: [H, W, 3] uint8 albedo, row 0 at the top.
    """

    uvs: np.ndarray
    uv_faces: np.ndarray
    texture: np.ndarray

    def tensors(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(uvs [Vt, 2] float32, uv_faces [F, 3] long, texture [H, W, 3] float32 in [0, 1])."""
        return (torch.tensor(self.uvs, dtype=torch.float32, device=device),
                torch.tensor(self.uv_faces, dtype=torch.long, device=device),
                torch.tensor(self.texture, dtype=torch.float32, device=device) / 255.0)


def head_appearance(name: str = BUILTIN) -> HeadAppearance | None:
    """UVs + texture stored in a head's `.npz` (the built-in head has them; official FLAME files do not)."""
    path = head_path(name)
    if path.suffix != ".npz" or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "texture" not in data.files:
            return None
        faces = np.asarray(data["f"], dtype=np.int64)
        if "vt" in data.files and "ft" in data.files:
            uvs, uv_faces = np.asarray(data["vt"], np.float32), np.asarray(data["ft"], np.int64)
        elif "uv" in data.files:
            uvs, uv_faces = np.asarray(data["uv"], np.float32), faces
        else:
            return None
        texture = np.asarray(data["texture"], dtype=np.uint8)
    if uv_faces.shape != faces.shape or texture.ndim != 3 or texture.shape[2] != 3:
        raise ValueError(f"{path}: UV faces {uv_faces.shape} must match faces {faces.shape} and the texture must "
                         f"be [H, W, 3], got {texture.shape}")
    return HeadAppearance(uvs, uv_faces, texture)
