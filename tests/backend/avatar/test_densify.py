"""Per-triangle densification and pruning, and the optimizer following the new parameters."""

from __future__ import annotations

import math

import pytest
import torch

from backend.avatar import AvatarConfig, GaussianAvatar
from shared_proto.types import FlameParams

CONFIG = AvatarConfig(sh_degree=1, gaussians_per_triangle=2)


@pytest.fixture
def avatar(sphere_head) -> GaussianAvatar:
    return GaussianAvatar.from_surface(sphere_head, CONFIG, seed=0)


def every(n: int, step: int) -> torch.Tensor:
    return torch.arange(n) % step == 0


def test_clone_copies_selected_gaussians(avatar):
    n = avatar.n_gaussians
    before = avatar.gaussians_at(FlameParams.neutral())
    mask = every(n, 5)
    step = avatar.clone(mask)
    assert avatar.n_gaussians == n + int(mask.sum())
    assert torch.equal(step.source, torch.cat([torch.arange(n), torch.nonzero(mask)[:, 0]]))
    assert torch.equal(avatar.binding[n:], avatar.binding[:n][mask])
    after = avatar.gaussians_at(FlameParams.neutral())
    torch.testing.assert_close(after.means[0, n:], before.means[0, mask])
    torch.testing.assert_close(after.sh[n:], before.sh[mask])
    assert step.fresh.sum() == mask.sum() and not step.fresh[:n].any()


def test_split_replaces_parents_by_smaller_children_on_the_same_triangle(avatar):
    n = avatar.n_gaussians
    mask = every(n, 7)
    parents = torch.nonzero(mask)[:, 0].repeat(3)
    old = {name: value.detach().clone() for name, value in avatar.params.items()}
    old_binding = avatar.binding.clone()
    step = avatar.split(mask, children=3, generator=torch.Generator().manual_seed(0))
    kept, children = slice(0, n - int(mask.sum())), slice(n - int(mask.sum()), None)
    assert avatar.n_gaussians == n + 2 * int(mask.sum())
    assert torch.equal(step.source[children], parents) and torch.equal(step.source[kept], torch.nonzero(~mask)[:, 0])
    assert torch.equal(avatar.binding[children], old_binding[parents])
    torch.testing.assert_close(avatar.params["scales"][children], old["scales"][parents] - math.log(0.8 * 3))
    torch.testing.assert_close(avatar.params["sh0"][children], old["sh0"][parents])
    spread = (avatar.params["means"][children] - old["means"][parents]).norm(dim=-1)
    assert (spread > 0).all() and (spread < 6 * old["scales"][parents].exp().max(dim=1).values).all()
    assert step.fresh[children].all() and not step.fresh[kept].any()


def test_split_is_repeatable_with_a_generator(sphere_head):
    def split_means(seed):
        avatar = GaussianAvatar.from_surface(sphere_head, CONFIG, seed=0)
        avatar.split(every(avatar.n_gaussians, 3), generator=torch.Generator().manual_seed(seed))
        return avatar.params["means"].detach()

    assert torch.equal(split_means(1), split_means(1)) and not torch.equal(split_means(1), split_means(2))


def test_prune_keeps_every_triangle_bound(avatar):
    n_faces = avatar.head.faces.shape[0]
    with torch.no_grad():
        avatar.params["opacities"][1::2] += 1.0  # the second Gaussian of every triangle is the more opaque one
    step = avatar.prune(torch.ones(avatar.n_gaussians, dtype=torch.bool))
    assert avatar.n_gaussians == n_faces
    assert torch.equal(torch.sort(avatar.binding).values, torch.arange(n_faces))
    assert torch.equal(step.source, torch.arange(1, 2 * n_faces, 2))
    avatar.clone(torch.ones(n_faces, dtype=torch.bool))  # two per triangle again
    step = avatar.prune(torch.arange(2 * n_faces) < n_faces)  # each triangle keeps its clone
    assert torch.equal(step.source, torch.arange(n_faces, 2 * n_faces))


def test_densify_and_prune_by_gradient(avatar):
    n = avatar.n_gaussians
    grads = torch.zeros(n)
    grads[:10] = 1.0  # high gradient
    with torch.no_grad():
        avatar.params["scales"][:5] += 3.0  # large: split; the other 5 are small: clone
        avatar.params["opacities"][20:40:2] = -10.0  # transparent: pruned (one of the two on each triangle)
    step = avatar.densify_and_prune(grads, grad_threshold=0.5, size_threshold=0.01, min_opacity=0.005,
                                    generator=torch.Generator().manual_seed(0))
    assert avatar.n_gaussians == n + 5 + 5 - 10  # 5 clones, 5 parents -> 10 children, 10 pruned
    assert step.fresh.sum() == 15
    assert not torch.isin(step.source, torch.arange(20, 40, 2)).any()
    assert step.source.shape[0] == avatar.n_gaussians


def test_update_optimizer_carries_adam_state(avatar):
    optimizer = torch.optim.Adam(avatar.params.values(), lr=1e-3)
    avatar.gaussians_at(FlameParams.neutral()).means.square().sum().backward()
    optimizer.step()
    old_means = avatar.params["means"]
    old_state = optimizer.state[old_means]["exp_avg"].clone()
    mask = every(avatar.n_gaussians, 4)
    cloned = avatar.clone(mask)
    step = cloned.then(avatar.prune(every(avatar.n_gaussians, 3)))
    step.update_optimizer(optimizer)
    new_means = avatar.params["means"]
    assert any(p is new_means for p in optimizer.param_groups[0]["params"])
    assert old_means not in optimizer.state
    state = optimizer.state[new_means]["exp_avg"]
    assert state.shape == new_means.shape
    torch.testing.assert_close(state[~step.fresh], old_state[step.source[~step.fresh]])
    assert (state[step.fresh] == 0).all()
    optimizer.zero_grad()
    avatar.gaussians_at(FlameParams.neutral()).means.square().sum().backward()
    optimizer.step()  # the rebuilt optimizer trains the new parameters
    assert new_means.grad is not None


def test_masks_are_validated(avatar):
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        avatar.clone(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="grads must be a float tensor"):
        avatar.densify_and_prune(torch.zeros(2), grad_threshold=1, size_threshold=1, min_opacity=0.1)
    with pytest.raises(ValueError, match="children"):
        avatar.split(torch.zeros(avatar.n_gaussians, dtype=torch.bool), children=0)
