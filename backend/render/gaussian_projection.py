"""EWA projection of 3D Gaussians to screen space, as gsplat 1.5.3's fused CUDA projection does it.

Mirrors `projection_ewa_3dgs_fused_fwd_kernel` (pinhole, no compensation, radius_clip 0), in plain PyTorch so
autograd gives the backward pass on any device:

- camera space: `x_c = R x + t`, covariance `R Σ Rᵀ` with `Σ = (R_q S)(R_q S)ᵀ` (quaternion normalised);
- Jacobian of the pinhole projection evaluated at the mean with x/z, y/z clamped to 1.3× the field of view
  (gsplat's `persp_proj`); the mean itself is projected without clamping, `(fx x/z + cx, fy y/z + cy)`
  (the skew `K[0, 1]` is ignored, as gsplat does);
- `eps2d` added to the diagonal of the 2D covariance; the conic is its inverse;
- radius per axis `ceil(extend · sqrt(Σ2d_ii))` with the opacity-aware extent
  `extend = min(3.33, sqrt(2 ln(255 opacity)))`, i.e. the box of the ellipse where alpha ≥ 1/255;
- culled (radius 0): depth outside [near, far], det ≤ 0, opacity < 1/255, box entirely off the image.

Culled Gaussians get finite placeholder values (their depth is replaced by 1 before dividing) so no NaN leaks
into the gradients of the others, and they receive exactly zero gradient.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
"""Smallest alpha a Gaussian contributes to a pixel (gsplat's ALPHA_THRESHOLD)."""
MAX_EXTEND = 3.33
"""Largest box half-size in standard deviations (gsplat)."""


@dataclasses.dataclass(frozen=True)
class ProjectedGaussians:
    """Screen-space Gaussians for C cameras; entries with `radii == 0` are culled and hold placeholders."""

    means2d: Tensor
    """[C, N, 2] centres in pixels (x right, y down; pixel (i, j) is sampled at (j + 0.5, i + 0.5))."""
    conics: Tensor
    """[C, N, 3] inverse blurred 2D covariance, upper triangle (xx, xy, yy)."""
    depths: Tensor
    """[C, N] camera-space z."""
    opacities: Tensor
    """[C, N] opacities broadcast over cameras."""
    radii: Tensor
    """[C, N, 2] int32 box half-sizes in pixels (x, y); 0 = culled."""


def quaternion_to_rotation(quats: Tensor) -> Tensor:
    """Rotation matrices from (not necessarily unit) wxyz quaternions.

    Args:
        quats: [..., 4] wxyz.

    Returns:
        [..., 3, 3].
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)  # [...]
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))  # [..., 3, 3]


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    K: Tensor,  # [C, 3, 3]
    world_to_camera: Tensor,  # [C, 4, 4]
    width: int,
    height: int,
    near: float,
    far: float,
    eps2d: float,
) -> ProjectedGaussians:
    """Project Gaussians into C pinhole cameras (arguments already validated by `rasterize_gaussians`)."""
    rotation = world_to_camera[:, :3, :3]  # [C, 3, 3]
    means_c = torch.einsum("cij,nj->cni", rotation, means) + world_to_camera[:, None, :3, 3]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]
    in_depth = (z >= near) & (z <= far)  # [C, N]
    z = torch.where(in_depth, z, torch.ones_like(z))  # [C, N] placeholder depth for culled Gaussians

    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]  # [C, 1]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]  # [C, 1]
    lim_x = 0.3 * 0.5 * width / fx  # [C, 1]
    lim_y = 0.3 * 0.5 * height / fy  # [C, 1]
    tx = z * torch.minimum(torch.maximum(x / z, -cx / fx - lim_x), (width - cx) / fx + lim_x)  # [C, N]
    ty = z * torch.minimum(torch.maximum(y / z, -cy / fy - lim_y), (height - cy) / fy + lim_y)  # [C, N]
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zeros, -fx * tx / (z * z),
                            zeros, fy / z, -fy * ty / (z * z)], dim=-1).reshape(z.shape + (2, 3))  # [C, N, 2, 3]

    factor = quaternion_to_rotation(quats) * scales[:, None, :]  # [N, 3, 3] R_q S
    projected = jacobian @ (rotation[:, None] @ factor[None])  # [C, N, 2, 3] J R R_q S
    cov_xx = projected[..., 0, :].square().sum(-1) + eps2d  # [C, N]
    cov_xy = (projected[..., 0, :] * projected[..., 1, :]).sum(-1)  # [C, N]
    cov_yy = projected[..., 1, :].square().sum(-1) + eps2d  # [C, N]
    det = cov_xx * cov_yy - cov_xy * cov_xy  # [C, N]
    valid_det = det > 0  # [C, N]
    det = torch.where(valid_det, det, torch.ones_like(det))  # [C, N]
    conics = torch.stack([cov_yy / det, -cov_xy / det, cov_xx / det], dim=-1)  # [C, N, 3]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [C, N, 2]

    with torch.no_grad():
        opacity = opacities.expand_as(z)  # [C, N]
        extend = torch.sqrt(2.0 * torch.log(opacity.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))  # [C, N]
        extend = extend.clamp_max(MAX_EXTEND)
        radius_x = torch.ceil(extend * cov_xx.clamp_min(0).sqrt())  # [C, N]
        radius_y = torch.ceil(extend * cov_yy.clamp_min(0).sqrt())  # [C, N]
        cx2d, cy2d = means2d.unbind(-1)  # [C, N]
        on_image = ((cx2d + radius_x > 0) & (cx2d - radius_x < width)
                    & (cy2d + radius_y > 0) & (cy2d - radius_y < height))  # [C, N]
        keep = in_depth & valid_det & (opacity >= ALPHA_THRESHOLD) & on_image  # [C, N]
        radii = (torch.stack([radius_x, radius_y], dim=-1) * keep[..., None]).to(torch.int32)  # [C, N, 2]
    return ProjectedGaussians(means2d=means2d, conics=conics, depths=means_c[..., 2],
                              opacities=opacities.expand_as(z), radii=radii)

