"""Configuration of a Gaussian avatar and its neural renderer (frozen dataclasses, saved in avatar packages)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

APPEARANCES = ("sh", "neural")


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class NeuralRendererConfig:
    """The small CNN that turns a splatted Neural Gaussian Texture [C, H, W, D] into RGB (PortraitGen)."""

    channels: int = 32
    """Width of the hidden convolutions."""
    layers: int = 3
    """Number of convolutions, the RGB output layer included (>= 1)."""
    kernel_size: int = 3
    """Odd convolution kernel size."""

    def __post_init__(self) -> None:
        _positive("channels", self.channels)
        _positive("layers", self.layers)
        _positive("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (to keep the image size), got {self.kernel_size}")


@dataclasses.dataclass(frozen=True)
class AvatarConfig:
    """A triangle-bound Gaussian avatar: how many Gaussians, how they look, and how expressions move them."""

    appearance: Literal["sh", "neural"] = "sh"
    """"sh": view-dependent colour as spherical harmonics (3DGS); "neural": a Neural Gaussian Texture of
    `feature_dim` channels per Gaussian decoded by a CNN (PortraitGen)."""
    sh_degree: int = 3
    """SH degree 0-3 (1, 4, 9 or 16 coefficients per colour channel); used when appearance is "sh"."""
    feature_dim: int = 32
    """Channels D of the Neural Gaussian Texture (>= 3; the first 3 are RGB); used when appearance is "neural"."""
    gaussians_per_triangle: int = 1
    """Gaussians placed on every triangle when `num_gaussians` is None (1: at the centroid, as GaussianAvatars)."""
    num_gaussians: int | None = None
    """Total count sampled over the surface (UV-area weighted when the head has UVs, else 3D-area weighted);
    None: `gaussians_per_triangle` on every triangle."""
    use_expression_offsets: bool = False
    """Add per-Gaussian position / rotation / scale offsets predicted from (expression, jaw, eyes, eyelids) by a
    small MLP (FlashAvatar); its last layer starts at zero, so a new avatar is the plain rigged one."""
    mlp_expression_dims: int = 50
    """Leading expression coefficients fed to the offset MLP (fewer given: zero-padded)."""
    mlp_width: int = 64
    """Hidden width of the offset MLP."""
    mlp_layers: int = 2
    """Hidden layers of the offset MLP (>= 1)."""
    mlp_frequencies: int = 4
    """Octaves of the sin / cos encoding of each Gaussian's rest position fed to the offset MLP."""
    renderer: NeuralRendererConfig = NeuralRendererConfig()
    """The neural renderer; used when appearance is "neural"."""

    def __post_init__(self) -> None:
        if self.appearance not in APPEARANCES:
            raise ValueError(f"appearance must be one of {APPEARANCES}, got {self.appearance!r}")
        if isinstance(self.sh_degree, bool) or self.sh_degree not in (0, 1, 2, 3):
            raise ValueError(f"sh_degree must be 0, 1, 2 or 3, got {self.sh_degree!r}")
        if isinstance(self.feature_dim, bool) or not isinstance(self.feature_dim, int) or self.feature_dim < 3:
            raise ValueError(f"feature_dim must be an integer >= 3 (the first 3 channels are RGB), "
                             f"got {self.feature_dim!r}")
        _positive("gaussians_per_triangle", self.gaussians_per_triangle)
        if self.num_gaussians is not None:
            _positive("num_gaussians", self.num_gaussians)
        if not isinstance(self.use_expression_offsets, bool):
            raise TypeError(f"use_expression_offsets must be a bool, got {self.use_expression_offsets!r}")
        _positive("mlp_width", self.mlp_width)
        _positive("mlp_layers", self.mlp_layers)
        for name in ("mlp_expression_dims", "mlp_frequencies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.renderer, NeuralRendererConfig):
            raise TypeError(f"renderer must be a NeuralRendererConfig, got {type(self.renderer).__name__}")

    @property
    def sh_coefficients(self) -> int:
        """K, the SH coefficients per colour channel: (sh_degree + 1)^2."""
        return (self.sh_degree + 1) ** 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the nested renderer config becomes a dict too)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AvatarConfig:
        """Inverse of `to_dict`; unknown keys are an error (they come from a newer Keyface)."""
        values = _known_fields(cls, data, "AvatarConfig")
        if "renderer" in values:
            values["renderer"] = NeuralRendererConfig(**_known_fields(NeuralRendererConfig, values["renderer"],
                                                                      "AvatarConfig.renderer"))
        return cls(**values)


def _known_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """`data` as a dict of `cls`'s fields; unknown keys are an error (they come from a newer Keyface)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} needs a mapping, got {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} fields {unknown}; known fields are {sorted(known)}")
    return dict(data)
