"""Image-driven editing from a reference image, with no network weights: colour statistics transfer per face region.

Regions are integer label maps (`REGIONS`): background, head (hair, ears, neck), face skin, eyes, mouth. The
frame's labels come from its head mask and the iBUG-68 landmarks of the posed head (`region_labels`); the
reference's from its alpha channel (subject vs background) and, when the caller passes them, its own 68 landmarks.
For each region present in both, the frame's colours get the reference's mean and covariance through the linear
map that is the optimal transport between the two Gaussians (Monge-Kantorovich):

    T = S_f^(-1/2) (S_f^(1/2) S_r S_f^(1/2))^(1/2) S_f^(-1/2),   x' = mu_r + T (x - mu_f)

A reference with only subject / background labels styles the whole head as one region.

With VGG16 weights configured (`EditModels.vgg_weights`), that transfer is the starting point of a Gatys-style
optimisation (`gatys.py`) that also carries the reference's texture.
"""

from __future__ import annotations

import numpy as np
import skimage.draw
import torch
from torch import Tensor

from .config import EditModels, EditorSettings
from .editor import EditContext, check_images, check_uint8_image, clamp01, register_editor
from .gatys import GatysStyle, load_vgg

REGIONS = {"background": 0, "head": 1, "skin": 2, "eyes": 3, "mouth": 4}
"""Label values of a region map."""
IGNORE = -1
"""Label of pixels that take part in no region."""
MIN_PIXELS = 32
"""Regions with fewer pixels on either side are left as they are."""
EPS = 1e-4
"""Added to covariance diagonals (flat regions stay invertible)."""

_FACE_OUTLINE = list(range(0, 17)) + list(range(26, 16, -1))  # jaw line, then the brows back across
_EYES = (list(range(36, 42)), list(range(42, 48)))
_MOUTH = list(range(48, 60))


def region_labels(mask: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """[H, W] int64 labels from a head mask [H, W] (> 0.5: head) and optional iBUG-68 landmarks [68, 2] (x, y
    pixels): background, head, and inside the face outline skin / eyes / mouth."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {list(mask.shape)}")
    labels = np.where(mask > 0.5, REGIONS["head"], REGIONS["background"]).astype(np.int64)
    if landmarks is None:
        return labels
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 68 finite (x, y) points [68, 2], got shape {list(landmarks.shape)}")
    for name, indices in (("skin", _FACE_OUTLINE), ("eyes", _EYES[0]), ("eyes", _EYES[1]), ("mouth", _MOUTH)):
        points = landmarks[indices]
        rows, cols = skimage.draw.polygon(points[:, 1], points[:, 0], shape=mask.shape)
        labels[rows, cols] = REGIONS[name]
    labels[mask <= 0.5] = REGIONS["background"]
    return labels


def _sqrtm(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)  # [3], [3, 3]
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def gaussian_transport(frame: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mu_f [3], T [3, 3], mu_r [3]): the linear optimal transport from the colours frame [P, 3] to reference
    [Q, 3] (see the module docstring)."""
    frame, reference = frame.double(), reference.double()
    mu_f, mu_r = frame.mean(0), reference.mean(0)  # [3]
    eye = torch.eye(3, dtype=torch.float64, device=frame.device) * EPS
    cov_f = torch.cov((frame - mu_f).T) + eye  # [3, 3]
    cov_r = torch.cov((reference - mu_r).T) + eye  # [3, 3]
    root_f = _sqrtm(cov_f)
    inverse_root_f = torch.linalg.inv(root_f)
    transport = inverse_root_f @ _sqrtm(root_f @ cov_r @ root_f) @ inverse_root_f  # [3, 3]
    return mu_f, transport, mu_r


def transfer_regions(image: Tensor, labels: Tensor, reference: Tensor, reference_labels: Tensor) -> Tensor:
    """image [H, W, 3] with each region's colours mapped onto the reference's statistics for that region.

    Args:
        image: [H, W, 3] the frame.
        labels: [H, W] int its regions (`REGIONS`, `IGNORE`).
        reference: [H', W', 3] the reference image.
        reference_labels: [H', W'] int the reference's regions. When it has no face-part labels (only background
            and head), the frame's face parts are merged into 'head' first.
    """
    if not bool((reference_labels >= REGIONS["skin"]).any()):
        labels = torch.where(labels >= REGIONS["skin"], torch.full_like(labels, REGIONS["head"]), labels)
    out = image.clone()
    for value in REGIONS.values():
        if value == REGIONS["background"]:
            continue
        inside, source_inside = labels == value, reference_labels == value
        if int(inside.sum()) < MIN_PIXELS or int(source_inside.sum()) < MIN_PIXELS:
            continue
        mu_f, transport, mu_r = gaussian_transport(image[inside], reference[source_inside])
        mapped = (image[inside].double() - mu_f) @ transport.T + mu_r  # [P, 3]
        out[inside] = mapped.to(image.dtype)
    return clamp01(out)


def reference_regions(reference: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """(colours [H, W, 3] float in [0, 1], labels [H, W]) of a uint8 reference image [H, W, 3 or 4]."""
    check_uint8_image(reference, "the reference")
    alpha = reference[..., 3] / 255.0 if reference.shape[2] == 4 else np.ones(reference.shape[:2])
    labels = region_labels(alpha, landmarks)
    return torch.from_numpy(reference[..., :3].astype(np.float32) / 255.0), torch.from_numpy(labels)


class ReferenceStyleEditor:
    """Editor 'reference-style': the source frame takes the reference image's colour statistics region by region
    (regions from the mask and `EditContext.landmarks`)."""

    name = "reference-style"
    frames = None
    iterative = False
    needs_instruction = False

    def __init__(self, reference: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        self.reference, self.reference_labels = reference_regions(reference, landmarks)
        self.gatys: GatysStyle | None = None
        """Gatys-style refinement (set when VGG16 weights are configured)."""

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        check_images(image, source, mask)
        landmarks = None if context.landmarks is None else context.landmarks.detach().cpu().numpy()
        labels = torch.from_numpy(region_labels(mask.detach().cpu().numpy(), landmarks)).to(source.device)  # [H, W]
        transferred = transfer_regions(source, labels, self.reference.to(source),
                                       self.reference_labels.to(source.device))
        if self.gatys is None:
            return transferred
        return clamp01(self.gatys(transferred, source, mask))


def _factory(settings: EditorSettings, models: EditModels, device: str) -> ReferenceStyleEditor:
    if settings.reference is None:
        raise ValueError("the reference-style editor needs spec.reference (an image path)")
    editor = ReferenceStyleEditor(settings.reference)
    if models.vgg_weights is not None:
        editor.gatys = GatysStyle(load_vgg(models.vgg_weights).to(device), editor.reference,
                                  steps=settings.style_steps)
    return editor


register_editor("reference-style", _factory)
