"""The neural renderer of a Neural Gaussian Texture (PortraitGen): a small CNN from the splatted feature map to
RGB. Its output adds to the first 3 feature channels (which are supervised as RGB themselves) and its last
convolution starts at zero, so a new renderer shows exactly those RGB channels.
"""

from __future__ import annotations

from torch import Tensor, nn

from .config import NeuralRendererConfig


class NeuralRenderer(nn.Module):
    """CNN: features [C, H, W, D] (premultiplied by alpha, as splatted) -> RGB [C, H, W, 3] (not clamped)."""

    def __init__(self, feature_dim: int, config: NeuralRendererConfig = NeuralRendererConfig()) -> None:
        super().__init__()
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 3:
            raise ValueError(f"feature_dim must be an integer >= 3 (the first 3 channels are RGB), got {feature_dim!r}")
        if not isinstance(config, NeuralRendererConfig):
            raise TypeError(f"config must be a NeuralRendererConfig, got {type(config).__name__}")
        self.feature_dim = feature_dim
        padding = config.kernel_size // 2
        widths = [feature_dim] + [config.channels] * (config.layers - 1) + [3]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Conv2d(width_in, width_out, config.kernel_size, padding=padding))
            if index < config.layers - 1:
                layers.append(nn.ReLU())
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """Decode a splatted feature map.

        Args:
            features: [C, H, W, D] channels-last feature images.

        Returns:
            [C, H, W, 3] RGB = features[..., :3] + CNN(features).
        """
        if not isinstance(features, Tensor) or features.ndim != 4 or features.shape[-1] != self.feature_dim:
            got = (f"{features.dtype} {list(features.shape)}" if isinstance(features, Tensor)
                   else type(features).__name__)
            raise ValueError(f"features must be a tensor [C, H, W, {self.feature_dim}], got {got}")
        residual = self.net(features.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [C, H, W, 3]
        return features[..., :3] + residual
