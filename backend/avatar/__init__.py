"""Gaussian avatars: 3D Gaussians rigged to FLAME triangles, SH or Neural Gaussian Texture appearance, and their
files (standard 3DGS PLY, PLY sequences, the animatable `.safetensors` package).

    avatar = default_avatar()                                  # built-in head, textured, no training
    gaussians = avatar.gaussians_at(sequence)                  # means [T, N, 3], quats, scales, opacities, sh
    export_ply(avatar, sequence, "frame.ply", frame=10)        # any splat viewer opens it
    save_package(avatar, "me.safetensors"); avatar = load_package("me.safetensors")
"""

from .config import AvatarConfig, NeuralRendererConfig
from .default import DEFAULT_GAUSSIANS, default_avatar
from .export import export_ply, export_ply_sequence
from .gaussians import Gaussians, StaticGaussians
from backend.flame.texture import HeadTexture, read_head_texture
from .model import GaussianAvatar, parameter_shapes
from .neural_renderer import NeuralRenderer
from .package import (
    PACKAGE_VERSION,
    AvatarPackageError,
    HeadMismatchError,
    PackageVersionError,
    head_fingerprint,
    load_package,
    read_package_metadata,
    save_package,
)
from .ply import GaussianPlyError, read_ply, write_ply
from .render import AvatarRender, render_avatar
from .restructure import Restructure

__all__ = [
    "DEFAULT_GAUSSIANS", "PACKAGE_VERSION", "AvatarConfig", "AvatarPackageError", "AvatarRender", "GaussianAvatar",
    "GaussianPlyError", "Gaussians", "HeadMismatchError", "HeadTexture", "NeuralRenderer", "NeuralRendererConfig",
    "PackageVersionError", "Restructure", "StaticGaussians", "default_avatar", "export_ply", "export_ply_sequence",
    "head_fingerprint", "load_package", "parameter_shapes", "read_head_texture", "read_package_metadata",
    "read_ply", "render_avatar", "save_package", "write_ply",
]
