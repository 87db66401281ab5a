"""The avatar a fresh install renders with: Gaussians on the built-in head, coloured by its procedural texture."""

from __future__ import annotations

from backend.flame import FlameModel

from .config import AvatarConfig
from backend.flame.texture import read_head_texture
from .model import GaussianAvatar

DEFAULT_GAUSSIANS = 100_000
"""Gaussians of the default avatar when its config leaves the count to the caller."""
DEFAULT_OPACITY = 0.95
"""Opacity of the default avatar's Gaussians: opaque enough that the skin hides what is behind it."""


def default_avatar(head: FlameModel | None = None, config: AvatarConfig | None = None, *,
                   seed: int = 0) -> GaussianAvatar:
    """An untrained avatar that looks like the head's texture, so rendering works before any reconstruction.

    Gaussians are sampled over the head's UV layout (its 3D area when it has no UVs), lie flat on the surface
    sized from the local sample spacing so neighbours overlap (no holes), have opacity `DEFAULT_OPACITY`, and
    take the texture's colour at their UV as SH DC (or as the first 3 Neural Gaussian Texture channels); a head
    without a texture gives a grey avatar.

    Args:
        head: the FLAME model (default: `FlameModel.builtin()`).
        config: the avatar config (default: SH degree 0 with `DEFAULT_GAUSSIANS` Gaussians).
        seed: random seed of the sampling.
    """
    head = FlameModel.builtin() if head is None else head
    if config is None:
        config = AvatarConfig(sh_degree=0, num_gaussians=DEFAULT_GAUSSIANS)
    elif not isinstance(config, AvatarConfig):
        raise TypeError(f"config must be an AvatarConfig or None, got {type(config).__name__}")
    return GaussianAvatar.from_surface(head, config, seed=seed, texture=read_head_texture(head),
                                       opacity=DEFAULT_OPACITY)
