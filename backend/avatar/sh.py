"""Real spherical harmonics as 3DGS uses them for view-dependent colour (degree 0-3).

Colour = 0.5 + sum_k basis_k(direction) * coefficient_k, clamped at 0 (the 3DGS convention; the DC term alone
gives 0.5 + C0 * f_dc). Coefficients are [..., K, 3] with K = (degree + 1)^2 in the 3DGS basis order.
(This is not `backend.render.sh`, the DECA irradiance basis for mesh shading.)
"""

from __future__ import annotations

from torch import Tensor

C0 = 0.28209479177387814
"""Degree-0 basis constant: colour = 0.5 + C0 * DC."""
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
       1.445305721320277, -0.5900435899266435)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """[..., 3] colours in [0, 1] -> [..., 3] DC coefficients."""
    return (rgb - 0.5) / C0


def sh_to_rgb(dc: Tensor) -> Tensor:
    """[..., 3] DC coefficients -> [..., 3] colours (not clamped)."""
    return dc * C0 + 0.5


def sh_degree_of(coefficients: int) -> int:
    """The degree whose (degree + 1)^2 equals `coefficients` (1, 4, 9 or 16)."""
    degrees = {1: 0, 4: 1, 9: 2, 16: 3}
    if coefficients not in degrees:
        raise ValueError(f"SH coefficient count must be 1, 4, 9 or 16 (degree 0-3), got {coefficients}")
    return degrees[coefficients]


def eval_sh(coefficients: Tensor, directions: Tensor) -> Tensor:
    """View-dependent colour.

    Args:
        coefficients: [..., K, 3] SH coefficients, K in (1, 4, 9, 16).
        directions: [..., 3] viewing directions (camera centre -> Gaussian; need not be unit).

    Returns:
        [..., 3] colours, clamped at 0 (not at 1).
    """
    degree = sh_degree_of(coefficients.shape[-2])
    c = coefficients
    result = C0 * c[..., 0, :]  # [..., 3]
    if degree > 0:
        d = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [..., 3]
        x, y, z = (d[..., i:i + 1] for i in range(3))  # 3 x [..., 1]
        result = result - _C1 * y * c[..., 1, :] + _C1 * z * c[..., 2, :] - _C1 * x * c[..., 3, :]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            result = (result + _C2[0] * xy * c[..., 4, :] + _C2[1] * yz * c[..., 5, :]
                      + _C2[2] * (2 * zz - xx - yy) * c[..., 6, :] + _C2[3] * xz * c[..., 7, :]
                      + _C2[4] * (xx - yy) * c[..., 8, :])
            if degree > 2:
                result = (result + _C3[0] * y * (3 * xx - yy) * c[..., 9, :] + _C3[1] * xy * z * c[..., 10, :]
                          + _C3[2] * y * (4 * zz - xx - yy) * c[..., 11, :]
                          + _C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * c[..., 12, :]
                          + _C3[4] * x * (4 * zz - xx - yy) * c[..., 13, :]
                          + _C3[5] * z * (xx - yy) * c[..., 14, :] + _C3[6] * x * (xx - 3 * yy) * c[..., 15, :])
    return (result + 0.5).clamp_min(0.0)
