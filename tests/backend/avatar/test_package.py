"""The animatable avatar package: bit-exact reloads, versions, head checks, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from backend.avatar import (
    PACKAGE_VERSION,
    AvatarConfig,
    AvatarPackageError,
    GaussianAvatar,
    HeadMismatchError,
    NeuralRendererConfig,
    PackageVersionError,
    default_avatar,
    head_fingerprint,
    load_package,
    read_package_metadata,
    save_package,
)
from backend.flame import FlameModel
from shared_proto.types import FlameSequence

CONFIGS = {
    "sh_offsets": AvatarConfig(sh_degree=3, num_gaussians=200, use_expression_offsets=True, mlp_width=16,
                               mlp_expression_dims=6),
    "neural": AvatarConfig(appearance="neural", feature_dim=7, gaussians_per_triangle=1,
                           renderer=NeuralRendererConfig(channels=8, layers=2)),
}


def frames() -> FlameSequence:
    rng = np.random.default_rng(0)
    return FlameSequence(shape=np.zeros(4), expression=rng.normal(size=(3, 6)), rotation=rng.normal(size=(3, 3)) * 0.2,
                         neck=np.zeros((3, 3)), jaw=np.abs(rng.normal(size=(3, 3))) * 0.2, eyes=np.zeros((3, 6)),
                         translation=np.zeros((3, 3)))


def trained(head: FlameModel, config: AvatarConfig) -> GaussianAvatar:
    """An avatar whose every tensor holds arbitrary values (as after training), shape included."""
    avatar = GaussianAvatar.from_surface(head, config, seed=0, shape=torch.tensor([0.3, -1.2, 0.7, 1e-8]))
    with torch.no_grad():
        for parameter in avatar.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return avatar


def assert_same_avatar(loaded: GaussianAvatar, original: GaussianAvatar) -> None:
    expected, actual = original.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert expected[name].dtype == actual[name].dtype and torch.equal(expected[name], actual[name]), name
    assert loaded.config == original.config
    a, b = original.gaussians_at(frames()), loaded.gaussians_at(frames())
    for name in ("means", "quats", "scales", "opacities", "sh", "features"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_bit_exact(tmp_path, sphere_head, name):
    avatar = trained(sphere_head, CONFIGS[name])
    path = save_package(avatar, tmp_path / "avatar.safetensors")
    loaded = load_package(path, head=sphere_head)
    assert_same_avatar(loaded, avatar)
    if avatar.renderer is not None:
        features = torch.randn(1, 8, 8, 7)
        assert torch.equal(avatar.renderer(features), loaded.renderer(features))


def test_densified_avatar_round_trips(tmp_path, sphere_head):
    avatar = trained(sphere_head, CONFIGS["sh_offsets"])
    avatar.split(torch.arange(avatar.n_gaussians) % 3 == 0, generator=torch.Generator().manual_seed(0))
    assert_same_avatar(load_package(save_package(avatar, tmp_path / "a.safetensors"), head=sphere_head), avatar)


def test_package_is_safetensors_with_json_metadata(tmp_path, sphere_head, sphere_npz):
    avatar = trained(sphere_head, CONFIGS["sh_offsets"])
    path = save_package(avatar, tmp_path / "avatar.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        names = set(handle.keys())
    assert "binding" in names and "params.means" in names and "offsets.output.weight" in names
    assert not any(name.startswith("head.") for name in names)  # the FLAME model is never stored
    meta = read_package_metadata(path)
    assert meta["version"] == PACKAGE_VERSION and meta["format"] == "keyface-avatar"
    assert meta["head"] == {"source": sphere_npz.name, "hash": head_fingerprint(sphere_head)}
    assert meta["shape"] == avatar.shape.tolist() and meta["n_gaussians"] == 200
    assert AvatarConfig.from_dict(meta["config"]) == avatar.config


def test_head_fingerprint_ignores_dtype_but_not_geometry(tmp_path, sphere_npz):
    float32, float64 = FlameModel.from_file(sphere_npz), FlameModel.from_file(sphere_npz, dtype=torch.float64)
    assert head_fingerprint(float32) == head_fingerprint(float64)
    with np.load(sphere_npz) as npz:
        arrays = dict(npz)
    arrays["v_template"] = arrays["v_template"] * 1.01
    np.savez(tmp_path / "other.npz", **arrays)
    assert head_fingerprint(FlameModel.from_file(tmp_path / "other.npz")) != head_fingerprint(float32)


def test_wrong_or_missing_head_is_refused(tmp_path, sphere_head, sphere_npz):
    path = save_package(trained(sphere_head, CONFIGS["neural"]), tmp_path / "avatar.safetensors")
    with pytest.raises(HeadMismatchError, match="made with the FLAME file 'sphere_head.npz'; pass head="):
        load_package(path)
    with np.load(sphere_npz) as npz:
        arrays = dict(npz)
    arrays["shapedirs"] = arrays["shapedirs"] * 2
    np.savez(tmp_path / "sphere_head.npz", **arrays)  # same name, other content
    with pytest.raises(HeadMismatchError, match="is a different model"):
        load_package(path, head=FlameModel.from_file(tmp_path / "sphere_head.npz"))


def rewrite(path, **changes) -> None:
    """Rewrite a package with metadata fields changed (None deletes)."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        meta = json.loads(handle.metadata()["keyface"])
    meta.update(changes)
    save_file(tensors, str(path), metadata={"keyface": json.dumps({k: v for k, v in meta.items() if v is not None})})


def test_newer_versions_and_bad_metadata_are_refused(tmp_path, sphere_head):
    path = save_package(trained(sphere_head, CONFIGS["neural"]), tmp_path / "avatar.safetensors")
    rewrite(path, version=PACKAGE_VERSION + 1)
    with pytest.raises(PackageVersionError, match=f"version {PACKAGE_VERSION + 1} is newer"):
        load_package(path, head=sphere_head)
    rewrite(path, version=PACKAGE_VERSION, config={**CONFIGS["neural"].to_dict(), "feature_dim": 9})
    with pytest.raises(AvatarPackageError, match="'features' must be a float tensor"):
        load_package(path, head=sphere_head)
    rewrite(path, config=CONFIGS["neural"].to_dict(), format="something-else")
    with pytest.raises(AvatarPackageError, match="format is 'something-else'"):
        load_package(path, head=sphere_head)


def test_unreadable_files_are_refused(tmp_path, sphere_head):
    with pytest.raises(AvatarPackageError, match="file not found"):
        load_package(tmp_path / "missing.safetensors", head=sphere_head)
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(AvatarPackageError, match="not a readable safetensors file"):
        load_package(tmp_path / "junk.safetensors", head=sphere_head)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(AvatarPackageError, match="not a Keyface avatar package"):
        load_package(tmp_path / "plain.safetensors", head=sphere_head)
    path = save_package(trained(sphere_head, CONFIGS["sh_offsets"]), tmp_path / "avatar.safetensors")
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(AvatarPackageError):
        load_package(path, head=sphere_head)


def test_builtin_avatar_reloads_without_a_head(tmp_path, builtin_head):
    avatar = default_avatar(builtin_head, AvatarConfig(sh_degree=0, num_gaussians=2000))
    path = save_package(avatar, tmp_path / "default.safetensors")
    assert read_package_metadata(path)["head"]["source"] == "builtin"
    assert_same_avatar(load_package(path), avatar)


def test_builtin_source_reloads_without_a_head(tmp_path, sphere_npz, monkeypatch):
    """The built-in head flow, with the sphere standing in for the built-in asset."""
    import backend.avatar.package
    import backend.flame.model

    monkeypatch.setattr(backend.flame.model, "BUILTIN_HEAD_PATH", sphere_npz)
    monkeypatch.setattr(backend.avatar.package, "BUILTIN_HEAD_PATH", sphere_npz)
    avatar = default_avatar(config=AvatarConfig(sh_degree=1, num_gaussians=300))
    path = save_package(avatar, tmp_path / "default.safetensors")
    assert read_package_metadata(path)["head"]["source"] == "builtin"
    assert_same_avatar(load_package(path), avatar)
