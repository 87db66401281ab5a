"""Test-time fit of the held-out frames' FLAME expression and pose before evaluation (appearance frozen).

The held-out frames are never trained on, so they are rendered with the tracker's parameters, and any tracking
error there (a jaw a little too open, a head turned a degree too far) shows up in the held-out PSNR as if it were
an appearance error. Common practice when evaluating avatars on tracked monocular video is to fit each test
frame's expression and pose to that frame first, with everything the avatar learned frozen. `fit_frames` does
that: per frame, additive corrections of the FLAME fields in `trainer.FLAME_REFINED` (expression, global
rotation, neck, jaw, eyes, translation, eyelids), zero-initialised, fitted by Adam (translation at a tenth of the
learning rate; `CHUNK` frames at a time) to

    (1 - λ_dssim) L1 + λ_dssim D-SSIM (the trainer's photometric loss) + λ_flame |correction|^2

with the avatar in evaluation mode and none of its parameters (Gaussians, SH / texture, renderer, offsets) nor
the trainer's state (training-frame corrections, Adam, generator, densification statistics) touched.
The identity (shape) and the camera stay as tracked.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Iterator

import torch
from torch import Tensor, nn

from . import losses
from .evaluate import CHUNK

if TYPE_CHECKING:
    from .trainer import Trainer


TRANSLATION_RATE = 0.1
"""Translation's learning rate relative to the others (metres move the head more than radians or coefficients)."""


@dataclasses.dataclass(frozen=True)
class FrameFitConfig:
    """How the held-out frames' expression and pose are fitted before evaluation."""

    steps: int = 30
    """Adam steps per chunk of frames; 0: no fit (frames are evaluated with their tracked parameters)."""
    learning_rate: float = 5e-3
    """Adam learning rate of the corrections (radians, coefficients); translation (metres) uses a tenth."""

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 0 <= self.steps <= 100_000:
            raise ValueError(f"FrameFitConfig.steps must be an integer in 0..100000, got {self.steps!r}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise ValueError(f"FrameFitConfig.learning_rate must be a finite number > 0, got {rate!r}")


@contextlib.contextmanager
def _frozen(modules: list[nn.Module]) -> Iterator[None]:
    """No gradients for any parameter of `modules` inside the block (their flags are restored after), and the
    modules in evaluation mode (restored after)."""
    parameters = [p for module in modules for p in module.parameters()]
    flags = [p.requires_grad for p in parameters]
    modes = [module.training for module in modules]
    for p in parameters:
        p.requires_grad_(False)
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)
        for module, mode in zip(modules, modes):
            module.train(mode)


def fit_frames(trainer: Trainer, indices: list[int], config: FrameFitConfig = FrameFitConfig()
               ) -> dict[str, Tensor]:
    """FLAME inputs of dataset frames `indices`, fitted to those frames with the avatar frozen.

    Args:
        trainer: the trainer whose avatar renders the frames (nothing in it changes).
        indices: dataset frames (usually `dataset.holdout_indices`).
        config: steps and learning rate (steps 0 returns the tracked inputs, `trainer.flame_at(indices)`).

    Returns:
        {name: [B, n] tensor} for `Trainer.evaluate(..., flame=...)` / `Trainer.render(..., flame=...)`, rows in
        the order of `indices` (detached).
    """
    from .trainer import FLAME_REFINED

    indices = list(indices)
    if not indices or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(trainer.dataset)
                          for i in indices):
        raise ValueError(f"indices must be a non-empty list of frames in [0, {len(trainer.dataset) - 1}], got "
                         f"{indices[:8]}")
    c = trainer.config
    chunks = []
    with _frozen([trainer.avatar, trainer.corrections]):
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start:start + CHUNK]
            with torch.no_grad():
                tracked = trainer.flame_at(chunk)  # {name: [B, n]}
            deltas = {name: torch.zeros_like(value, requires_grad=True) for name, value in tracked.items()
                      if name in FLAME_REFINED}
            target = trainer.dataset.images[chunk].to(trainer.device, trainer.dtype)  # [B, H, W, 3]
            groups = [{"params": [delta], "lr": config.learning_rate * (TRANSLATION_RATE if name == "translation"
                                                                        else 1.0)} for name, delta in deltas.items()]
            optimizer = torch.optim.Adam(groups) if groups else None
            for _ in range(config.steps if optimizer is not None else 0):
                flame = {name: value + deltas[name] if name in deltas else value for name, value in tracked.items()}
                rgb = trainer.render(chunk, flame=flame).rgb  # [B, H, W, 3]
                loss = (1.0 - c.lambda_dssim) * losses.l1(rgb, target) + c.lambda_dssim * losses.dssim(rgb, target)
                prior = sum(delta.square().sum(dim=1).mean() for delta in deltas.values())
                optimizer.zero_grad(set_to_none=True)
                (loss + c.lambda_flame * prior).backward()
                optimizer.step()
            chunks.append({name: (value + deltas[name] if name in deltas else value).detach()
                           for name, value in tracked.items()})
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
