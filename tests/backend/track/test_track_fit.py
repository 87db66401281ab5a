"""The landmark fit (`fit_landmarks`) and the cut head it poses (`landmark_head`), without MediaPipe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.flame import FlameModel, read_flame
from backend.flame.motion import talking_head
from backend.track.fit_landmarks import (CAMERA_ROTATION, FitConfig, LandmarkTargets, fit_landmarks,
                                         matched_landmarks)
from backend.track.landmark_head import eyeball_pupils, landmark_head
from backend.track.landmarks import LEFT_IRIS, N_POINTS, RIGHT_IRIS


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.builtin()


def test_cut_head_is_exact(head):
    rows, _ = matched_landmarks(head)
    pupils = eyeball_pupils(head)
    cut = landmark_head(head, rows, np.array([pupils[3], pupils[4]]))
    rng = np.random.default_rng(0)
    args = {"shape": torch.tensor(rng.normal(0, 1, (1, head.n_shape)), dtype=torch.float32),
            "expression": torch.tensor(rng.normal(0, 1, (3, head.n_expression)), dtype=torch.float32),
            "rotation": torch.tensor(rng.normal(0, 0.3, (3, 3)), dtype=torch.float32),
            "neck": torch.tensor(rng.normal(0, 0.2, (3, 3)), dtype=torch.float32),
            "jaw": torch.tensor([[0.2, 0.0, 0.0]] * 3), "eyes": torch.tensor(rng.normal(0, 0.2, (3, 6)),
                                                                             dtype=torch.float32),
            "translation": torch.tensor(rng.normal(0, 0.05, (3, 3)), dtype=torch.float32)}
    full, small = head(**args), cut.model(**args)
    assert cut.model.n_vertices < head.n_vertices / 10
    torch.testing.assert_close(small.landmarks, full.landmarks[:, rows], atol=1e-6, rtol=0)
    torch.testing.assert_close(small.vertices[:, cut.extra], full.vertices[:, [pupils[3], pupils[4]]], atol=1e-6,
                               rtol=0)
    assert head.v_template[pupils[3], 0] > 0 > head.v_template[pupils[4], 0]  # joint 3 is the subject's left


def _targets(head: FlameModel, frames: int, focal: float, seed: int) -> tuple[LandmarkTargets, np.ndarray]:
    """Face-mesh points placed exactly on the true head's matched landmarks and pupils (256 crops)."""
    rng = np.random.default_rng(seed)
    truth = talking_head(frames, 25.0, shape=rng.normal(0, 0.5, head.n_shape), n_expression=head.n_expression,
                         seed=seed, eyelids=False)
    rows, mediapipe = matched_landmarks(head)
    pupils = eyeball_pupils(head)
    with torch.no_grad():
        out = head.forward_params(truth)
    world = torch.cat([out.landmarks[:, rows], out.vertices[:, [pupils[4], pupils[3]]]], dim=1).double().numpy()
    camera = world @ CAMERA_ROTATION.T + [0.0, 0.0, 1.0]  # [T, N, 3]
    pixels = focal * 256 * camera[..., :2] / camera[..., 2:] + 128.0  # [T, N, 2]
    points = np.tile(pixels[:, :1], (1, N_POINTS, 1))  # unmatched points: anywhere (closed-eye lids)
    points[:, mediapipe] = pixels[:, :len(rows)]
    points[:, [RIGHT_IRIS, LEFT_IRIS]] = pixels[:, len(rows):]
    targets = LandmarkTargets(points=points, focal_scale=np.full(frames, 256.0), principal=np.full((frames, 2), 128.0),
                              resolution=256, neighbours=np.ones(frames - 1))
    return targets, pixels[:, :len(rows)]


def test_fit_recovers_exact_landmarks(head):
    targets, truth = _targets(head, frames=6, focal=1.8, seed=3)
    steps = []
    fit = fit_landmarks(head, targets, FitConfig(rigid_iterations=60, iterations=300),
                        progress=lambda step, total: steps.append((step, total)))
    assert steps[-1] == (360, 360)
    assert fit.expression.shape == (6, head.n_expression) and fit.shape.shape == (head.n_shape,)
    assert fit.errors.shape == (6,) and fit.errors.mean() < 0.6  # pixels at 256, from ~15 px at the start
    np.testing.assert_allclose(fit.projected, truth, atol=3.0)
    assert 1.2 < fit.focal < 2.4


def test_fit_config_and_head_checks(head):
    with pytest.raises(ValueError, match="iterations must be an integer"):
        FitConfig(iterations=-1)
    with pytest.raises(ValueError, match="huber_px must be > 0"):
        FitConfig(huber_px=0.0)
    targets, _ = _targets(head, frames=2, focal=1.8, seed=1)
    bare = FlameModel(dataclasses.replace(read_flame(head.source), mediapipe_indices=np.full(68, -1)))
    with pytest.raises(ValueError, match="mediapipe_embedding"):
        fit_landmarks(bare, targets, FitConfig(iterations=1, rigid_iterations=1))
