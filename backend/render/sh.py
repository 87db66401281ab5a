"""Second-order spherical-harmonics (SH) irradiance with the basis, order and constants of DECA and the FLAME
trackers built on it (metrical-tracker `sh [1, 9, 3]`, VHAP `lights [9, 3]`), so their fitted lights plug in.

Normals are in *view axes*: x right, y up, z towards the viewer (the OpenCV camera axes with y and z negated),
the frame DECA lights in. (VHAP lights in its world frame, y up and the camera on +z: the same frame while
the camera looks straight at the head.) Basis order: 1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1, each times a
constant that folds in the clamped-cosine convolution (Ramamoorthi & Hanrahan 2001, as DECA writes it).
Irradiance = sum_k basis_k(n) * coefficient_k, per colour channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SH_CONSTANTS = (
    1.0 / math.sqrt(4.0 * math.pi),
    2.0 * math.pi / 3.0 * math.sqrt(3.0 / (4.0 * math.pi)),
    2.0 * math.pi / 3.0 * math.sqrt(3.0 / (4.0 * math.pi)),
    2.0 * math.pi / 3.0 * math.sqrt(3.0 / (4.0 * math.pi)),
    math.pi / 4.0 * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    math.pi / 4.0 * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    math.pi / 4.0 * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    math.pi / 4.0 * 1.5 * math.sqrt(5.0 / (12.0 * math.pi)),
    math.pi / 4.0 * 0.5 * math.sqrt(5.0 / (4.0 * math.pi)),
)
"""The 9 basis constants, in basis order."""


def sh_basis(normals: Tensor) -> Tensor:
    """Evaluate the 9 scaled SH basis functions.

    Args:
        normals: [..., 3] unit normals in view axes (x right, y up, z towards the viewer).

    Returns:
        [..., 9] basis values (constants included).
    """
    x, y, z = normals.unbind(-1)  # 3 x [...]
    basis = torch.stack([torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3.0 * z * z - 1.0],
                        dim=-1)  # [..., 9]
    return basis * basis.new_tensor(SH_CONSTANTS)  # [..., 9]


def sh_shading(normals: Tensor, coefficients: Tensor) -> Tensor:
    """Irradiance per pixel and channel.

    Args:
        normals: [B, H, W, 3] unit normals in view axes.
        coefficients: [B, 9, 3] or [9, 3] SH coefficients per colour channel (DECA order).

    Returns:
        [B, H, W, 3] shading (not clamped).
    """
    if not isinstance(coefficients, Tensor):
        raise TypeError(f"SH coefficients must be a torch.Tensor, got {type(coefficients).__name__}")
    if coefficients.ndim not in (2, 3) or tuple(coefficients.shape[-2:]) != (9, 3):
        raise ValueError(f"SH coefficients must have shape [9, 3] or [B, 9, 3], got {list(coefficients.shape)}")
    coefficients = coefficients.to(device=normals.device, dtype=normals.dtype)
    if coefficients.ndim == 2:
        coefficients = coefficients[None]
    if coefficients.shape[0] not in (1, normals.shape[0]):
        raise ValueError(f"SH coefficients have batch {coefficients.shape[0]}, maps have {normals.shape[0]}")
    basis = sh_basis(normals)  # [B, H, W, 9]
    return torch.einsum("bhwk,bkc->bhwc", basis, coefficients.expand(normals.shape[0], -1, -1))  # [B, H, W, 3]


def frontal_sh(ambient: float = 0.6, frontal: float = 0.4, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Coefficients of a soft white light from the camera: shading = ambient + frontal * n_z (view axes).

    A surface facing the camera gets ambient + frontal (1.0 by default), a silhouette gets `ambient`.

    Returns:
        [9, 3] SH coefficients.
    """
    coefficients = torch.zeros(9, 3, device=device, dtype=dtype)
    coefficients[0] = ambient / SH_CONSTANTS[0]
    coefficients[3] = frontal / SH_CONSTANTS[3]
    return coefficients
