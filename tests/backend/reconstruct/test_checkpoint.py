"""Checkpoint files: nested state round trips with its types, newest-two retention, a file of another kind is
refused, and damaged files fail as CheckpointError (fuzzed)."""

from __future__ import annotations

import shutil

import pytest
import torch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.avatar import AvatarConfig
from backend.reconstruct import (CheckpointError, TrainConfig, Trainer, initial_avatar, list_checkpoints,
                                 load_checkpoint, save_checkpoint)
from backend.reconstruct.checkpoint import FORMAT, load_state, save_state


def trainer(subject, dataset) -> Trainer:
    avatar = initial_avatar(subject.head, dataset, AvatarConfig(sh_degree=0, num_gaussians=300))
    return Trainer(avatar, dataset, TrainConfig(iterations=3, densify_every=0))


def test_nested_state_round_trips_with_its_types(tmp_path) -> None:
    state = {"a": torch.arange(3), "b": {1: torch.ones(2), 2: [0.5, "x", None, True]}, "c": (1, 2),
             "d": torch.Generator().manual_seed(3).get_state()}
    back = load_state(save_state(state, tmp_path / "c.safetensors", "test-state"), "test-state")
    assert list(back["b"]) == [1, 2] and back["c"] == (1, 2) and back["b"][2] == [0.5, "x", None, True]
    torch.testing.assert_close(back["a"], state["a"])
    torch.testing.assert_close(back["d"], state["d"])
    with pytest.raises(TypeError):
        save_state({"x": object()}, tmp_path / "bad.safetensors", "test-state")
    with pytest.raises(CheckpointError, match="not a keyface-checkpoint file"):
        load_checkpoint(tmp_path / "c.safetensors")
    save_state({"state": {"step": 1}, "extra": {}}, tmp_path / "partial.safetensors", FORMAT)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "partial.safetensors")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]))
def test_damaged_state_files_fail_cleanly(tmp_path, damage, data, mode) -> None:
    path = save_state({"w": torch.arange(40, dtype=torch.float32), "n": {3: ("x", [1.5])}}, tmp_path / "c.safetensors",
                      "test-state")
    damage(path, data, mode)
    try:
        load_state(path, "test-state")
    except CheckpointError:
        pass


def test_only_the_newest_checkpoints_are_kept(subject, dataset, tmp_path) -> None:
    t = trainer(subject, dataset)
    for _ in range(3):
        t.step()
        save_checkpoint(tmp_path, t.state_dict(), {})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002.safetensors", "step_000003.safetensors"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]))
def test_damaged_checkpoints_fail_cleanly(subject, dataset, tmp_path_factory, damage, data, mode) -> None:
    folder = tmp_path_factory.mktemp("ckpt")
    t = trainer(subject, dataset)
    t.step()
    path = save_checkpoint(folder, t.state_dict(), {"key": "k"})
    damaged = folder / "damaged.safetensors"
    shutil.copy(path, damaged)
    damage(damaged, data, mode)
    try:
        state, extra = load_checkpoint(damaged)
    except CheckpointError:
        return
    fresh = trainer(subject, dataset)
    try:
        fresh.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError):
        return  # flipped bytes inside the tensors' header names or shapes: refused by the trainer
    assert fresh.step_count == state["step"]
