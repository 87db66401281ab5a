"""Dense reference compositor: every visible Gaussian over every pixel, front to back.

Plain and slow on purpose; it is the ground truth for the tile rasterizer's parity tests and the baseline of
`bench/render.py`. Compositing rules are gsplat's (`rasterize_to_pixels_3dgs_fwd_kernel`), per pixel, in depth
order (ties: lower index first):

    alpha_i = min(0.999, o_i exp(-sigma_i)),  sigma_i = ½ dᵀ conic_i d,  d = mean_i - pixel centre
    skip the Gaussian where alpha_i < 1/255
    stop before the first Gaussian whose transmittance after it, T (1 - alpha_i), is <= 1e-4 (exclusive)
    colour = Σ alpha_i T_i f_i,   accumulated alpha = 1 - T_final

(gsplat also skips sigma < 0, which with the positive-definite blurred conic only happens through rounding; it
is left out here and in the tile rasterizer.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gaussian_projection import ALPHA_THRESHOLD, ProjectedGaussians

MAX_ALPHA = 0.999
"""Alpha clamp of a single Gaussian (gsplat)."""
MIN_TRANSMITTANCE = 1e-4
"""A pixel stops compositing before a Gaussian would bring its transmittance to this or below (gsplat)."""


def pixel_centres(width: int, height: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[H * W, 2] pixel centres (x, y) = (j + 0.5, i + 0.5), row-major."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                            torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # [H * W, 2]


def composite_dense(
    projected: ProjectedGaussians,
    features: Tensor,  # [C, N, D]
    width: int,
    height: int,
    evaluations_per_chunk: int = 1 << 22,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite projected Gaussians densely.

    Args:
        projected: screen-space Gaussians of C cameras (`radii == 0` are left out).
        features: [C, N, D] per-camera features to composite.
        width, height: image size in pixels.
        evaluations_per_chunk: pixels x Gaussians evaluated at once (bounds memory).

    Returns:
        features [C, H, W, D] (no background) and accumulated alpha [C, H, W, 1].
    """
    pixels = pixel_centres(width, height, features.device, features.dtype)  # [P, 2]
    images, alphas = [], []
    for camera in range(features.shape[0]):
        ids = torch.nonzero((projected.radii[camera] > 0).all(-1)).squeeze(1)  # [M]
        ids = ids[torch.argsort(projected.depths[camera, ids], stable=True)]  # [M] front to back
        means = projected.means2d[camera, ids]  # [M, 2]
        conics = projected.conics[camera, ids]  # [M, 3]
        opacities = projected.opacities[camera, ids]  # [M]
        values = features[camera, ids]  # [M, D]
        step = max(1, evaluations_per_chunk // max(len(ids), 1))
        image, alpha = [], []
        for start in range(0, len(pixels), step):
            delta = means[None] - pixels[start:start + step, None]  # [P, M, 2]
            dx, dy = delta.unbind(-1)  # [P, M]
            sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy  # [P, M]
            a = (opacities * torch.exp(-sigma)).clamp_max(MAX_ALPHA)  # [P, M]
            a = torch.where(a >= ALPHA_THRESHOLD, a, 0.0)  # [P, M]
            survives = torch.cumprod(1.0 - a, dim=-1) > MIN_TRANSMITTANCE  # [P, M] transmittance after each
            a = torch.where(survives, a, 0.0)  # [P, M]
            after = torch.cumprod(1.0 - a, dim=-1)  # [P, M]
            before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], dim=-1)  # [P, M]
            image.append((a * before) @ values)  # [P, D]
            alpha.append(1.0 - torch.prod(1.0 - a, dim=-1, keepdim=True))  # [P, 1]
        images.append(torch.cat(image).reshape(height, width, -1))
        alphas.append(torch.cat(alpha).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)  # [C, H, W, D], [C, H, W, 1]
