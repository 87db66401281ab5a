"""Face-aware editing: face box, crop / paste round trip, and the composite of the crop edit over the full edit."""

from __future__ import annotations

import pytest
import torch

from backend.edit import EditContext
from backend.edit.face_crop import crop, face_aware_edit, face_box, paste
from backend.track.crop import CropBox


def test_face_box_is_a_grown_square_around_the_landmarks() -> None:
    box = face_box(torch.tensor([[10.0, 20.0], [30.0, 60.0]]), margin=0.25)
    assert box.size == pytest.approx(60.0) and box.x0 == pytest.approx(-10.0) and box.y0 == pytest.approx(10.0)
    with pytest.raises(ValueError):
        face_box(torch.tensor([[1.0, float("nan")], [2.0, 3.0]]))
    with pytest.raises(ValueError):
        face_box(torch.zeros(1, 2))


def test_crop_then_paste_is_the_identity_inside_the_box() -> None:
    image = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(0))
    box = CropBox(12.0, 4.0, 32.0)
    cropped = crop(image, box, 32)  # one crop pixel per frame pixel
    torch.testing.assert_close(cropped, image[4:36, 12:44], atol=1e-5, rtol=0)
    back, weight = paste(cropped, box, 48, 64)
    inside = weight > 0
    torch.testing.assert_close(back[inside], image[inside], atol=1e-5, rtol=0)
    assert float(weight[20, 28]) == 1.0 and float(weight[0, 0]) == 0.0 and float(weight[20, 12]) < 0.25
    outside = crop(image, CropBox(-100.0, -100.0, 10.0), 4)
    assert float(outside.abs().max()) == 0.0  # zeros outside the frame


class Recorder:
    """An editor that paints the crop (the smaller call) white and the full frame black, recording sizes."""

    name, frames, iterative, needs_instruction = "recorder", None, False, False

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = []

    def edit(self, image, source, instruction, mask, *, context=EditContext()):
        self.calls.append((tuple(image.shape), None if context.landmarks is None else tuple(context.landmarks.shape)))
        return torch.full_like(image, 1.0 if len(self.calls) == 2 else 0.0)


def test_face_aware_edit_composites_the_crop_inside_the_mask_only() -> None:
    image = torch.rand(40, 40, 3)
    mask = torch.zeros(40, 40)
    mask[10:30, 10:30] = 1
    landmarks = torch.tensor([[15.0, 15.0], [25.0, 25.0]])
    editor = Recorder()
    out = face_aware_edit(editor, image, image, "x", mask, EditContext(normals=torch.zeros(40, 40, 3)), landmarks,
                          size=24)
    assert editor.calls == [((40, 40, 3), None), ((24, 24, 3), (2, 2))]
    assert float(out[20, 20].min()) == 1.0  # the crop's edit at the face
    assert float(out[2, 2].max()) == 0.0 and float(out[11, 35].max()) == 0.0  # the full edit off the mask
    plain = face_aware_edit(Recorder(), image, image, "x", mask, EditContext(), None)
    assert float(plain.abs().max()) == 0.0
