"""The two shapes Gaussians come in: a posed batch for rendering (`Gaussians`) and one static set for files
(`StaticGaussians`, the quantities a 3DGS PLY stores)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from backend.render import describe

from .sh import sh_degree_of


@dataclasses.dataclass(frozen=True, eq=False)
class Gaussians:
    """Gaussians posed for B frames, activated (what `backend.render.rasterize_gaussians` takes).

    Attributes:
        means: [B, N, 3] world positions (metres).
        quats: [B, N, 4] unit wxyz rotations.
        scales: [B, N, 3] standard deviations along the rotated axes (metres, linear).
        opacities: [B, N] in [0, 1].
        sh: [N, K, 3] SH coefficients shared by all frames (appearance "sh"), else None.
        features: [N, D] Neural Gaussian Texture, first 3 channels RGB (appearance "neural"), else None.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor | None = None
    features: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def n(self) -> int:
        return self.means.shape[1]


@dataclasses.dataclass(frozen=True, eq=False)
class StaticGaussians:
    """One set of Gaussians in the 3DGS PLY parametrisation (float32 CPU tensors).

    Attributes:
        means: [N, 3] positions.
        quats: [N, 4] unit wxyz rotations.
        log_scales: [N, 3] log standard deviations.
        opacity_logits: [N] logit opacities.
        sh: [N, K, 3] SH coefficients, K in (1, 4, 9, 16); [:, 0] is the DC term.
        binding: [N] int64 triangle index of each Gaussian (GaussianAvatars), or None.
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor
    binding: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.means.shape[0] if isinstance(self.means, Tensor) and self.means.ndim == 2 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor) or not value.is_floating_point() or tuple(value.shape) != shape:
                raise ValueError(f"StaticGaussians.{name} must be a float tensor {list(shape)} (N from means), got "
                                 f"{describe(value)}")
        sh = self.sh
        if not isinstance(sh, Tensor) or not sh.is_floating_point() or sh.ndim != 3 or sh.shape[0] != n \
                or sh.shape[2] != 3:
            raise ValueError(f"StaticGaussians.sh must be a float tensor [{n}, K, 3], got {describe(sh)}")
        sh_degree_of(sh.shape[1])
        if self.binding is not None and (not isinstance(self.binding, Tensor) or self.binding.is_floating_point()
                                         or tuple(self.binding.shape) != (n,)):
            raise ValueError(f"StaticGaussians.binding must be an integer tensor [{n}] or None, "
                             f"got {describe(self.binding)}")

    @property
    def n(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[1])

    @property
    def scales(self) -> Tensor:
        """[N, 3] linear standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        """[N] opacities in [0, 1]."""
        return torch.sigmoid(self.opacity_logits)
