"""Gatys-style reference editing with a VGG16 trunk of random weights saved like torchvision's file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.edit import EditModels, EditorSettings, make_editor
from backend.edit.gatys import GatysStyle, _features, load_vgg
from backend.errors import ModelMissingError
from backend.reconstruct.lpips import LPIPS


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    torch.manual_seed(0)
    state = {f"features.{name}": value for name, value in LPIPS().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's file also holds the classifier
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path


def test_loads_the_trunk_and_refuses_missing_or_foreign_files(vgg_file, tmp_path) -> None:
    trunk = load_vgg(vgg_file)
    assert not any(p.requires_grad for p in trunk.parameters()) and len(trunk) == 23  # up to relu4_3
    with pytest.raises(ModelMissingError, match="VGG16"):
        load_vgg(tmp_path / "nothing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "small.pth")
    with pytest.raises(ValueError, match="lacks"):
        load_vgg(tmp_path / "small.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a weight file")
    with pytest.raises(ValueError, match="readable"):
        load_vgg(tmp_path / "junk.pth")


def test_optimisation_moves_the_style_towards_the_reference_inside_the_mask(vgg_file) -> None:
    generator = torch.Generator().manual_seed(1)
    reference = torch.rand(24, 24, 3, generator=generator) * torch.tensor([1.0, 0.3, 0.2])
    source = torch.rand(24, 24, 3, generator=generator) * torch.tensor([0.2, 0.3, 1.0])
    mask = torch.zeros(24, 24)
    mask[4:20, 4:20] = 1
    style = GatysStyle(load_vgg(vgg_file), reference, steps=8)
    content = _features(style.trunk, source)
    before, _ = style.losses(source, content)
    out = style(source, source, mask)
    after, _ = style.losses(out, content)
    assert float(after) < 0.7 * float(before)
    torch.testing.assert_close(out[mask == 0], source[mask == 0])


def test_reference_style_editor_uses_gatys_when_vgg_is_configured(vgg_file) -> None:
    reference = np.zeros((16, 16, 3), np.uint8)
    reference[..., 0] = 200
    settings = EditorSettings(reference=reference, style_steps=2)
    plain = make_editor("reference-style", settings, EditModels(), "cpu")
    styled = make_editor("reference-style", settings, EditModels(vgg_weights=vgg_file), "cpu")
    assert plain.gatys is None and styled.gatys is not None and styled.gatys.steps == 2
    source = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(2))
    out = styled.edit(source, source, "", torch.ones(16, 16))
    assert out.shape == (16, 16, 3) and not torch.equal(out, plain.edit(source, source, "", torch.ones(16, 16)))
