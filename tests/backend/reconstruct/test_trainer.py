"""`Trainer`: determinism for a seed, bit-identical resume through checkpoint files (across densification),
learning, parameter-group selection, FLAME refinement, evaluation and previews."""

from __future__ import annotations

import pytest
import torch

from backend.avatar import AvatarConfig
from backend.reconstruct import TrainConfig, Trainer, initial_avatar, load_checkpoint, save_checkpoint

GAUSSIANS = 1500
SCHEDULE = dict(iterations=6, densify_from=2, densify_until=4, densify_every=2, grad_threshold=1e-6)
"""Densifies at steps 2 and 4 (a tiny gradient threshold, so the avatar really grows)."""


def make_trainer(subject, dataset, appearance: str = "sh", **overrides) -> Trainer:
    config = AvatarConfig(appearance=appearance, sh_degree=1, feature_dim=6, num_gaussians=GAUSSIANS)
    avatar = initial_avatar(subject.head, dataset, config, seed=1)
    return Trainer(avatar, dataset, TrainConfig(**{**SCHEDULE, "seed": 5, **overrides}))


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = trainer.state_dict()
    flat = {f"avatar.{k}": v for k, v in state["avatar"].items()}
    for index, entries in state["optimizer"]["state"].items():
        flat.update({f"adam.{index}.{k}": v for k, v in entries.items()})
    flat["generator"] = state["generator"]
    return flat


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_gives_the_same_run(subject, dataset) -> None:
    first, second = make_trainer(subject, dataset), make_trainer(subject, dataset)
    losses_a = [first.step() for _ in range(4)]
    losses_b = [second.step() for _ in range(4)]
    assert losses_a == losses_b
    assert first.avatar.n_gaussians > GAUSSIANS  # densification ran
    assert_same(snapshot(first), snapshot(second))
    other = make_trainer(subject, dataset, seed=6)
    assert [other.step() for _ in range(4)] != losses_a


def test_resume_from_a_checkpoint_file_is_bit_identical(subject, dataset, tmp_path) -> None:
    straight = make_trainer(subject, dataset)
    expected = [straight.step() for _ in range(6)]
    interrupted = make_trainer(subject, dataset)
    head = [interrupted.step() for _ in range(3)]
    path = save_checkpoint(tmp_path, interrupted.state_dict(), {"note": "test"})
    state, extra = load_checkpoint(path)
    assert extra == {"note": "test"} and state["step"] == 3
    resumed = make_trainer(subject, dataset)  # a fresh process would build the initial avatar again
    resumed.load_state_dict(state)
    assert resumed.avatar.n_gaussians == interrupted.avatar.n_gaussians != GAUSSIANS
    tail = [resumed.step() for _ in range(3)]
    assert head + tail == expected
    assert_same(snapshot(resumed), snapshot(straight))


def test_training_improves_the_held_out_frames(subject, dataset) -> None:
    trainer = make_trainer(subject, dataset, iterations=15, densify_every=0)
    before = trainer.evaluate()
    for _ in range(15):
        terms = trainer.step()
    after = trainer.evaluate()
    assert set(terms) >= {"loss", "l1", "dssim", "mask", "position", "scale"}
    assert after["frames"] == 1 and after["psnr"] > before["psnr"] + 2.0 and after["ssim"] > before["ssim"]
    masked = trainer.evaluate(region="mask")
    assert masked["psnr"] < after["psnr"]  # the head is harder than the white background


def test_appearance_only_training_keeps_the_geometry(subject, dataset) -> None:
    trainer = make_trainer(subject, dataset, appearance="neural", train=("appearance", "renderer"))
    means = trainer.avatar.params["means"].detach().clone()
    features = trainer.avatar.params["features"].detach().clone()
    terms = [trainer.step() for _ in range(3)][-1]
    assert "stable" in terms and "position" not in terms
    assert torch.equal(trainer.avatar.params["means"], means)
    assert not torch.equal(trainer.avatar.params["features"], features)
    assert trainer.avatar.n_gaussians == GAUSSIANS  # no densification without the geometry group
    renderer_weight = trainer.avatar.renderer.net[-1].weight
    assert float(renderer_weight.detach().abs().sum()) > 0  # the CNN's zero-initialised output layer trained


def test_flame_refinement_corrects_only_training_frames(subject, dataset) -> None:
    trainer = make_trainer(subject, dataset, train=("geometry", "appearance", "flame"), densify_every=0,
                           lr_flame=1e-2)
    for _ in range(4):
        terms = trainer.step()
    assert "flame" in terms
    jaw = trainer.corrections["jaw"].detach()
    assert float(jaw[dataset.train_indices].abs().sum()) > 0
    assert float(jaw[dataset.holdout_indices].abs().sum()) == 0.0


def test_preview_and_bad_arguments(subject, dataset) -> None:
    trainer = make_trainer(subject, dataset)
    preview = trainer.preview(0)
    assert preview.shape == (dataset.height, 2 * dataset.width, 4) and preview.dtype.name == "uint8"
    with pytest.raises(ValueError, match="region"):
        trainer.evaluate(region="face")
    with pytest.raises(ValueError, match="train must be"):
        TrainConfig(train=("everything",))
    with pytest.raises(ValueError, match="lr_means"):
        TrainConfig(lr_means=-1.0)


def test_lpips_term_trains_when_a_network_is_given(subject, dataset) -> None:
    from backend.reconstruct import LPIPS

    torch.manual_seed(0)
    config = AvatarConfig(sh_degree=0, num_gaussians=300)
    trainer = Trainer(initial_avatar(subject.head, dataset, config), dataset,
                      TrainConfig(iterations=1, densify_every=0), lpips=LPIPS())
    terms = trainer.step()
    assert "lpips" in terms and terms["lpips"] >= 0.0
    assert "lpips" not in make_trainer(subject, dataset).step()
