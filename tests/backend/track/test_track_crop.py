"""Face crops (`backend.track.crop`): the box <-> crop mapping, resampling, frame edges, smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from backend.track.crop import CropBox, crop_image, crop_matrix, face_box, smooth_boxes


def _dot_image(height: int, width: int, x: int, y: int, radius: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[y - radius:y + radius, x - radius:x + radius] = 255  # a square centred on the corner (x, y)
    return image


def _centroid(crop: np.ndarray) -> np.ndarray:
    weight = crop[..., 0].astype(np.float64)
    rows, cols = np.mgrid[:crop.shape[0], :crop.shape[1]]
    return np.array([(weight * (cols + 0.5)).sum(), (weight * (rows + 0.5)).sum()]) / weight.sum()


@pytest.mark.parametrize("size, resolution", [(200.0, 64), (40.0, 64), (1500.0, 128)])
def test_a_point_lands_where_the_box_mapping_says(size, resolution):
    """Upscaling, downscaling and a 4K-sized frame: the bright square's centroid follows to_crop."""
    height, width = (2160, 3840) if size > 1000 else (300, 400)
    x, y = width // 2 + 17, height // 2 - 9
    image = _dot_image(height, width, x, y, radius=max(4, int(size / 40)))
    box = CropBox(x - 0.43 * size, y - 0.61 * size, size)
    crop, valid = crop_image(image, box, resolution)
    assert crop.shape == (resolution, resolution, 3) and valid.all()
    np.testing.assert_allclose(_centroid(crop), box.to_crop(np.array([x, y]), resolution), atol=0.05 * resolution / 16)


def test_matrix_to_crop_and_to_source_agree():
    box = CropBox(-12.5, 30.0, 80.0)
    points = np.array([[0.0, 0.0], [100.0, 55.5], [-3.0, 200.0]])
    K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    camera_points = np.array([[0.1, -0.2, 1.5], [0.0, 0.05, 0.8]])
    source_pixels = (camera_points @ K.T)[:, :2] / camera_points[:, 2:]
    crop_pixels = (camera_points @ (crop_matrix(box, 256) @ K).T)
    np.testing.assert_allclose(crop_pixels[:, :2] / crop_pixels[:, 2:], box.to_crop(source_pixels, 256))
    np.testing.assert_allclose(box.to_source(box.to_crop(points, 256), 256), points)


def test_outside_the_frame_is_black_and_invalid():
    image = np.full((80, 60, 3), 200, np.uint8)
    crop, valid = crop_image(image, CropBox(-30.0, 10.0, 60.0), 30)  # left half hangs outside
    assert not valid[:, :15].any() and valid[:, 15:].all()
    assert (crop[~valid] == 0).all() and (crop[valid] == 200).all()
    crop, valid = crop_image(image, CropBox(500.0, 500.0, 10.0), 8)  # entirely outside
    assert not valid.any() and not crop.any()


def test_face_box_and_smoothing():
    points = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    box = face_box(points, 2.0)
    assert box.size == 80.0 and (box.x0, box.y0) == (-20.0, 0.0)
    jittery = [CropBox(100.0 + (-1) ** i * 5, 50.0, 100.0 + (-1) ** i * 10) for i in range(20)]
    smooth = smooth_boxes(jittery, 2.0)
    assert len(smooth) == 20
    assert np.ptp([b.x0 + b.size / 2 for b in smooth[5:15]]) < 1.0
    assert smooth_boxes(jittery, 0.0) == jittery
    with pytest.raises(ValueError, match="size > 0"):
        CropBox(0.0, 0.0, 0.0)
