"""The gsplat backend: `gsplat.rasterization` (CUDA) mapped onto Keyface's Gaussian render outputs.

gsplat is imported only here and only for CUDA inputs, so CPU/MPS machines never import or compile it.
Its CUDA extension may be JIT-compiled on first use; the build goes to TORCH_EXTENSIONS_DIR, which is
pointed at a per-user folder in the system temp dir when unset (never the user's home).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from torch import Tensor


def ensure_extensions_dir() -> str:
    """Set TORCH_EXTENSIONS_DIR to `<tmp>/keyface-torch-extensions[-<uid>]` unless already set; returns it.

    The folder is stable, so gsplat compiles once per machine and user (the temp dir is per user on Windows).
    """
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
        os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(tempfile.gettempdir()) / f"keyface-torch-extensions{user}")
    return os.environ["TORCH_EXTENSIONS_DIR"]


def rasterize_gsplat(
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
    near: float,
    far: float,
    background: Tensor | None,  # [D]
    tile_size: int,
    eps2d: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Rasterize with gsplat (inputs validated by `rasterize_gaussians`: float32 on CUDA).

    Returns:
        features [C, H, W, D], alpha [C, H, W, 1], expected depth [C, H, W, 1], means2d [C, N, 2] and radii
        [C, N, 2] (gsplat 1.5) or [C, N] (older gsplat), int32.
    """
    if means.device.type != "cuda":
        raise ValueError(f"gsplat needs CUDA tensors, got {means.device}")
    ensure_extensions_dir()
    import gsplat

    C = K.shape[0]
    backgrounds = None if background is None else background.expand(C, -1).contiguous()  # [C, D]
    image, alpha, meta = gsplat.rasterization(
        means, quats, scales, opacities, features, world_to_camera, K, width, height, near_plane=near,
        far_plane=far, eps2d=eps2d, packed=False, tile_size=tile_size, backgrounds=backgrounds,
        render_mode="RGB+ED", rasterize_mode="classic")
    return image[..., :-1], alpha, image[..., -1:], meta["means2d"], meta["radii"]
