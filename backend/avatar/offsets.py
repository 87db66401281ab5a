"""Expression-conditioned Gaussian offsets (FlashAvatar): a small MLP on (expression, jaw, eyes, eyelids) and
each Gaussian's encoded rest position predicts per-Gaussian position / rotation / log-scale offsets in its
triangle's frame. The output layer starts at zero, so a new avatar is exactly the plain rigged one.

The first layer is split into a per-frame part (condition) and a per-Gaussian part (anchor encoding) that are
summed, which equals one linear layer on their concatenation but costs B + N rows instead of B * N.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

N_OUTPUTS = 10
"""Position (3), rotation quaternion (4) and log-scale (3) offsets per Gaussian."""


class ExpressionOffsets(nn.Module):
    """MLP: (condition [B, C], anchors [N, 3]) -> offsets [B, N, 10]."""

    def __init__(self, condition_dim: int, width: int, layers: int, frequencies: int) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.condition_layer = nn.Linear(condition_dim, width)
        self.anchor_layer = nn.Linear(3 * (1 + 2 * frequencies), width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(layers - 1))
        self.output = nn.Linear(width, N_OUTPUTS)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def encode(self, anchors: Tensor) -> Tensor:
        """[N, 3] positions in about [-1, 1] -> [N, 3 (1 + 2 L)] (identity, then sin and cos per octave)."""
        octaves = [anchors]
        for k in range(self.frequencies):
            angle = anchors * (math.pi * 2.0 ** k)  # [N, 3]
            octaves += [torch.sin(angle), torch.cos(angle)]
        return torch.cat(octaves, dim=-1)

    def forward(self, condition: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Offsets in the triangle frame.

        Args:
            condition: [B, C] per-frame condition.
            anchors: [N, 3] rest positions of the Gaussians, normalised to about [-1, 1].

        Returns:
            positions [B, N, 3] (triangle-scale units), quaternion deltas [B, N, 4] (added before normalising),
            log-scale deltas [B, N, 3].
        """
        hidden = torch.relu(self.condition_layer(condition)[:, None] + self.anchor_layer(self.encode(anchors))[None])
        for layer in self.hidden:
            hidden = torch.relu(layer(hidden))  # [B, N, W]
        offsets = self.output(hidden)  # [B, N, 10]
        return offsets[..., :3], offsets[..., 3:7], offsets[..., 7:]
