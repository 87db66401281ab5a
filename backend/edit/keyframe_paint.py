"""Keyframe painting: the user edits one or a few frames in any tool (or paints in Blender), and the loop
propagates the edit to the whole avatar.

The editor only has targets for the painted frames (`frames`), so the loop replaces and trains on exactly those;
because every frame is rendered from the same Neural Gaussian Texture, what the avatar learns there shows on
every other frame and every new motion. A painted frame is RGB (the whole frame is the target) or RGBA (alpha
marks what was painted; the rest stays the source frame). Paintings of another size with the same aspect ratio
are resized (bilinear); another aspect ratio is an error.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import EditModels, EditorSettings
from .editor import EditContext, check_images, check_uint8_image, clamp01, register_editor

ASPECT_TOLERANCE = 0.01
"""Relative aspect-ratio difference tolerated between a painting and the frame."""


def painted_target(painting: np.ndarray, source: Tensor) -> Tensor:
    """The frame's target [H, W, 3]: the painting (uint8 [h, w, 3 or 4]) resized to source [H, W, 3], composited
    over the source by its alpha."""
    height, width = source.shape[:2]
    h, w = painting.shape[:2]
    if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"a painting of {w}x{h} does not fit frames of {width}x{height} (aspect ratio differs)")
    image = torch.from_numpy(painting.astype(np.float32) / 255.0).to(source.device)  # [h, w, C]
    if (h, w) != (height, width):
        image = F.interpolate(image.permute(2, 0, 1)[None], size=(height, width), mode="bilinear",
                              align_corners=False)[0].permute(1, 2, 0)  # [H, W, C]
    image = image.to(source.dtype)
    if image.shape[2] == 3:
        return clamp01(image)
    alpha = image[..., 3:]  # [H, W, 1]
    return clamp01(alpha * image[..., :3] + (1 - alpha) * source)


class KeyframePaintEditor:
    """Editor 'keyframe-paint': painted frames are the targets of their frame indices."""

    name = "keyframe-paint"
    iterative = False
    needs_instruction = False

    def __init__(self, paint: Mapping[int, np.ndarray]) -> None:
        if not isinstance(paint, Mapping) or not paint:
            raise ValueError("the keyframe-paint editor needs at least one painted frame (spec.paint)")
        for index, painting in paint.items():
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(f"painted frame indices must be integers >= 0, got {index!r}")
            check_uint8_image(painting, f"the painting of frame {index}")
        self.paint = dict(paint)
        self.frames: tuple[int, ...] | None = tuple(sorted(self.paint))

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        check_images(image, source, mask)
        if context.index not in self.paint:
            raise ValueError(f"frame {context.index} was not painted; painted frames: {list(self.frames)}")
        return painted_target(self.paint[context.index], source)


def _factory(settings: EditorSettings, models: EditModels, device: str) -> KeyframePaintEditor:
    return KeyframePaintEditor(settings.paint)


register_editor("keyframe-paint", _factory)
