"""Weight-free relighting from the avatar's own geometry.

For each frame: the head mesh's normals (`EditContext.normals`, rendered from the posed FLAME mesh), an albedo
estimate, and a new light.

1. Estimate the light the frame was captured under: a second-order SH irradiance (DECA basis,
   `backend.render.sh_basis`) fitted by least squares to the source's pixels inside the mask, per colour channel,
   with the albedo taken as the mean colour (the classic constant-albedo SH fit). The fit is regularised towards
   an ambient-only light, so a few pixels cannot produce a wild light.
2. Albedo = source / fitted shading (the shading floored at `SHADING_FLOOR` of its mean, so dark creases do not
   blow up).
3. New shading = colour * (ambient + intensity * max(0, -n . direction)) (`LightSpec`); output = albedo * new
   shading inside the mask, the source outside it, feathered by the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.render import sh_basis

from .config import EditModels, EditorSettings, LightSpec
from .editor import EditContext, check_images, clamp01, register_editor

SHADING_FLOOR = 0.15
"""The fitted shading is floored at this fraction of its mean before dividing (albedo estimate)."""
RIDGE = 1e-2
"""Ridge weight of the SH fit on the 8 non-constant coefficients (relative to the pixel count)."""
MIN_PIXELS = 16
"""Fewer masked pixels with normals than this: the frame is returned unchanged."""

_OPENCV_TO_VIEW = (1.0, -1.0, -1.0)


def fit_sh_light(source: Tensor, normals: Tensor, weight: Tensor) -> Tensor:
    """Least-squares SH irradiance times mean albedo, per channel.

    Args:
        source: [P, 3] pixel colours.
        normals: [P, 3] unit normals in OpenCV camera axes.
        weight: [P] pixel weights (the mask).

    Returns:
        [9, 3] coefficients (DECA basis, view axes) with sh_basis(n) @ coefficients ~ source.
    """
    basis = sh_basis(normals * normals.new_tensor(_OPENCV_TO_VIEW))  # [P, 9]
    weighted = basis * weight[:, None]  # [P, 9]
    gram = weighted.T @ basis  # [9, 9]
    ridge = torch.full((9,), RIDGE * float(weight.sum()), dtype=basis.dtype, device=basis.device)
    ridge[0] = 0.0
    return torch.linalg.solve(gram + torch.diag(ridge), weighted.T @ source)  # [9, 3]


def lambert_shading(normals: Tensor, light: LightSpec) -> Tensor:
    """[..., 3] colour * (ambient + intensity * max(0, -n . direction)) for normals [..., 3] in camera axes."""
    direction, colour, intensity, ambient = light.resolved()
    cosine = (-(normals * normals.new_tensor(direction)).sum(-1, keepdim=True)).clamp_min(0.0)  # [..., 1]
    return (ambient + intensity * cosine) * normals.new_tensor(colour)  # [..., 3]


def relight(source: Tensor, normals: Tensor, mask: Tensor, light: LightSpec) -> Tensor:
    """Relit image [H, W, 3] (see the module docstring) from source [H, W, 3], normals [H, W, 3], mask [H, W]."""
    if normals.shape != source.shape:
        raise ValueError(f"normals {list(normals.shape)} must match the image {list(source.shape)}")
    has_normal = normals.norm(dim=-1) > 0.5  # [H, W]
    weight = mask * has_normal  # [H, W]
    inside = weight > 0.5
    if int(inside.sum()) < MIN_PIXELS:
        return source.clone()
    coefficients = fit_sh_light(source[inside], normals[inside], weight[inside])  # [9, 3]
    view_normals = normals * normals.new_tensor(_OPENCV_TO_VIEW)  # [H, W, 3]
    fitted = sh_basis(view_normals) @ coefficients  # [H, W, 3]
    level = fitted[inside].mean(0)  # [3]
    albedo = source / torch.maximum(fitted, SHADING_FLOOR * level).clamp_min(1e-4)  # [H, W, 3] relative albedo
    albedo = albedo * level  # back to the source's brightness under a uniform white light
    relit = albedo * lambert_shading(normals, light)  # [H, W, 3]
    blend = weight[..., None]  # [H, W, 1]
    return clamp01(blend * relit + (1 - blend) * source)


class RelightEditor:
    """Editor 'relight': weight-free relighting of the source frame with `settings.light`."""

    name = "relight"
    frames = None
    iterative = False
    needs_instruction = False

    def __init__(self, light: LightSpec) -> None:
        if not isinstance(light, LightSpec):
            raise TypeError(f"light must be a LightSpec, got {type(light).__name__}")
        self.light = light

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        check_images(image, source, mask)
        if context.normals is None:
            raise ValueError("the relight editor needs the head's normals (EditContext.normals)")
        return relight(source, context.normals.to(source), mask, self.light)


def _factory(settings: EditorSettings, models: EditModels, device: str):
    """IC-Light when its weights are configured, else the weight-free editor."""
    if models.ic_light_model is not None:
        from .ic_light import ICLightEditor

        return ICLightEditor.from_models(models, settings.light, settings.diffusion, device)
    return RelightEditor(settings.light)


register_editor("relight", _factory)
