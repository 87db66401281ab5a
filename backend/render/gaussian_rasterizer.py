"""`rasterize_gaussians`: one interface over the Gaussian splat rasterizers.

Backends:
- "gsplat": `gsplat.rasterization` (CUDA only; render mode "RGB+ED", packed=False, classic mode);
- "torch": the portable tile rasterizer (`gaussian_torch`), any device, autograd backward;
- "reference": the dense compositor (`gaussian_reference`), for tests and benchmarks only;
- "auto": "gsplat" when the inputs are float32 CUDA tensors, else "torch".

All backends share gsplat 1.5.3's conventions: OpenCV cameras, pixel (i, j) sampled at (j + 0.5, i + 0.5),
EWA projection with `eps2d` blur, opacity-aware 3.33-sigma boxes, tiles, front-to-back compositing
(alpha clamped at 0.999, alpha < 1/255 skipped, stop before transmittance <= 1e-4), expected depth
Σ w_i z_i / max(alpha, 1e-10). `radii` is the larger of gsplat's per-axis radii.
"""

from __future__ import annotations

import dataclasses
import numbers

import torch
from torch import Tensor

from ._checks import describe
from .gaussian_gsplat import rasterize_gsplat
from .gaussian_projection import project_gaussians
from .gaussian_reference import composite_dense
from .gaussian_torch import composite_tiles

BACKENDS = ("auto", "gsplat", "torch", "reference")
"""Accepted values of `rasterize_gaussians(backend=...)`."""
DEPTH_EPS = 1e-10
TILE_SIZE = {"gsplat": 16, "torch": 8, "reference": 16}
"""Default tile edge per backend: gsplat's own 16; 8 for the torch compositor, which evaluates every pixel of a
tile against every Gaussian listed in it (the same pixels, 2-3x less work for head avatars on CPU)."""
"""Floor of the accumulated alpha when normalising the expected depth (gsplat)."""


@dataclasses.dataclass(frozen=True)
class GaussianRender:
    """What `rasterize_gaussians` returns for C cameras."""

    features: Tensor
    """[C, H, W, D] alpha-composited features/colours (background blended in if given)."""
    alpha: Tensor
    """[C, H, W, 1] accumulated opacity."""
    depth: Tensor
    """[C, H, W, 1] expected camera-space depth Σ w_i z_i / max(alpha, 1e-10); 0 where alpha is 0."""
    means2d: Tensor
    """[C, N, 2] projected centres in pixels: the tensor the compositor reads, so `means2d.retain_grad()`
    before backward gives screen-space gradients (densification). Meaningful only where `visible`."""
    radii: Tensor
    """[C, N] int32 screen-space radius in pixels (0 = culled)."""
    visible: Tensor
    """[C, N] bool, radii > 0."""


def rasterize_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    features: Tensor,  # [N, D] or [C, N, D]
    K: Tensor,  # [C, 3, 3]
    world_to_camera: Tensor,  # [C, 4, 4]
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 100.0,
    background: Tensor | None = None,  # [D]
    backend: str = "auto",
    tile_size: int | None = None,
    eps2d: float = 0.3,
) -> GaussianRender:
    """Render 3D Gaussians into C pinhole cameras.

    Args:
        means: [N, 3] world-space centres.
        quats: [N, 4] wxyz rotations (normalised here).
        scales: [N, 3] linear standard deviations along the rotated axes (not log), >= 0.
        opacities: [N] in [0, 1] (not logits).
        features: [N, D] or per camera [C, N, D], any D >= 1 (RGB or neural-texture features).
        K: [C, 3, 3] intrinsics in pixels (skew ignored).
        world_to_camera: [C, 4, 4] OpenCV (x right, y down, z forward).
        width, height: image size in pixels.
        near, far: Gaussians whose camera-space depth lies outside [near, far] are culled.
        background: [D] blended in as features + (1 - alpha) background; None for none.
        backend: "auto" (gsplat for float32 CUDA inputs, else torch), "gsplat", "torch" or "reference".
        tile_size: tile edge in pixels (None: `TILE_SIZE` of the backend).
        eps2d: added to the diagonal of every projected 2D covariance (anti-aliasing blur).

    Returns:
        `GaussianRender`. K, world_to_camera and background are cast to the dtype and device of `means`.
    """
    K, world_to_camera, background, backend, (width, height, tile) = _checked(
        means, quats, scales, opacities, features, K, world_to_camera, width, height, near, far, background,
        backend, 1 if tile_size is None else tile_size, eps2d)
    tile_size = TILE_SIZE[backend] if tile_size is None else tile
    C, D = K.shape[0], features.shape[-1]
    if backend == "gsplat":
        image, alpha, depth, means2d, radii = rasterize_gsplat(
            means, quats, scales, opacities, features, K, world_to_camera, width, height, near=near, far=far,
            background=background, tile_size=tile_size, eps2d=eps2d)
        radii = radii if radii.ndim == 2 else radii.amax(-1)  # [C, N]
        return GaussianRender(features=image, alpha=alpha, depth=depth, means2d=means2d, radii=radii,
                              visible=radii > 0)

    projected = project_gaussians(means, quats, scales, opacities, K, world_to_camera, width, height,
                                  near=near, far=far, eps2d=eps2d)
    per_camera = features.expand(C, -1, -1)  # [C, N, D]
    stacked = torch.cat([per_camera, projected.depths[..., None]], dim=-1)  # [C, N, D + 1]
    if backend == "torch":
        image, alpha = composite_tiles(projected, stacked, width, height, tile_size)
    else:
        image, alpha = composite_dense(projected, stacked, width, height)
    colour, depth = image[..., :D], image[..., D:] / alpha.clamp_min(DEPTH_EPS)  # [C, H, W, D], [C, H, W, 1]
    if background is not None:
        colour = colour + (1.0 - alpha) * background
    radii = projected.radii.amax(-1)  # [C, N]
    return GaussianRender(features=colour, alpha=alpha, depth=depth, means2d=projected.means2d, radii=radii,
                          visible=radii > 0)


def _checked(means, quats, scales, opacities, features, K, world_to_camera, width, height, near, far,
             background, backend, tile_size, eps2d) -> tuple[Tensor, Tensor, Tensor | None, str, tuple[int, int, int]]:
    """Validate the arguments; returns K, world_to_camera and background on means' device and dtype, the resolved
    backend, and (width, height, tile_size) as Python ints."""
    named = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "features": features,
             "K": K, "world_to_camera": world_to_camera}
    if background is not None:
        named["background"] = background
    for name, value in named.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {describe(value)}")
    for name, value in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0.0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near!r}, far={far!r}")
    if not eps2d >= 0.0:
        raise ValueError(f"eps2d must be >= 0, got {eps2d!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be [N, 3], got {describe(means)}")
    N = means.shape[0]
    for name, value, shape in (("quats", quats, (N, 4)), ("scales", scales, (N, 3)), ("opacities", opacities, (N,))):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {list(shape)} for N={N}, got {describe(value)}")
    if K.ndim != 3 or K.shape[1:] != (3, 3) or K.shape[0] < 1:
        raise ValueError(f"K must be [C, 3, 3] with C >= 1, got {describe(K)}")
    C = K.shape[0]
    if tuple(world_to_camera.shape) != (C, 4, 4):
        raise ValueError(f"world_to_camera must be [C, 4, 4] with C={C} (from K), got {describe(world_to_camera)}")
    if features.ndim not in (2, 3) or features.shape[-2] != N or features.shape[-1] < 1 \
            or (features.ndim == 3 and features.shape[0] != C):
        raise ValueError(f"features must be [N, D] or [C, N, D] with N={N}, C={C}, D >= 1, got {describe(features)}")
    if background is not None and tuple(background.shape) != (features.shape[-1],):
        raise ValueError(f"background must be [D] with D={features.shape[-1]}, got {describe(background)}")

    attributes = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "features": features}
    if len({(v.device, v.dtype) for v in attributes.values()}) != 1:
        found = ", ".join(f"{k}: {v.dtype} on {v.device}" for k, v in attributes.items())
        raise ValueError(f"Gaussian attributes must share one dtype and device, got {found}")
    if N > 0:
        low_opacity, high_opacity, low_scale = torch.stack(
            [opacities.detach().min(), opacities.detach().max(), scales.detach().min()]).tolist()
        if not (0.0 <= low_opacity and high_opacity <= 1.0):
            raise ValueError(f"opacities must lie in [0, 1] (not logits), "
                             f"got values in [{low_opacity}, {high_opacity}]")
        if not low_scale >= 0.0:
            raise ValueError(f"scales must be >= 0 (linear, not log), got a minimum of {low_scale}")

    on_cuda_float32 = means.device.type == "cuda" and means.dtype == torch.float32
    if backend == "auto":
        backend = "gsplat" if on_cuda_float32 else "torch"
    if backend == "gsplat" and not on_cuda_float32:
        raise ValueError(f"the gsplat backend needs float32 CUDA tensors, got {means.dtype} on {means.device}; "
                         "use backend='torch' elsewhere")
    to = dict(device=means.device, dtype=means.dtype)
    return (K.to(**to), world_to_camera.to(**to), None if background is None else background.to(**to), backend,
            (int(width), int(height), int(tile_size)))
