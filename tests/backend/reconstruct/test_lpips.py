"""LPIPS: the VGG16 architecture with tiny random weights, loading from the two published file layouts, and a
clear error for missing weights."""

from __future__ import annotations

import pytest
import torch

from backend.errors import ModelMissingError
from backend.reconstruct.lpips import LIN_FILE, LPIPS, TAP_CHANNELS, VGG_FILE


@pytest.fixture(scope="module")
def random_lpips():
    torch.manual_seed(0)
    model = LPIPS()
    with torch.no_grad():
        for lin in model.lins:
            lin.model[1].weight.uniform_(0.0, 1.0)  # LPIPS' linear weights are non-negative
    return model


def test_distance_is_zero_for_equal_images_symmetric_and_positive(random_lpips) -> None:
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 2, 32, 32, 3, generator=generator)
    same, ab, ba = random_lpips(a, a), random_lpips(a, b), random_lpips(b, a)
    assert same.shape == (2,) and float(same.abs().max()) < 1e-6
    assert bool((ab > 0).all())
    torch.testing.assert_close(ab, ba)


def test_gradient_reaches_the_prediction_but_not_the_network(random_lpips) -> None:
    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 1, 32, 32, 3, generator=generator)
    a.requires_grad_()
    random_lpips(a, b).sum().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    assert all(p.grad is None for p in random_lpips.parameters())


def test_loads_torchvision_and_lpips_weight_files(random_lpips, tmp_path) -> None:
    state = random_lpips.state_dict()
    vgg = {name: value for name, value in state.items() if name.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also has the classifier: ignored
    torch.save(vgg, tmp_path / VGG_FILE)
    torch.save({f"lin{k}.model.1.weight": state[f"lins.{k}.model.1.weight"] for k in range(len(TAP_CHANNELS))},
               tmp_path / LIN_FILE)
    loaded = LPIPS.from_folder(tmp_path)
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_missing_weights_name_the_file(tmp_path) -> None:
    with pytest.raises(ModelMissingError) as info:
        LPIPS.from_folder(tmp_path)
    assert VGG_FILE in info.value.message and str(tmp_path) in info.value.message and LIN_FILE in info.value.hint


def test_wrong_files_are_a_value_error(tmp_path) -> None:
    (tmp_path / VGG_FILE).write_bytes(b"not a weight file")
    (tmp_path / LIN_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable PyTorch weight file"):
        LPIPS.from_folder(tmp_path)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / VGG_FILE)
    torch.save({}, tmp_path / LIN_FILE)
    with pytest.raises(ValueError, match="do not match"):
        LPIPS.from_folder(tmp_path)
