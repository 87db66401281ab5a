"""Argument checks shared by the mesh modules (messages name the bad values)."""

from __future__ import annotations

import torch
from torch import Tensor


def describe(value: object) -> str:
    """dtype and shape of a tensor, else the type name."""
    if isinstance(value, Tensor):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__


def checked_faces(name: str, faces: object, num_vertices: int, device: torch.device) -> Tensor:
    """Integer [F, 3] with every index in 0..num_vertices - 1 -> int64 on device."""
    if not isinstance(faces, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(faces)}")
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool or faces.ndim != 2 \
            or faces.shape[1] != 3:
        raise ValueError(f"{name} must be an integer tensor [F, 3], got {describe(faces)}")
    faces = faces.to(device=device, dtype=torch.long)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= num_vertices):
        raise ValueError(f"{name} must index 0..{num_vertices - 1}, got indices in "
                         f"[{int(faces.min())}, {int(faces.max())}]")
    return faces
