"""Avatar -> 3DGS PLY at any frame, and PLY sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from plyfile import PlyData

from backend.avatar import AvatarConfig, GaussianAvatar, export_ply, export_ply_sequence, read_ply
from backend.avatar.sh import rgb_to_sh
from shared_proto.types import FlameParams, FlameSequence


def sequence(frames: int) -> FlameSequence:
    rng = np.random.default_rng(1)
    return FlameSequence(shape=np.zeros(4), expression=rng.normal(size=(frames, 6)),
                         rotation=rng.normal(size=(frames, 3)) * 0.3, neck=np.zeros((frames, 3)),
                         jaw=np.abs(rng.normal(size=(frames, 3))) * 0.2, eyes=np.zeros((frames, 6)),
                         translation=rng.normal(size=(frames, 3)) * 0.05, fps=24.0, frame_start=101)


@pytest.fixture(scope="module")
def avatar(sphere_head) -> GaussianAvatar:
    avatar = GaussianAvatar.from_surface(sphere_head, AvatarConfig(sh_degree=2, num_gaussians=300), seed=3)
    with torch.no_grad():
        avatar.params["shN"].normal_(0.0, 0.1)
        avatar.params["quats"].normal_()
        avatar.params["opacities"].normal_(0.0, 3.0)
    return avatar


def test_exported_frame_matches_the_posed_gaussians(tmp_path, avatar):
    frames = sequence(3)
    path = export_ply(avatar, frames, tmp_path / "frame.ply", frame=2)
    splats = read_ply(path)
    posed = avatar.gaussians_at(frames.frame(2))
    assert torch.equal(splats.means, posed.means[0].detach())  # same computation, bit for bit
    assert torch.equal(splats.quats, posed.quats[0].detach())
    torch.testing.assert_close(splats.scales, posed.scales[0].detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(splats.opacities, posed.opacities[0].detach(), rtol=1e-6, atol=0)
    assert torch.equal(splats.opacity_logits, avatar.params["opacities"].detach())
    assert torch.equal(splats.sh, posed.sh.detach()) and splats.sh_degree == 2
    assert splats.binding is None


def test_binding_is_exported_on_request(tmp_path, avatar):
    splats = read_ply(export_ply(avatar, FlameParams.neutral(), tmp_path / "bound.ply", binding=True))
    assert torch.equal(splats.binding, avatar.binding)
    with pytest.raises(ValueError, match="frame must be 0"):
        export_ply(avatar, FlameParams.neutral(), tmp_path / "x.ply", frame=1)
    with pytest.raises(IndexError):
        export_ply(avatar, sequence(2), tmp_path / "x.ply", frame=5)


def test_neural_avatars_export_their_rgb_channels_as_dc(tmp_path, sphere_head):
    avatar = GaussianAvatar.from_surface(sphere_head, AvatarConfig(appearance="neural", feature_dim=5,
                                                                   num_gaussians=50))
    splats = read_ply(export_ply(avatar, FlameParams.neutral(), tmp_path / "neural.ply"))
    assert splats.sh_degree == 0
    torch.testing.assert_close(splats.sh[:, 0], rgb_to_sh(avatar.params["features"][:, :3].detach()))


def test_sequence_folder(tmp_path, avatar):
    frames = sequence(5)
    folder = export_ply_sequence(avatar, frames, tmp_path / "take", chunk=2, binding=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:06d}.ply" for i in range(5)] + ["sequence.json"]
    meta = json.loads((folder / "sequence.json").read_text())
    assert meta["fps"] == 24.0 and meta["frame_start"] == 101 and meta["count"] == 5
    for index in (0, 3, 4):
        single = read_ply(export_ply(avatar, frames, tmp_path / "single.ply", frame=index, binding=True))
        batched = read_ply(folder / f"frame_{index:06d}.ply")  # posed in chunks: float32 rounding may differ
        torch.testing.assert_close(batched.means, single.means, atol=1e-6, rtol=0)
        assert torch.equal(batched.sh, single.sh) and torch.equal(batched.binding, single.binding)
    first = PlyData.read(str(folder / "frame_000000.ply"))
    assert first["vertex"].properties[-1].name == "binding_0"
    export_ply_sequence(avatar, sequence(2), folder)  # replaces the whole folder
    assert len(list(folder.glob("*.ply"))) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
