"""Pure helpers of the render / export jobs: sizes, camera scaling, straight alpha, cache keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar.render_job import cache_key, output_size, resized, straight_rgba
from backend.avatar.sources import parse_avatar
from shared_proto import Camera


def camera(size: int = 100) -> Camera:
    return Camera(K=[[200, 0, size / 2], [0, 200, size / 2], [0, 0, 1]], world_to_camera=np.eye(4), width=size,
                  height=size)


def test_output_size_halves_for_draft_and_rejects_bad_values() -> None:
    assert output_size(camera(), None, None, "final") == (100, 100)
    assert output_size(camera(), 64, 31, "draft") == (32, 15)
    with pytest.raises(ValueError, match="spec.width"):
        output_size(camera(), 0, None, "final")
    with pytest.raises(ValueError, match="spec.quality"):
        output_size(camera(), None, None, "best")


def test_resized_scales_intrinsics_per_axis() -> None:
    scaled = resized(camera(), 50, 200)
    assert (scaled.width, scaled.height) == (50, 200)
    np.testing.assert_allclose(scaled.K, [[100, 0, 25], [0, 400, 100], [0, 0, 1]])


def test_straight_rgba_unpremultiplies_and_composites() -> None:
    colour = torch.tensor([[[0.25, 0.0, 0.5], [0.0, 0.0, 0.0]]])  # [1, 2, 3] premultiplied
    alpha = torch.tensor([[[0.5], [0.0]]])  # [1, 2, 1]
    straight = straight_rgba(colour, alpha, None)
    assert straight[0, 0].tolist() == [128, 0, 255, 128] and straight[0, 1].tolist() == [0, 0, 0, 0]
    over = straight_rgba(colour, alpha, np.array([0.0, 1.0, 0.0]))
    assert over[0, 0].tolist() == [64, 128, 128, 255] and over[0, 1].tolist() == [0, 255, 0, 255]


def test_cache_key_changes_with_every_input() -> None:
    base = dict(identity="default:x", sequence=None, row=0, camera=camera(), width=100, height=100, quality="final",
                background=None)
    key = cache_key(**base)
    assert key == cache_key(**base)
    for change in ({"identity": "package:y"}, {"camera": resized(camera(), 50, 50)}, {"width": 99},
                   {"quality": "draft"}, {"background": np.zeros(3)}):
        assert cache_key(**{**base, **change}) != key


def test_gaussians_only_for_the_default_avatar() -> None:
    assert parse_avatar("default", 5000) == ("default", 5000)
    with pytest.raises(ValueError, match="spec.gaussians"):
        parse_avatar("/x/avatar.ply", 5000)
    with pytest.raises(ValueError, match="spec.gaussians"):
        parse_avatar("default", 0)
