"""Gatys-style reference editing (Gatys, Ecker & Bethge 2016) for the `reference-style` editor, used when VGG16
weights are configured: the frame's pixels are optimised so the Gram matrices of its VGG16 features match the
reference's (style) while its relu3_3 features stay those of the source (content), starting from the
colour-statistics transfer. The result replaces the frame inside the head mask.

The VGG16 trunk is the one `backend.reconstruct.lpips` builds; its weights are torchvision's ImageNet file
`vgg16-397923af.pth` (`EditModels.vgg_weights`, default `$KEYFACE_MODELS/vgg/vgg16-397923af.pth`), read with
`torch.load(weights_only=True)`. Never downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from backend.errors import ModelMissingError
from backend.reconstruct.lpips import LPIPS, TAPS, VGG_FILE, read_state_dict

from .config import MODELS_ENV

STYLE_TAPS = TAPS[:4]
"""relu1_2, relu2_2, relu3_3, relu4_3."""
CONTENT_TAP = TAPS[2]
"""relu3_3."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOW_TO_INSTALL = (f"Put torchvision's ImageNet VGG16 weights ({VGG_FILE}, from download.pytorch.org/models) at that "
                  f"path, or set {MODELS_ENV} to a folder holding vgg/{VGG_FILE}; without them the reference-style "
                  f"editor uses colour statistics transfer.")


def load_vgg(path: Path) -> nn.Sequential:
    """VGG16's convolutional trunk up to relu4_3 with torchvision's weights from `path`, frozen, in eval mode."""
    if not path.is_file():
        raise ModelMissingError("VGG16 (Gatys-style reference editing)", path, HOW_TO_INSTALL)
    state = read_state_dict(path)
    trunk = LPIPS().features[:STYLE_TAPS[-1] + 1]
    wanted = {f"features.{name}": name for name in trunk.state_dict()}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"{path} is not torchvision's VGG16: it lacks {missing[:4]}")
    try:
        trunk.load_state_dict({name: state[key] for key, name in wanted.items()})
    except RuntimeError as error:
        raise ValueError(f"{path} has VGG16 tensors of the wrong shapes: {error}") from None
    return trunk.eval().requires_grad_(False)


def _features(trunk: nn.Sequential, image: Tensor) -> dict[int, Tensor]:
    """Activations at the style and content taps of image [H, W, 3] in [0, 1] -> {tap: [1, C, h, w]}."""
    x = image.permute(2, 0, 1)[None]
    x = (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    taps = {}
    for index, layer in enumerate(trunk):
        x = layer(x)
        if index in STYLE_TAPS or index == CONTENT_TAP:
            taps[index] = x
    return taps


def gram(features: Tensor) -> Tensor:
    """[1, C, h, w] -> [C, C] normalised by C * h * w."""
    _, channels, height, width = features.shape
    flat = features.reshape(channels, height * width)
    return flat @ flat.T / (channels * height * width)


class GatysStyle:
    """Style transfer onto frames from one reference image.

    Args:
        trunk: from `load_vgg`.
        reference: [H', W', 3] the style image in [0, 1].
        steps: Adam steps per frame.
        style_weight: weight of the Gram-matrix loss against the content loss.
    """

    def __init__(self, trunk: nn.Sequential, reference: Tensor, steps: int = 100, style_weight: float = 1e4) -> None:
        self.trunk = trunk
        self.steps = steps
        self.style_weight = style_weight
        device = next(trunk.parameters()).device
        with torch.no_grad():
            self.style = {tap: gram(value) for tap, value in _features(trunk, reference.to(device)).items()
                          if tap in STYLE_TAPS}

    def losses(self, image: Tensor, content: dict[int, Tensor]) -> tuple[Tensor, Tensor]:
        """(style loss, content loss) of image [H, W, 3] against the reference and `content` taps."""
        taps = _features(self.trunk, image)
        style = sum(((gram(taps[tap]) - self.style[tap]) ** 2).sum() for tap in STYLE_TAPS)
        return style, ((taps[CONTENT_TAP] - content[CONTENT_TAP]) ** 2).mean()

    def __call__(self, start: Tensor, source: Tensor, mask: Tensor) -> Tensor:
        """Optimise from start [H, W, 3] with source [H, W, 3] as content; returns the result inside mask [H, W]
        over the source outside it."""
        device = next(self.trunk.parameters()).device
        source, mask = source.to(device), mask.to(device)
        with torch.no_grad():
            content = _features(self.trunk, source)
        image = start.detach().to(device).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=0.02)
        with torch.enable_grad():
            for _ in range(self.steps):
                style, content_loss = self.losses(image, content)
                loss = self.style_weight * style + content_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    image.clamp_(0, 1)
        blend = mask[..., None]
        return (blend * image.detach() + (1 - blend) * source).to(start.device)
