"""The IC-Light relighting editor with a tiny random-weight Stable Diffusion pipeline whose UNet takes 8 channels."""

from __future__ import annotations

import pytest
import torch

from backend.edit import EditContext, EditModels, EditorSettings, DiffusionSettings, LightSpec, make_editor
from backend.edit.ic_light import ICLightEditor, light_prompt
from backend.edit.relight import RelightEditor
from backend.errors import ModelMissingError


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_pipeline):
    root = tmp_path_factory.mktemp("models")
    tiny_pipeline(root / "ic-light", "ic-light")
    tiny_pipeline(root / "sd", "sd")
    return root


def sphere_normals(size: int) -> torch.Tensor:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    z = -(1 - x * x - y * y).clamp_min(0).sqrt()
    return torch.nn.functional.normalize(torch.stack([x, y, z], -1), dim=-1)


def test_relight_uses_ic_light_when_configured(folders) -> None:
    settings = EditorSettings(light=LightSpec(preset="left"), diffusion=DiffusionSettings(steps=2, resolution=32))
    assert isinstance(make_editor("relight", settings, EditModels(), "cpu"), RelightEditor)
    models = EditModels.from_environment({"KEYFACE_MODELS": str(folders)})
    editor = make_editor("relight", settings, models, "cpu")
    assert isinstance(editor, ICLightEditor) and editor.iterative
    generator = torch.Generator().manual_seed(0)
    image, source = torch.rand(24, 24, 3, generator=generator), torch.rand(24, 24, 3, generator=generator)
    mask = torch.zeros(24, 24)
    mask[4:20, 4:20] = 1
    context = EditContext(normals=sphere_normals(24), noise=0.9, seed=1)
    first = editor.edit(image, source, "", mask, context=context)
    again = editor.edit(image, source, "", mask, context=context)
    assert first.shape == (24, 24, 3) and torch.equal(first, again)
    torch.testing.assert_close(first[mask == 0], source[mask == 0])
    assert not torch.equal(first[mask > 0], source[mask > 0])
    with pytest.raises(ValueError, match="normals"):
        editor.edit(image, source, "", mask)


def test_a_plain_stable_diffusion_folder_is_refused(folders) -> None:
    with pytest.raises(ValueError, match="8"):
        make_editor("relight", EditorSettings(), EditModels(ic_light_model=folders / "sd"), "cpu")
    with pytest.raises(ModelMissingError, match="IC-Light"):
        make_editor("relight", EditorSettings(), EditModels(ic_light_model=folders / "none"), "cpu")


def test_light_prompt_names_the_side() -> None:
    assert light_prompt(LightSpec(preset="left")) == "portrait, left light from the left"
    assert light_prompt(LightSpec(direction=(0, 1, 0.2))) == "portrait, soft light from above"
    assert light_prompt(LightSpec(preset="rim")).endswith("from behind")
