"""LPIPS (Zhang et al. 2018, v0.1, VGG16 variant) built here and loaded from local weight files only.

Architecture: inputs in [-1, 1] shifted / scaled per channel, the VGG16 convolutional trunk tapped after relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3 (64, 128, 256, 512, 512 channels), each tap normalised to unit length over
channels, squared differences weighted per channel by a non-negative 1 x 1 "lin" layer, averaged over the image
and summed over taps.

Weights (never downloaded): a folder holding
- `vgg16-397923af.pth`: torchvision's ImageNet VGG16 (`features.<i>.weight/bias` are used, the classifier ignored);
- `vgg.pth`: the LPIPS v0.1 linear layers (`lin<k>.model.1.weight`, [1, C, 1, 1]).
Both are read with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from backend.errors import ModelMissingError

VGG_FILE = "vgg16-397923af.pth"
"""torchvision's VGG16 ImageNet weights, file name as torchvision publishes it."""
LIN_FILE = "vgg.pth"
"""LPIPS v0.1 linear-layer weights for the VGG variant, file name as the LPIPS project ships it."""
TRUNK = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
"""VGG16's convolutional configuration ("M": 2 x 2 max pooling)."""
TAPS = (3, 8, 15, 22, 29)
"""Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
_HOW = ("Put torchvision's VGG16 weights ({vgg}, from download.pytorch.org/models) and the LPIPS v0.1 VGG linear "
        "weights ({lin}, from the LPIPS project's lpips/weights/v0.1/) in {folder}, or leave the LPIPS weights unset "
        "to train without the LPIPS term.")


class _Linear(nn.Module):
    """LPIPS' NetLinLayer (dropout is off at evaluation and unused here, kept out of the state)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """Perceptual distance between images: `forward(prediction, target)` -> [B], 0 for equal images.

    Build with random weights (tests) or `LPIPS.from_folder` (real weights). The network is frozen.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in TRUNK:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers[:TAPS[-1] + 1])
        self.lins = nn.ModuleList(_Linear(c) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_folder(cls, folder: str | Path) -> LPIPS:
        """Load real weights from `folder` (see the module docstring).

        Raises:
            ModelMissingError: a weight file is absent (names it and where to put it).
            ValueError: a file does not hold the expected tensors.
        """
        folder = Path(folder).expanduser()
        how = _HOW.format(vgg=VGG_FILE, lin=LIN_FILE, folder=folder)
        for name in (VGG_FILE, LIN_FILE):
            if not (folder / name).is_file():
                raise ModelMissingError(f"LPIPS weights '{name}'", folder / name, how)
        model = cls()
        vgg = read_state_dict(folder / VGG_FILE)
        lin = read_state_dict(folder / LIN_FILE)
        state = {name: value for name, value in vgg.items() if name.startswith("features.")
                 and int(name.split(".")[1]) <= TAPS[-1]}
        state.update({name.replace("lin", "lins.", 1): value for name, value in lin.items()})
        expected = {name for name in model.state_dict() if name not in ("shift", "scale")}
        if set(state) != expected:
            raise ValueError(f"LPIPS weights in {folder} do not match the VGG16 LPIPS network: missing "
                             f"{sorted(expected - set(state))[:6]}, unexpected {sorted(set(state) - expected)[:6]}")
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as error:
            raise ValueError(f"LPIPS weights in {folder} have the wrong shapes: {error}") from None
        return model

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """LPIPS of [B, H, W, 3] images in [0, 1] -> [B]."""
        if prediction.shape != target.shape or prediction.ndim != 4 or prediction.shape[-1] != 3:
            raise ValueError(f"LPIPS needs two [B, H, W, 3] images of one shape, got {list(prediction.shape)} and "
                             f"{list(target.shape)}")
        inputs = torch.cat([prediction, target]).permute(0, 3, 1, 2) * 2.0 - 1.0  # [2B, 3, H, W] in [-1, 1]
        x = (inputs - self.shift) / self.scale
        total = prediction.new_zeros(prediction.shape[0])
        tap = 0
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == TAPS[tap]:
                unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)  # [2B, C, h, w]
                a, b = unit.chunk(2)
                total = total + self.lins[tap].model(((a - b) ** 2)).mean(dim=(1, 2, 3))  # [B]
                tap += 1
        return total


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a PyTorch weight file, read with `torch.load(weights_only=True)` onto the CPU.

    Raises:
        ValueError: the file is unreadable or holds anything but a dict of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file (pickle, zip, runtime errors)
        raise ValueError(f"{path} is not a readable PyTorch weight file ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} must hold a state dict of tensors")
    return state
