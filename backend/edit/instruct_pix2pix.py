"""Editor 'instruct-pix2pix': InstructPix2Pix (Brooks et al. 2023) through diffusers, run the way iterative dataset
update runs it (Instruct-NeRF2NeRF, PortraitGen): the current render is noised to the schedule's noise level and
denoised with the original frame as the image condition, so edits stay close to what the avatar already shows.

The pipeline is `diffusers.StableDiffusionInstructPix2PixPipeline` loaded from a local folder
(`EditModels.instruct_pix2pix_model`, default `$KEYFACE_MODELS/instruct-pix2pix`); its components (VAE, CLIP text
encoder and tokenizer, 8-channel UNet, scheduler) drive the loop in `InstructPix2PixEditor.__call__`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from .config import INSTRUCT_PIX2PIX_FOLDER, MODELS_ENV, DiffusionSettings, EditModels, EditorSettings
from .diffusion import (check_folder, decode, diffusion_size, load_local, noised_start, resize, text_embeddings,
                        vae_input)
from .editor import EditContext, check_images, clamp01, register_editor

MODEL_NAME = "InstructPix2Pix"
HOW_TO_INSTALL = (f"Save a diffusers copy of InstructPix2Pix (e.g. timbrooks/instruct-pix2pix: model_index.json, "
                  f"unet/, vae/, text_encoder/, tokenizer/, scheduler/) in that folder, or set {MODELS_ENV} to a "
                  f"folder holding instruct-pix2pix/, or name the folder in the job spec (models.instruct_pix2pix). "
                  f"Keyface never downloads weights.")


def model_folder(models: EditModels) -> Path:
    """The configured InstructPix2Pix folder; raises ModelMissingError naming where it should be."""
    return check_folder(models.instruct_pix2pix_model, MODEL_NAME, INSTRUCT_PIX2PIX_FOLDER, HOW_TO_INSTALL)


@functools.lru_cache(maxsize=1)
def load_pipeline(folder: str, device: str):
    """The pipeline in `folder` on `device` (float16 on CUDA, float32 elsewhere), loaded once per process."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    return load_local(StableDiffusionInstructPix2PixPipeline, folder, device, MODEL_NAME, HOW_TO_INSTALL)


class InstructPix2PixEditor:
    """Text-instructed editing from a local InstructPix2Pix pipeline (see the module docstring)."""

    name = "instruct-pix2pix"
    frames = None
    iterative = True
    needs_instruction = True

    def __init__(self, pipeline, settings: DiffusionSettings = DiffusionSettings()) -> None:
        self.pipeline = pipeline
        self.settings = settings

    @classmethod
    def from_models(cls, models: EditModels, settings: DiffusionSettings, device: str = "cpu"
                    ) -> InstructPix2PixEditor:
        return cls(load_pipeline(str(model_folder(models)), str(device)), settings)

    def edit(self, image: Tensor, source: Tensor, instruction: str, mask: Tensor, *,
             context: EditContext = EditContext()) -> Tensor:
        height, width = check_images(image, source, mask)
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruct-pix2pix needs a non-empty instruction, got {instruction!r}")
        if not 0.0 < context.noise <= 1.0:
            raise ValueError(f"the noise level must be in (0, 1], got {context.noise}")
        size = diffusion_size(height, width, self.settings.resolution)
        edited = self(resize(image, size), resize(source, size), instruction, noise=context.noise,
                      seed=context.seed)  # [h, w, 3]
        return clamp01(resize(edited.to(image), (height, width)))

    @torch.no_grad()
    def __call__(self, image: Tensor, source: Tensor, instruction: str, *, noise: float, seed: int) -> Tensor:
        """Edit image [h, w, 3] conditioned on source [h, w, 3] (h, w multiples of the VAE's factor) -> [h, w, 3]."""
        pipe, settings = self.pipeline, self.settings
        device, dtype = pipe.unet.device, pipe.unet.dtype
        generator = torch.Generator(device="cpu").manual_seed(seed)

        # 1. text embeddings for (text + image, image only, neither): the three InstructPix2Pix branches
        embeddings = text_embeddings(pipe, [instruction, ""])  # [2, L, C]
        embeddings = torch.cat([embeddings[:1], embeddings[1:], embeddings[1:]])  # [3, L, C]

        # 2. image condition: the source frame's latent mode, unscaled (as InstructPix2Pix was trained)
        condition = pipe.vae.encode(vae_input(pipe, source)).latent_dist.mode()  # [1, 4, h / f, w / f]
        condition = torch.cat([condition, condition, torch.zeros_like(condition)])  # [3, 4, h / f, w / f]

        # 3. start from the render, noised to the schedule's level
        latents, timesteps = noised_start(pipe, image, noise, settings.steps, generator)
        scheduler = pipe.scheduler

        # 4. denoise with text and image classifier-free guidance
        step_options = pipe.prepare_extra_step_kwargs(generator, 0.0)  # what this scheduler's step accepts
        for t in timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 3), t)  # [3, 4, h / f, w / f]
            prediction = pipe.unet(torch.cat([model_input, condition], dim=1), t,
                                   encoder_hidden_states=embeddings).sample  # [3, 4, h / f, w / f]
            text, image_only, neither = prediction.chunk(3)
            guided = (neither + settings.guidance_scale * (text - image_only)
                      + settings.image_guidance_scale * (image_only - neither))
            latents = scheduler.step(guided, t, latents, **step_options).prev_sample

        # 5. decode
        return decode(pipe, latents)  # [h, w, 3]


def _factory(settings: EditorSettings, models: EditModels, device: str) -> InstructPix2PixEditor:
    return InstructPix2PixEditor.from_models(models, settings.diffusion, device)


register_editor("instruct-pix2pix", _factory)
