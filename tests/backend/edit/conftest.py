"""Fixtures of the editing tests: tiny random-weight diffusion pipelines of the real architectures, saved to
temporary folders (never downloaded)."""

from __future__ import annotations

import json

import pytest
import torch

TINY_VOCABULARY = 58
"""Tokens of the tiny CLIP tokenizer (checked: offline loading can silently fall back to a 2-token one)."""
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = [("m", "a"), ("s", "m"), ("i", "le</w>"), ("l", "e</w>")]
VOCAB = (["<|startoftext|>", "<|endoftext|>"] + list(LETTERS) + [f"{c}</w>" for c in LETTERS]
         + ["ma", "sm", "le</w>", "ile</w>"])


def tiny_pipeline_folder(folder, kind: str) -> None:
    """Save a diffusers pipeline of the real architecture with tiny random components to `folder`:
    "instruct-pix2pix" (StableDiffusionInstructPix2PixPipeline, 8-channel UNet), "ic-light" (StableDiffusionPipeline
    with IC-Light's 8-channel UNet) or "sd" (a plain 4-channel Stable Diffusion)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionInstructPix2PixPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab_file, merges_file = folder.parent / f"{kind}-vocab.json", folder.parent / f"{kind}-merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(VOCAB)}))
    merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=16)
    assert len(tokenizer) == len(VOCAB) == TINY_VOCABULARY
    unet = UNet2DConditionModel(sample_size=8, in_channels=4 if kind == "sd" else 8, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2,
                                                max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1))
    scheduler = DDIMScheduler(num_train_timesteps=100, clip_sample=False, steps_offset=1)
    pipeline_class = StableDiffusionInstructPix2PixPipeline if kind == "instruct-pix2pix" else StableDiffusionPipeline
    pipeline = pipeline_class(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                              safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)




@pytest.fixture(scope="session")
def tiny_pipeline():
    """`tiny_pipeline(folder, kind)`: see `tiny_pipeline_folder`."""
    return tiny_pipeline_folder


@pytest.fixture(scope="session")
def tiny_vocabulary() -> int:
    """The tiny tokenizer's size, to check a loaded pipeline kept it."""
    return TINY_VOCABULARY
