"""Relighting with IC-Light (Zhang, Rao & Agrawala 2025, the foreground-conditioned 'fc' model) when its weights are
configured; the `relight` editor uses it instead of the weight-free relighting.

IC-Light's 'fc' model is a Stable Diffusion 1.5 UNet whose first convolution takes 8 channels: the noisy latents
and the latents of the subject over a neutral grey background. Run the way iterative dataset update runs editors:
the start image is the weight-free relighting of the current render (so the requested light direction and colour
are already there), noised to the schedule's level and denoised with the subject's latents as the condition and
text classifier-free guidance; the result replaces the frame inside the head mask.

Weights: a diffusers folder whose `model_index.json` describes a `StableDiffusionPipeline` with that 8-channel UNet
(`EditModels.ic_light_model`, default `$KEYFACE_MODELS/ic-light`). Never downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from .config import IC_LIGHT_FOLDER, MODELS_ENV, DiffusionSettings, EditModels, LightSpec
from .diffusion import check_folder, decode, diffusion_size, load_local, noised_start, resize, text_embeddings, \
    vae_input
from .editor import EditContext, check_images, clamp01
from .relight import relight

MODEL_NAME = "IC-Light"
HOW_TO_INSTALL = (f"Save a diffusers Stable Diffusion 1.5 folder whose unet/ is IC-Light's 'fc' UNet (8 input "
                  f"channels) in that folder, or set {MODELS_ENV} to a folder holding ic-light/, or name the folder "
                  f"in the job spec (models.ic_light). Keyface never downloads weights.")
GREY = 0.5
"""Background the subject is shown over in the condition image."""


def light_prompt(light: LightSpec) -> str:
    """Words for the light: its preset (or 'soft') and where it comes from."""
    direction, _, _, _ = light.resolved()
    x, y, z = direction
    if z < -0.5:
        side = "behind"
    elif abs(x) >= max(abs(y), 0.5):
        side = "the left" if x > 0 else "the right"
    elif abs(y) >= 0.5:
        side = "above" if y > 0 else "below"
    else:
        side = "the front"
    name = (light.preset or "soft").replace("-", " ")
    return f"portrait, {name} light from {side}"


@functools.lru_cache(maxsize=1)
def load_pipeline(folder: str, device: str):
    """The IC-Light pipeline in `folder` on `device`, loaded once per process; refuses a UNet without 8 inputs."""
    from diffusers import StableDiffusionPipeline

    pipeline = load_local(StableDiffusionPipeline, folder, device, MODEL_NAME, HOW_TO_INSTALL)
    if pipeline.unet.config.in_channels != 8:
        raise ValueError(f"{folder} is not an IC-Light 'fc' model: its UNet takes {pipeline.unet.config.in_channels} "
                         f"input channels, IC-Light's takes 8 (latents + the subject's latents)")
    return pipeline


class ICLightEditor:
    """Editor 'relight' through IC-Light (see the module docstring); `instruction`, when given, is the prompt."""

    name = "relight"
    frames = None
    iterative = True
    needs_instruction = False

    def __init__(self, pipeline, light: LightSpec, settings: DiffusionSettings = DiffusionSettings()) -> None:
        self.pipeline, self.light, self.settings = pipeline, light, settings

    @classmethod
    def from_models(cls, models: EditModels, light: LightSpec, settings: DiffusionSettings, device: str
                    ) -> ICLightEditor:
        folder: Path = check_folder(models.ic_light_model, MODEL_NAME, IC_LIGHT_FOLDER, HOW_TO_INSTALL)
        return cls(load_pipeline(str(folder), str(device)), light, settings)

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        height, width = check_images(image, source, mask)
        if context.normals is None:
            raise ValueError("the relight editor needs the head's normals (EditContext.normals)")
        if not 0.0 < context.noise <= 1.0:
            raise ValueError(f"the noise level must be in (0, 1], got {context.noise}")
        start = relight(image, context.normals.to(image), mask, self.light)  # [H, W, 3] the light-direction prior
        foreground = source * mask[..., None] + GREY * (1 - mask[..., None])  # [H, W, 3]
        size = diffusion_size(height, width, self.settings.resolution)
        prompt = instruction.strip() if isinstance(instruction, str) and instruction.strip() else \
            light_prompt(self.light)
        lit = resize(self(resize(start, size), resize(foreground, size), prompt, noise=context.noise,
                          seed=context.seed).to(image), (height, width))  # [H, W, 3]
        blend = mask[..., None]
        return clamp01(blend * lit + (1 - blend) * source)

    @torch.no_grad()
    def __call__(self, start: Tensor, foreground: Tensor, prompt: str, *, noise: float, seed: int) -> Tensor:
        """Relight: start [h, w, 3] noised and denoised conditioned on foreground [h, w, 3] -> [h, w, 3]."""
        pipe, settings = self.pipeline, self.settings
        generator = torch.Generator(device="cpu").manual_seed(seed)

        # 1. text embeddings for (prompt, unconditional)
        embeddings = text_embeddings(pipe, [prompt, ""])  # [2, L, C]

        # 2. the subject's latents (scaled, as IC-Light was trained), the same in both branches
        condition = pipe.vae.encode(vae_input(pipe, foreground)).latent_dist.mode() * pipe.vae.config.scaling_factor
        condition = torch.cat([condition, condition])  # [2, 4, h / f, w / f]

        # 3. start from the relit render, noised to the schedule's level
        latents, timesteps = noised_start(pipe, start, noise, settings.steps, generator)
        scheduler = pipe.scheduler

        # 4. denoise with text classifier-free guidance
        step_options = pipe.prepare_extra_step_kwargs(generator, 0.0)
        for t in timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)  # [2, 4, h / f, w / f]
            prediction = pipe.unet(torch.cat([model_input, condition], dim=1), t,
                                   encoder_hidden_states=embeddings).sample  # [2, 4, h / f, w / f]
            text, unconditional = prediction.chunk(2)
            guided = unconditional + settings.guidance_scale * (text - unconditional)
            latents = scheduler.step(guided, t, latents, **step_options).prev_sample

        # 5. decode
        return decode(pipe, latents)  # [h, w, 3]
