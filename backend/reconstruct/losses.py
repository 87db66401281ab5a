"""Photometric losses of avatar optimisation: L1, SSIM / D-SSIM (a fast separable path and a plain reference),
the mask loss, the Neural Gaussian Texture's stable loss (PortraitGen), and GaussianAvatars' binding regularisers.

Images are channels-last [B, H, W, C] floats. SSIM follows Wang et al. 2004 as scikit-image computes it with
`gaussian_weights=True`: an 11 x 11 Gaussian window (sigma 1.5), population statistics, C1 = (0.01 L)^2,
C2 = (0.03 L)^2 with L = 1, and the mean over the "valid" window positions only (no padding).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
"""Side of the SSIM window in pixels."""
SSIM_SIGMA = 1.5
"""Standard deviation of the SSIM Gaussian window in pixels."""
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def l1(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error (scalar)."""
    _same(prediction, target)
    return (prediction - target).abs().mean()


@functools.lru_cache(maxsize=8)
def _window_1d(size: int, sigma: float, dtype: torch.dtype, device: str) -> Tensor:
    """[size] normalised Gaussian weights."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def ssim_map(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM [B, H - 10, W - 10, C] over the valid 11 x 11 window positions (separable Gaussian)."""
    _same(prediction, target)
    _check_window(prediction)
    channels = prediction.shape[-1]
    x = prediction.permute(0, 3, 1, 2)  # [B, C, H, W]
    y = target.permute(0, 3, 1, 2)
    window = _window_1d(SSIM_WINDOW, SSIM_SIGMA, x.dtype, str(x.device))
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5C, H, W]
    kernel_h = window.view(1, 1, 1, -1).expand(5 * channels, 1, 1, SSIM_WINDOW)
    kernel_v = window.view(1, 1, -1, 1).expand(5 * channels, 1, SSIM_WINDOW, 1)
    filtered = F.conv2d(F.conv2d(stacked, kernel_h, groups=5 * channels), kernel_v, groups=5 * channels)
    mu_x, mu_y, xx, yy, xy = filtered.split(channels, dim=1)  # [B, C, h, w] each
    return _ssim_formula(mu_x, mu_y, xx, yy, xy).permute(0, 2, 3, 1)


def ssim_map_reference(prediction: Tensor, target: Tensor) -> Tensor:
    """`ssim_map` computed plainly: every 11 x 11 patch unfolded and weighted by the 2D Gaussian (slow; tests)."""
    _same(prediction, target)
    _check_window(prediction)
    batch, height, width, channels = prediction.shape
    window = _window_1d(SSIM_WINDOW, SSIM_SIGMA, prediction.dtype, str(prediction.device))
    weights = (window[:, None] * window[None, :]).reshape(-1, 1)  # [121, 1]

    def patches(image: Tensor) -> Tensor:  # [B, C, 121, L]
        flat = image.permute(0, 3, 1, 2).reshape(batch * channels, 1, height, width)
        return F.unfold(flat, SSIM_WINDOW).reshape(batch, channels, SSIM_WINDOW ** 2, -1)

    px, py = patches(prediction), patches(target)
    mean = lambda values: (values * weights).sum(dim=2)  # noqa: E731  [B, C, L]
    mu_x, mu_y, xx, yy, xy = mean(px), mean(py), mean(px * px), mean(py * py), mean(px * py)
    h, w = height - SSIM_WINDOW + 1, width - SSIM_WINDOW + 1
    return _ssim_formula(mu_x, mu_y, xx, yy, xy).reshape(batch, channels, h, w).permute(0, 2, 3, 1)


def _ssim_formula(mu_x: Tensor, mu_y: Tensor, xx: Tensor, yy: Tensor, xy: Tensor) -> Tensor:
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2))


def ssim(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM (scalar) of [B, H, W, C] images in [0, 1]."""
    return ssim_map(prediction, target).mean()


def dssim(prediction: Tensor, target: Tensor) -> Tensor:
    """Structural dissimilarity 1 - SSIM (the 3DGS "D-SSIM" term; 0 for equal images)."""
    return 1.0 - ssim(prediction, target)


def mask_loss(alpha: Tensor, mask: Tensor) -> Tensor:
    """Mean |alpha - mask|: accumulated opacity [B, H, W, 1] against the foreground mask [B, H, W]."""
    if alpha.shape != (*mask.shape, 1):
        raise ValueError(f"alpha must be {[*mask.shape, 1]} to match the mask, got {list(alpha.shape)}")
    return (alpha[..., 0] - mask).abs().mean()


def stable_loss(features: Tensor, alpha: Tensor, target: Tensor, background: Tensor) -> Tensor:
    """PortraitGen's stable loss of a Neural Gaussian Texture: its first 3 splatted channels (premultiplied)
    over `background` [3] are supervised as RGB, L1 against `target` [B, H, W, 3], so the texture stays an
    image and the CNN only refines it."""
    rgb = features[..., :3] + (1.0 - alpha) * background  # [B, H, W, 3]
    return l1(rgb, target)


def binding_regularisers(local_means: Tensor, local_log_scales: Tensor, position_threshold: float,
                         scale_threshold: float) -> tuple[Tensor, Tensor]:
    """GaussianAvatars' regularisers in triangle-scale units (zero inside the thresholds): the mean of
    relu(|mu| - position_threshold) keeps Gaussians near their triangle, the mean of relu(max scale -
    scale_threshold) keeps them no bigger than it. local_means [N, 3], local_log_scales [N, 3]."""
    position = F.relu(local_means.norm(dim=-1) - position_threshold).mean()  # [N] -> scalar
    scale = F.relu(local_log_scales.exp().amax(dim=-1) - scale_threshold).mean()
    return position, scale


def psnr(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """[B] PSNR in dB of images in [0, 1] (peak 1), over all pixels and channels or where `mask` [B, H, W] > 0.5."""
    _same(prediction, target)
    error = (prediction - target).square().mean(dim=-1)  # [B, H, W]
    if mask is None:
        mse = error.flatten(1).mean(dim=1)
    else:
        weight = (mask > 0.5).to(error)
        mse = (error * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp_min(1.0)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def _same(prediction: Tensor, target: Tensor) -> None:
    if not isinstance(prediction, Tensor) or not isinstance(target, Tensor) or prediction.shape != target.shape \
            or prediction.ndim != 4:
        raise ValueError(f"prediction and target must be tensors of one shape [B, H, W, C], got "
                         f"{getattr(prediction, 'shape', type(prediction).__name__)} and "
                         f"{getattr(target, 'shape', type(target).__name__)}")


def _check_window(image: Tensor) -> None:
    if min(image.shape[1], image.shape[2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got "
                         f"{image.shape[2]} x {image.shape[1]}")
