"""`fit_frames`: the held-out frames' expression and pose fitted with the avatar frozen (test-time fit before
evaluation): it recovers a perturbed pose, leaves every trained tensor and the trainer's state bit-identical,
and `Trainer.evaluate(flame=...)` renders with the parameters it is given."""

from __future__ import annotations

import pytest
import torch

from backend.avatar import AvatarConfig
from backend.reconstruct import FrameFitConfig, TrainConfig, Trainer, fit_frames, initial_avatar


def trained(subject, dataset, appearance: str = "sh", steps: int = 25) -> Trainer:
    config = AvatarConfig(appearance=appearance, sh_degree=1, feature_dim=6, num_gaussians=1500)
    avatar = initial_avatar(subject.head, dataset, config, seed=1)
    trainer = Trainer(avatar, dataset, TrainConfig(iterations=steps, seed=2, densify_every=0,
                                                   train=("geometry", "appearance", "renderer", "flame")))
    for _ in range(steps):
        trainer.step()
    return trainer


def state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every tensor of the trainer's state, flattened (avatar, FLAME corrections, Adam moments, generator)."""
    saved = trainer.state_dict()
    flat = {f"avatar.{k}": v for k, v in saved["avatar"].items()}
    flat.update({f"corrections.{k}": v for k, v in saved["corrections"].items()})
    for index, entries in saved["optimizer"]["state"].items():
        flat.update({f"adam.{index}.{k}": v for k, v in entries.items() if isinstance(v, torch.Tensor)})
    flat["generator"] = saved["generator"]
    return flat


@pytest.mark.parametrize("appearance", ["sh", "neural"])
def test_fit_touches_nothing_the_avatar_learned(subject, dataset, appearance) -> None:
    trainer = trained(subject, dataset, appearance, steps=3)
    before = state(trainer)
    flags = {name: p.requires_grad for name, p in trainer.avatar.named_parameters()}
    flame = fit_frames(trainer, dataset.holdout_indices, FrameFitConfig(steps=3, learning_rate=1e-2))
    after = state(trainer)
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert {name: p.requires_grad for name, p in trainer.avatar.named_parameters()} == flags
    assert trainer.avatar.training and trainer.step_count == 3
    assert all(not value.requires_grad for value in flame.values())
    assert flame.keys() == trainer.flame_at(dataset.holdout_indices).keys()  # the identity is the avatar's own
    trainer.step()  # training goes on as before


def test_fit_recovers_a_perturbed_pose(subject, dataset) -> None:
    trainer = trained(subject, dataset)
    holdout = dataset.holdout_indices
    truth = trainer.flame_at(holdout)
    with torch.no_grad():
        trainer.avatar.eval()
        dataset.replace(holdout[0], trainer.render(holdout).rgb[0].clamp(0, 1))  # the avatar's own frame
        trainer.avatar.train()
        trainer.tracked["rotation"][holdout] += torch.tensor([0.0, 0.08, 0.0])  # a tracker's pose error
        trainer.tracked["jaw"][holdout] += torch.tensor([0.06, 0.0, 0.0])
    tracked = trainer.flame_at(holdout)
    fitted = fit_frames(trainer, holdout, FrameFitConfig(steps=60, learning_rate=5e-3))
    error_before = (tracked["rotation"] - truth["rotation"]).norm()
    error_after = (fitted["rotation"] - truth["rotation"]).norm()
    assert error_after < 0.6 * error_before
    assert trainer.evaluate(flame=fitted)["psnr"] > trainer.evaluate()["psnr"] + 3.0


def test_no_steps_and_explicit_parameters_equal_the_tracked_evaluation(subject, dataset) -> None:
    trainer = trained(subject, dataset, steps=2)
    holdout = dataset.holdout_indices
    flame = fit_frames(trainer, holdout, FrameFitConfig(steps=0))
    tracked = trainer.flame_at(holdout)
    assert flame.keys() == tracked.keys() and all(torch.equal(flame[k], tracked[k]) for k in flame)
    assert trainer.evaluate(flame=flame) == trainer.evaluate()
    frames = [0, 2]  # any frames, rows in the order given
    assert trainer.evaluate(frames, flame=trainer.flame_at(frames)) == trainer.evaluate(frames)
    swapped = trainer.flame_at([2, 0])
    assert trainer.evaluate(frames, flame=swapped) != trainer.evaluate(frames)


def test_bad_arguments(subject, dataset) -> None:
    trainer = trained(subject, dataset, steps=1)
    with pytest.raises(ValueError, match="steps"):
        FrameFitConfig(steps=-1)
    with pytest.raises(ValueError, match="learning_rate"):
        FrameFitConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="indices"):
        fit_frames(trainer, [len(dataset)])
    with pytest.raises(ValueError, match="indices"):
        fit_frames(trainer, [])
    with pytest.raises(ValueError, match="one row per frame"):
        trainer.evaluate([0, 1], flame=trainer.flame_at([0]))
