"""The one interface every 2D editor implements, and the registry that builds editors by name.

    editor = make_editor("relight", EditorSettings(light=LightSpec(preset="rim")), EditModels(), "cpu")
    edited = editor.edit(image, source, instruction, mask, context=EditContext(index=3, normals=normals))

Images are float tensors [H, W, 3] in [0, 1] (row 0 at the top), masks [H, W] in [0, 1] (1 = head). `image` is
what the avatar renders now (PortraitGen starts the edit from it), `source` the original dataset frame (the
conditioning image: the edit must keep its identity, expression and pose), `instruction` the text for that frame.
Editors that need more than pixels get it from `EditContext` (the frame index, camera-space normals and landmarks of
the head mesh, the noise level the schedule picked, a seed).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from backend.render import describe

EDITOR_NAMES = ("instruct-pix2pix", "relight", "reference-style", "keyframe-paint")
"""Editors a client may name in the `edit` job."""


@dataclasses.dataclass(frozen=True, eq=False)
class EditContext:
    """What an editor may know about the frame it edits besides its pixels.

    Attributes:
        index: the dataset frame index.
        normals: [H, W, 3] unit normals of the head mesh in OpenCV camera axes (facing the camera: z < 0),
            zero off the mesh; None when the caller has no geometry.
        landmarks: [68, 2] the posed head's iBUG-68 landmarks in pixels (x, y), or None.
        noise: the diffusion noise level in [0, 1] picked by the schedule (1: start from pure noise).
        seed: seed for any randomness of this edit (same seed, same edit).
    """

    index: int = 0
    normals: Tensor | None = None
    landmarks: Tensor | None = None
    noise: float = 0.7
    seed: int = 0


@runtime_checkable
class Editor(Protocol):
    """A 2D image editor. `frames` is None when it can edit any frame, else the frame indices it has a target for
    (keyframe painting); the loop then updates and trains on only those. `iterative` is True when the edit starts
    from the current render (diffusion editors): the loop then re-edits frames while the avatar trains; otherwise
    one edit per frame is its final target. `needs_instruction`: the editor uses the text."""

    name: str
    frames: tuple[int, ...] | None
    iterative: bool
    needs_instruction: bool

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        """image [H, W, 3], source [H, W, 3], mask [H, W] -> edited [H, W, 3] in [0, 1]."""


def check_images(image: Tensor, source: Tensor, mask: Tensor) -> tuple[int, int]:
    """Validate an editor's inputs; returns (H, W)."""
    for name, value in (("image", image), ("source", source)):
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != 3 or value.shape[2] != 3:
            raise ValueError(f"{name} must be a float tensor [H, W, 3], got {describe(value)}")
    if source.shape != image.shape:
        raise ValueError(f"source {list(source.shape)} and image {list(image.shape)} must have the same size")
    if not isinstance(mask, Tensor) or not mask.is_floating_point() or tuple(mask.shape) != tuple(image.shape[:2]):
        raise ValueError(f"mask must be a float tensor {list(image.shape[:2])}, got {describe(mask)}")
    return int(image.shape[0]), int(image.shape[1])


def check_uint8_image(value: object, what: str) -> None:
    """Validate a user-given image: a uint8 array [H, W, 3 or 4]; the ValueError names it as `what`."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 \
            or value.shape[2] not in (3, 4) or min(value.shape[:2]) < 1:
        raise ValueError(f"{what} must be a uint8 image [H, W, 3 or 4], got "
                         f"{getattr(value, 'dtype', type(value).__name__)} {list(getattr(value, 'shape', []))}")



EditorFactory = Callable[..., Editor]
_REGISTRY: dict[str, EditorFactory] = {}


def register_editor(name: str, factory: EditorFactory) -> None:
    """Make `make_editor(name, ...)` call `factory(settings, models, device)`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an editor name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def make_editor(name: str, settings: object, models: object, device: str = "cpu") -> Editor:
    """Build the editor `name` (one of `EDITOR_NAMES`) from `EditorSettings` and `EditModels`, for `device`."""
    from . import instruct_pix2pix, keyframe_paint, reference_style, relight  # noqa: F401 (they register)

    if name not in _REGISTRY:
        raise ValueError(f"unknown editor {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](settings, models, device)


def clamp01(image: Tensor) -> Tensor:
    return torch.nan_to_num(image, nan=0.0).clamp(0.0, 1.0)
