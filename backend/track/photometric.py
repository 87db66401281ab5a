"""Optional photometric refinement of a landmark fit: render the head, compare with the crops, adjust.

Appearance model (one per sequence): per-vertex albedo x second-order SH lighting (`backend.render.sh`),
starting from the colours the fitted head's visible vertices see in the crops (averaged over frames) and a
soft frontal light. Each step renders `batch_frames` random frames at `render_resolution` with the mesh
rasterizer (barycentrics are differentiable in the vertices, so the image loss moves the geometry) and
minimises

    photometric_weight x mean |render - crop| over pixels that are both head and foreground
    + landmark_weight x the landmark fit's whole loss (data, priors, smoothness; all frames)

over the shape, expressions, jaw, pose, translation, gaze, albedo and light (the focal length stays; the
first `appearance_steps` move only albedo and light, so the geometry meets a settled appearance). The
landmark term keeps the refinement from drifting where the image says little (silhouettes, hair).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from ..flame import FlameModel
from ..render import frontal_sh, interpolate, rasterize_mesh, render_map
from .fit_landmarks import CAMERA_ROTATION, FitConfig, LandmarkFit, LandmarkProblem, LandmarkTargets, single_thread
from .writer import image_path, mask_path


@dataclasses.dataclass(frozen=True)
class PhotometricConfig:
    """Settings of the photometric refinement."""

    iterations: int = 150
    """Adam steps."""
    batch_frames: int = 4
    """Frames rendered per step."""
    render_resolution: int = 128
    """Side of the renders and of the crops they are compared with (the crops are downsampled to it)."""
    learning_rate: float = 0.003
    """Adam step for the geometry (rotations, coefficients); translation uses a tenth."""
    albedo_learning_rate: float = 0.01
    """Adam step for albedo and light."""
    appearance_steps: int = 30
    """First steps that adjust only albedo and light (the geometry waits for an appearance to compare with)."""
    photometric_weight: float = 20.0
    """Weight of the mean absolute colour difference (colours in [0, 1])."""
    landmark_weight: float = 1.0
    """Weight of the landmark fit's loss."""

    def __post_init__(self) -> None:
        for name in ("iterations", "appearance_steps", "batch_frames", "render_resolution"):
            value = getattr(self, name)
            low = {"iterations": 0, "appearance_steps": 0, "render_resolution": 8}.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100_000:
                raise ValueError(f"PhotometricConfig.{name} must be an integer in {low}..100000, got {value!r}")
        for name in ("learning_rate", "albedo_learning_rate", "photometric_weight", "landmark_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"PhotometricConfig.{name} must be a finite number >= 0, got {value!r}")


def _load_crops(folder: Path, frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([T, r, r, 3] crops in [0, 1], [T, r, r] foreground masks in [0, 1]) downsampled (area) to `size`."""
    images, masks = [], []
    for t in range(frames):
        for path, store in ((folder / image_path(t), images), (folder / mask_path(t), masks)):
            image = Image.fromarray(iio.imread(path))
            store.append(np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


class _Renderer:
    """Renders frames of the full head with the crop cameras at the working resolution."""

    def __init__(self, head: FlameModel, problem: LandmarkProblem, size: int) -> None:
        self.head, self.problem, self.size = head, problem, size
        device = head.v_template.device
        self.scale = size / problem.targets.resolution
        pose = torch.eye(4, device=device)
        pose[:3, :3] = torch.tensor(CAMERA_ROTATION, dtype=torch.float32, device=device)
        pose[2, 3] = problem.config.camera_distance
        self.world_to_camera = pose  # [4, 4]

    def vertices(self, params: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
        """[B, V, 3] the full head posed for `frames`."""
        sub = {name: params[name][frames] for name in ("expression", "rotation", "jaw", "gaze", "translation")}
        return self.head(shape=params["shape"], expression=sub["expression"], rotation=sub["rotation"], jaw=sub["jaw"],
                 eyes=self.problem.eyes(sub), translation=sub["translation"]).vertices

    def intrinsics(self, params: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, 3] crop K scaled to the working resolution."""
        focal = torch.exp(params["log_focal"].detach()) * self.problem.focal_scale[frames] * self.scale  # [B]
        K = torch.zeros(len(frames), 3, 3, device=focal.device)
        K[:, 0, 0] = K[:, 1, 1] = focal
        K[:, :2, 2] = self.problem.principal[frames] * self.scale
        K[:, 2, 2] = 1.0
        return K

    def fragments(self, params: dict[str, torch.Tensor], frames: torch.Tensor):
        vertices = self.vertices(params, frames)
        return rasterize_mesh(vertices, self.head.faces, self.intrinsics(params, frames), self.world_to_camera,
                              self.size, self.size)


def _initial_albedo(renderer: _Renderer, params: dict[str, torch.Tensor], crops: torch.Tensor) -> torch.Tensor:
    """[V, 3] mean colour each vertex shows where it is visible (grey where never visible)."""
    head = renderer.head
    n_vertices = head.n_vertices
    total = torch.zeros(n_vertices, 3, device=crops.device)
    count = torch.zeros(n_vertices, device=crops.device)
    with torch.no_grad():
        for start in range(0, crops.shape[0], 8):
            frames = torch.arange(start, min(start + 8, crops.shape[0]), device=crops.device)
            fragments = renderer.fragments(params, frames)
            seen = fragments.face_id.clamp(min=0)  # [B, r, r]
            corners = head.faces[seen]  # [B, r, r, 3]
            nearest = corners.gather(-1, fragments.bary.argmax(-1, keepdim=True))[..., 0]  # [B, r, r]
            mask = fragments.mask  # [B, r, r]
            pixels = crops[frames][mask]  # [P, 3]
            total.index_add_(0, nearest[mask], pixels)
            count.index_add_(0, nearest[mask], torch.ones_like(pixels[:, 0]))
    grey = crops.new_full((3,), 0.5)
    return torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None], grey)


def refine(head: FlameModel, targets: LandmarkTargets, fit: LandmarkFit, folder: Path, fit_config: FitConfig,
           config: PhotometricConfig, progress: Callable[[int, int], None] | None = None
           ) -> tuple[LandmarkFit, np.ndarray]:
    """Refine `fit` against the crops written in `folder` (`images/`, `fg_masks/`).

    Args:
        head: the fitted model (the refinement runs on its device).
        targets: the landmark targets `fit` was made from.
        fit: the landmark fit.
        folder: the tracked folder being written (crops and masks of the T frames are there).
        fit_config: the landmark fit's settings (its loss is part of this one).
        config: see `PhotometricConfig`.
        progress: optional `progress(step, total)`; it may raise to cancel.

    Returns:
        (the refined fit, [iterations] the mean absolute colour difference of each step's frames).
    """
    problem = LandmarkProblem(head, targets, fit_config)
    device = head.v_template.device
    params = problem.params_from(fit)
    params["log_focal"].requires_grad_(False)
    frames = problem.frames
    crops, masks = (value.to(device) for value in _load_crops(folder, frames, config.render_resolution))
    renderer = _Renderer(head, problem, config.render_resolution)
    albedo = _initial_albedo(renderer, params, crops).requires_grad_()
    light = frontal_sh(device=device).requires_grad_()  # [9, 3]
    geometry = [{"params": [params[name]], "lr": config.learning_rate * (0.1 if name == "translation" else 1.0)}
                for name in ("shape", "expression", "rotation", "jaw", "gaze", "translation")]
    optimizer = torch.optim.Adam(geometry + [{"params": [albedo, light], "lr": config.albedo_learning_rate}])
    generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**63))
    batch = min(config.batch_frames, frames)
    history = np.zeros(config.iterations)
    with single_thread(device):
        for step in range(config.iterations):
            chosen = torch.randperm(frames, generator=generator)[:batch].to(device)
            optimizer.zero_grad()
            fragments = renderer.fragments(params, chosen)
            albedo_pixels = interpolate(albedo, fragments, head.faces)  # [B, r, r, 3]
            colour = render_map(fragments, head.faces, albedo_pixels, light)  # [B, r, r, 3]
            weight = fragments.mask * masks[chosen]  # [B, r, r]
            difference = (colour - crops[chosen]).abs().sum(-1)  # [B, r, r]
            photometric = (weight * difference).sum() / weight.sum().clamp(min=1.0) / 3.0
            loss = config.photometric_weight * photometric + config.landmark_weight * problem.loss(params)
            loss.backward()
            if step < config.appearance_steps:  # appearance first: geometry waits for a sharp albedo
                for group in optimizer.param_groups[:-1]:
                    for value in group["params"]:
                        value.grad = None
            optimizer.step()
            history[step] = float(photometric.detach())
            if progress is not None and ((step + 1) % 10 == 0 or step + 1 == config.iterations):
                progress(step + 1, config.iterations)
    return problem.result(params), history
