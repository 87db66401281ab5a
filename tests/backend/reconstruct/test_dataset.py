"""`FrameDataset`: reading tracked folders (sizes, masks, K, frame selection), the hold-out split, replacing
frames, and clear errors for unusable frames (fuzzed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.reconstruct import DatasetError, FrameDataset, frame_rows, holdout_count, sequence_rows
from backend.track.importers import load_tracked

FRAMES, SIZE = 6, 32
"""The conftest subject's frame count and image side."""


def test_tracked_folder_round_trips_frames_masks_and_cameras(subject, tracked_folder) -> None:
    dataset = FrameDataset.from_tracked(load_tracked(tracked_folder), resolution=SIZE)
    assert len(dataset) == FRAMES and (dataset.height, dataset.width) == (SIZE, SIZE)
    mask = subject.masks[..., None]
    composited = subject.images * mask + (1 - mask) * torch.tensor(subject.background)  # what a mask does to a photo
    np.testing.assert_allclose(dataset.images.numpy(), composited.numpy(), atol=1.5 / 255)
    np.testing.assert_allclose(dataset.masks.numpy(), subject.masks.numpy(), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(dataset.cameras[0].K, subject.cameras[0].K, atol=1e-4)
    np.testing.assert_allclose(dataset.cameras[0].world_to_camera, subject.cameras[0].world_to_camera, atol=1e-6)
    np.testing.assert_allclose(dataset.sequence.jaw, subject.sequence.jaw, atol=1e-6)
    assert dataset.holdout_indices == [FRAMES - 1] and dataset.train_indices == list(range(FRAMES - 1))


def test_resolution_scales_images_and_intrinsics(subject, tracked_folder) -> None:
    dataset = FrameDataset.from_tracked(load_tracked(tracked_folder), resolution=SIZE // 2)
    assert (dataset.height, dataset.width) == (SIZE // 2, SIZE // 2)
    np.testing.assert_allclose(dataset.cameras[0].K[:2], subject.cameras[0].K[:2] / 2, atol=1e-4)
    bigger = FrameDataset.from_tracked(load_tracked(tracked_folder), resolution=4 * SIZE)
    assert bigger.width == SIZE  # never enlarged


def test_max_frames_keeps_evenly_spaced_frames(tracked_folder) -> None:
    assert frame_rows(10, 4) == [0, 3, 6, 9] and frame_rows(3, 5) == [0, 1, 2]
    dataset = FrameDataset.from_tracked(load_tracked(tracked_folder), resolution=SIZE, max_frames=3)
    assert len(dataset) == 3 and dataset.sequence.frame_start == 0


def test_sequence_rows_takes_the_rows_in_the_order_given(subject) -> None:
    sequence = subject.sequence
    cut = sequence_rows(sequence, [4, 1, 4])
    assert len(cut) == 3 and cut.frame_start == sequence.frame_start + 4 and cut.fps == sequence.fps
    np.testing.assert_array_equal(cut.shape, sequence.shape)
    for name in ("expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids"):
        np.testing.assert_array_equal(getattr(cut, name), getattr(sequence, name)[[4, 1, 4]])
    with pytest.raises(ValueError, match="at least one row"):
        sequence_rows(sequence, [])


def test_holdout_is_the_last_tenth() -> None:
    assert [holdout_count(t) for t in (2, 9, 10, 11, 100, 101)] == [1, 1, 1, 2, 10, 11]
    with pytest.raises(DatasetError, match="at least 2 frames"):
        holdout_count(1)


def test_replace_swaps_one_frame(dataset) -> None:
    image = torch.full((SIZE, SIZE, 3), 0.25)
    before = dataset.images[1].clone()
    dataset.replace(2, image)
    assert torch.equal(dataset.images[2], image) and torch.equal(dataset.images[1], before)
    with pytest.raises(ValueError, match="index"):
        dataset.replace(FRAMES, image)
    with pytest.raises(ValueError, match=r"\[32, 32, 3\]"):
        dataset.replace(0, torch.zeros(SIZE, SIZE + 1, 3))


def test_portrait_frames_and_alpha_masks(subject, tmp_path) -> None:
    """A portrait-orientation sequence whose PNGs carry the mask as alpha (no mask files)."""
    folder = tmp_path / "portrait"
    from backend.track.synthetic import write_tracked_folder

    write_tracked_folder(subject, folder)
    top = json.loads((folder / "transforms.json").read_text())
    width, height = SIZE, SIZE + 16
    top.update(h=height, cy=height - (height / 2))
    for frame in top["frames"]:
        rgb = np.asarray(PIL.Image.open(folder / frame["file_path"]))
        alpha = np.asarray(PIL.Image.open(folder / frame["fg_mask_path"]))
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[8:8 + SIZE, :, :3], rgba[8:8 + SIZE, :, 3] = rgb, alpha
        PIL.Image.fromarray(rgba).save(folder / frame["file_path"])
        (folder / frame["fg_mask_path"]).unlink()
    (folder / "transforms.json").write_text(json.dumps(top))
    dataset = FrameDataset.from_tracked(load_tracked(folder), resolution=24)
    assert (dataset.width, dataset.height) == (round(SIZE * 24 / height), 24)
    assert dataset.masks is not None and float(dataset.masks[0, :2].max()) == 0.0


def test_mixed_sizes_missing_and_corrupt_frames_are_clear_errors(tracked_folder, tmp_path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tracked_folder, folder)
    first = folder / "images" / "00000_00.png"
    PIL.Image.new("RGB", (SIZE + 4, SIZE)).save(first)
    with pytest.raises(DatasetError, match="36x32 but its camera says 32x32"):
        FrameDataset.from_tracked(load_tracked(folder), resolution=SIZE)
    first.write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="not a readable image"):
        FrameDataset.from_tracked(load_tracked(folder), resolution=SIZE)
    first.unlink()
    with pytest.raises(DatasetError, match="does not exist"):
        FrameDataset.from_tracked(load_tracked(folder), resolution=SIZE)


def test_one_frame_is_refused(subject) -> None:
    with pytest.raises(DatasetError, match="at least 2 frames"):
        FrameDataset.from_tensors(subject.images[:1], subject.cameras[:1],
                                  subject.sequence.__class__.from_frames([subject.sequence.frame(0)]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]), which=st.sampled_from(["images", "fg_masks"]))
def test_damaged_frames_load_or_fail_with_a_dataset_error(tracked_folder, tmp_path_factory, damage, data, mode,
                                                          which) -> None:
    folder = tmp_path_factory.mktemp("fuzz") / "subject"
    shutil.copytree(tracked_folder, folder)
    damage(folder / which / "00001_00.png", data, mode)
    try:
        dataset = FrameDataset.from_tracked(load_tracked(folder), resolution=SIZE)
    except DatasetError:
        return
    assert dataset.images.shape == (FRAMES, SIZE, SIZE, 3) and torch.isfinite(dataset.images).all()
