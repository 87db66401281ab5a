"""Pieces the diffusion editors share (InstructPix2Pix, IC-Light): loading a local diffusers folder, text
embeddings, VAE encoding, starting from a noised image (Instruct-NeRF2NeRF / SDEdit), decoding, resizing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.errors import ModelMissingError

from .config import MODELS_ENV


def check_folder(folder: Path | None, model: str, default: str, how: str) -> Path:
    """The configured diffusers folder; ModelMissingError naming where `model_index.json` should be."""
    if folder is None:
        raise ModelMissingError(model, f"{MODELS_ENV}/{default}/model_index.json", how)
    if not (folder / "model_index.json").is_file():
        raise ModelMissingError(model, folder / "model_index.json", how)
    return folder


def load_local(pipeline_class: Any, folder: str, device: str, model: str, how: str) -> Any:
    """`pipeline_class.from_pretrained(folder)` offline, float16 on CUDA (float32 elsewhere), no safety checker;
    a folder diffusers cannot load is a ModelMissingError."""
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    try:
        pipeline = pipeline_class.from_pretrained(folder, safety_checker=None, feature_extractor=None,
                                                  requires_safety_checker=False, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ModelMissingError(model, Path(folder) / "model_index.json",
                                f"The folder could not be loaded as a diffusers {model} pipeline "
                                f"({type(error).__name__}: {error}). {how}") from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def diffusion_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(h, w) with the longer side `resolution`, both multiples of 8, keeping the aspect ratio."""
    scale = resolution / max(height, width)
    return max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8)


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """[H, W, C] -> [h, w, C] (bilinear, antialiased when shrinking)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return F.interpolate(image.permute(2, 0, 1)[None].float(), size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0].permute(1, 2, 0).to(image.dtype)


def text_embeddings(pipe: Any, texts: list[str]) -> Tensor:
    """[len(texts), L, C] CLIP text embeddings (padded to the tokenizer's length)."""
    tokens = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(pipe.unet.device)
    return pipe.text_encoder(tokens)[0].to(pipe.unet.dtype)


def vae_input(pipe: Any, picture: Tensor) -> Tensor:
    """[h, w, 3] in [0, 1] -> [1, 3, h, w] in [-1, 1] on the pipeline's device and dtype."""
    return (picture.permute(2, 0, 1)[None] * 2 - 1).to(device=pipe.unet.device, dtype=pipe.unet.dtype)


def noised_start(pipe: Any, image: Tensor, noise: float, steps: int, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor]:
    """(latents [1, 4, h / f, w / f], timesteps left): `image` encoded, then noised to the level `noise` in
    (0, 1] of a `steps`-step schedule (1: the first timestep, almost pure noise)."""
    device, dtype = pipe.unet.device, pipe.unet.dtype
    posterior = pipe.vae.encode(vae_input(pipe, image)).latent_dist
    sample = torch.randn(posterior.mean.shape, generator=generator).to(device=device, dtype=dtype)
    latents = (posterior.mean + posterior.std * sample) * pipe.vae.config.scaling_factor
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    start = min(steps - 1, int(round(steps * (1.0 - noise))))
    timesteps = scheduler.timesteps[start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    fresh = torch.randn(latents.shape, generator=generator).to(device=device, dtype=dtype)
    return scheduler.add_noise(latents, fresh, timesteps[:1]), timesteps


def decode(pipe: Any, latents: Tensor) -> Tensor:
    """Latents [1, 4, h / f, w / f] -> image [h, w, 3] float32 in [0, 1] on the CPU."""
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample  # [1, 3, h, w]
    return ((decoded[0].float().permute(1, 2, 0) + 1) / 2).clamp(0, 1).cpu()
