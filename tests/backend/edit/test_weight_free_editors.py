"""The weight-free editors: relighting from geometry, reference colour statistics per region, keyframe paint; and
the registry and configuration they are built from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.edit import EditContext, EditModels, EditorSettings, LightSpec, make_editor
from backend.edit.config import LIGHT_PRESETS
from backend.edit.keyframe_paint import KeyframePaintEditor
from backend.edit.reference_style import REGIONS, gaussian_transport, region_labels, transfer_regions
from backend.edit.relight import lambert_shading, relight


def sphere(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """(normals [H, W, 3] of a sphere facing the camera in OpenCV axes, mask [H, W])."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    inside = (x * x + y * y) < 0.95
    z = -(1 - x * x - y * y).clamp_min(0).sqrt()  # facing the camera: negative z
    normals = torch.stack([x, y, z], -1) * inside[..., None]
    return normals, inside.float()


def test_relighting_a_frame_with_its_own_light_keeps_it_and_a_side_light_moves_the_brightness() -> None:
    normals, mask = sphere()
    albedo = torch.tensor([0.7, 0.5, 0.4])
    front = LightSpec(preset="front")
    source = (albedo * lambert_shading(normals, front) * mask[..., None]).clamp(0, 1)  # [H, W, 3]
    same = relight(source, normals, mask, front)
    inside = mask > 0
    assert float((same - source)[inside].abs().mean()) < 0.03
    left = relight(source, normals, mask, LightSpec(preset="left"))
    half = normals.shape[1] // 2
    image_left, image_right = left[:, :half][inside[:, :half]].mean(), left[:, half:][inside[:, half:]].mean()
    assert float(image_left) > float(image_right) + 0.1  # the light comes from the image's left
    torch.testing.assert_close(left[~inside], source[~inside])  # the background is untouched
    warm = relight(source, normals, mask, LightSpec(preset="front", colour=(1.0, 0.5, 0.2)))
    ratio = warm[inside].mean(0) / same[inside].mean(0)
    assert float(ratio[0]) > float(ratio[1]) > float(ratio[2])


def test_light_spec_validation_and_presets() -> None:
    direction, colour, intensity, ambient = LightSpec(preset="rim", intensity=2.0).resolved()
    assert np.isclose(np.linalg.norm(direction), 1) and intensity == 2.0 and ambient == LIGHT_PRESETS["rim"][3]
    for bad in (dict(preset="disco"), dict(direction=(0, 0, 0)), dict(colour=(1, 1)), dict(intensity=-1),
                dict(ambient=float("nan"))):
        with pytest.raises(ValueError):
            LightSpec(**bad)


def test_relight_editor_needs_normals() -> None:
    editor = make_editor("relight", EditorSettings(light=LightSpec(preset="top")), EditModels(), "cpu")
    image = torch.rand(8, 8, 3)
    with pytest.raises(ValueError, match="normals"):
        editor.edit(image, image, "", torch.ones(8, 8))
    normals, mask = sphere(8)
    assert editor.edit(image, image, "", mask, context=EditContext(normals=normals)).shape == (8, 8, 3)


def test_gaussian_transport_matches_mean_and_covariance() -> None:
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand(4000, 3, generator=generator) @ torch.tensor([[0.5, 0.1, 0], [0, 0.3, 0.1], [0, 0, 0.2]])
    reference = torch.rand(3000, 3, generator=generator) * torch.tensor([0.2, 0.4, 0.1]) + 0.3
    mu_f, transport, mu_r = gaussian_transport(frame, reference)
    mapped = (frame.double() - mu_f) @ transport.T + mu_r
    torch.testing.assert_close(mapped.mean(0), reference.double().mean(0), atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.cov(mapped.T), torch.cov(reference.double().T), atol=2e-4, rtol=0)


def test_transfer_per_region_and_coarse_reference() -> None:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(32, 32, 3, generator=generator) * 0.5
    labels = torch.full((32, 32), REGIONS["background"])
    labels[8:24, 8:24] = REGIONS["skin"]
    labels[12:16, 10:22] = REGIONS["eyes"]
    reference = torch.rand(16, 16, 3, generator=generator) * 0.2 + torch.tensor([0.7, 0.2, 0.1])
    reference_labels = torch.full((16, 16), REGIONS["head"])
    out = transfer_regions(image, labels, reference, reference_labels)  # coarse: face parts become 'head'
    head = labels > 0
    torch.testing.assert_close(out[head].mean(0), reference.reshape(-1, 3).mean(0), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[~head], image[~head])
    fine = reference_labels.clone()
    fine[:8] = REGIONS["eyes"]
    fine[8:] = REGIONS["skin"]
    reference_fine = reference.clone()
    reference_fine[:8] = torch.tensor([0.1, 0.1, 0.9])
    out = transfer_regions(image, labels, reference_fine, fine)
    eyes = labels == REGIONS["eyes"]
    assert float(out[eyes][:, 2].mean()) > 0.8 and float(out[labels == REGIONS["skin"]][:, 0].mean()) > 0.6


def test_region_labels_from_landmarks() -> None:
    mask = np.zeros((100, 100))
    mask[5:95, 5:95] = 1
    angles = np.linspace(np.pi, 2 * np.pi, 17)
    landmarks = np.zeros((68, 2))
    landmarks[:17] = np.stack([50 + 40 * np.cos(angles + np.pi), 50 - 40 * np.sin(angles)], 1)[:, ::1]
    landmarks[17:27] = np.stack([np.linspace(15, 85, 10), np.full(10, 20.0)], 1)
    landmarks[36:42] = [[25, 40], [30, 37], [35, 37], [40, 40], [35, 43], [30, 43]]
    landmarks[42:48] = landmarks[36:42] + [35, 0]
    landmarks[48:60] = np.stack([50 + 12 * np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
                                 70 + 5 * np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], 1)
    labels = region_labels(mask, landmarks)
    assert labels[40, 30] == REGIONS["eyes"] and labels[70, 50] == REGIONS["mouth"]
    assert labels[55, 50] == REGIONS["skin"] and labels[0, 0] == REGIONS["background"]
    assert labels[8, 8] == REGIONS["head"]
    with pytest.raises(ValueError, match="68"):
        region_labels(mask, landmarks[:10])


def test_reference_style_editor_uses_alpha_of_the_reference() -> None:
    reference = np.zeros((20, 20, 4), np.uint8)
    reference[..., :3] = (200, 40, 40)
    reference[5:15, 5:15, 3] = 255
    editor = make_editor("reference-style", EditorSettings(reference=reference), EditModels(), "cpu")
    source = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    out = editor.edit(source, source, "", mask)
    torch.testing.assert_close(out[mask > 0].mean(0), torch.tensor([200 / 255, 40 / 255, 40 / 255]), atol=1e-2,
                               rtol=0)
    torch.testing.assert_close(out[mask == 0], source[mask == 0])
    with pytest.raises(ValueError, match="reference"):
        make_editor("reference-style", EditorSettings(), EditModels(), "cpu")


def test_keyframe_paint_targets_alpha_resize_and_errors() -> None:
    painted = np.zeros((8, 8, 4), np.uint8)
    painted[..., 0] = 255
    painted[:4, :, 3] = 255  # the top half was painted red
    editor = make_editor("keyframe-paint", EditorSettings(paint={3: painted, 1: np.full((16, 16, 3), 128, np.uint8)}),
                         EditModels(), "cpu")
    assert isinstance(editor, KeyframePaintEditor) and editor.frames == (1, 3) and not editor.iterative
    source = torch.full((16, 16, 3), 0.25)
    out = editor.edit(source, source, "", torch.ones(16, 16), context=EditContext(index=3))
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out[15, 15], torch.tensor([0.25, 0.25, 0.25]))
    whole = editor.edit(source, source, "", torch.ones(16, 16), context=EditContext(index=1))
    torch.testing.assert_close(whole, torch.full((16, 16, 3), 128 / 255))
    with pytest.raises(ValueError, match="not painted"):
        editor.edit(source, source, "", torch.ones(16, 16), context=EditContext(index=2))
    wide = make_editor("keyframe-paint", EditorSettings(paint={0: np.zeros((8, 16, 3), np.uint8)}), EditModels(),
                       "cpu")
    with pytest.raises(ValueError, match="aspect"):
        wide.edit(source, source, "", torch.ones(16, 16), context=EditContext(index=0))
    for bad in ({}, {-1: painted}, {0: painted.astype(np.float32)}):
        with pytest.raises(ValueError):
            KeyframePaintEditor(bad)


def test_registry_and_model_configuration(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown editor"):
        make_editor("sketch", EditorSettings(), EditModels(), "cpu")
    (tmp_path / "instruct-pix2pix").mkdir()
    models = EditModels.from_environment({"KEYFACE_MODELS": str(tmp_path)})
    assert models.instruct_pix2pix_model == tmp_path / "instruct-pix2pix"
    assert EditModels.from_environment({}).instruct_pix2pix_model is None
    given = EditModels.from_environment({"KEYFACE_MODELS": str(tmp_path)}, instruct_pix2pix_model=tmp_path / "x")
    assert given.instruct_pix2pix_model == tmp_path / "x"
    with pytest.raises(ValueError, match="unknown model"):
        EditModels.from_environment({}, vgg=tmp_path)


def test_editors_validate_images() -> None:
    editor = make_editor("keyframe-paint", EditorSettings(paint={0: np.zeros((4, 4, 3), np.uint8)}), EditModels(),
                         "cpu")
    image = torch.rand(4, 4, 3)
    for args in ((image[..., :2], image, torch.ones(4, 4)), (image, torch.rand(5, 4, 3), torch.ones(4, 4)),
                 (image, image, torch.ones(4, 5)), (image.long(), image, torch.ones(4, 4))):
        with pytest.raises(ValueError):
            editor.edit(args[0], args[1], "", args[2])
    with pytest.raises(ValueError, match=r"the painting of frame 2 must be a uint8 image .* float32 \[4, 4, 3\]"):
        KeyframePaintEditor({2: np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match=r"the reference must be a uint8 image .* uint8 \[4, 4, 2\]"):
        make_editor("reference-style", EditorSettings(reference=np.zeros((4, 4, 2), np.uint8)), EditModels(), "cpu")
