"""`FlameModel`: parity with smplx.FLAME on an official-layout file, and the Keyface API around it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch

from backend.flame import FlameModel, FlameOutput, model as model_module
from shared_proto.types import FlameParams, FlameSequence


def _random_params(batch: int, seed: int = 0, n_shape: int = 300, n_expression: int = 100) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "shape": torch.randn(batch, n_shape, generator=g),
        "expression": torch.randn(batch, n_expression, generator=g),
        "rotation": torch.randn(batch, 3, generator=g) * 0.6,
        "neck": torch.randn(batch, 3, generator=g) * 0.3,
        "jaw": torch.randn(batch, 3, generator=g) * 0.3,
        "eyes": torch.randn(batch, 6, generator=g) * 0.3,
        "translation": torch.randn(batch, 3, generator=g) * 0.2,
    }


def test_matches_smplx_flame(official_pkl: Path, flame_arrays: dict, tmp_path: Path) -> None:
    """Same file (smplx reads a chumpy-free copy), same parameters: vertices, joints and landmarks agree."""
    rng = np.random.default_rng(3)
    embedding = {"lmk_face_idx": rng.integers(0, 9976, 51).astype(np.uint32),
                 "lmk_b_coords": rng.dirichlet(np.ones(3), 51)}
    (tmp_path / "flame_static_embedding.pkl").write_bytes(pickle.dumps(embedding, protocol=2))
    (tmp_path / "FLAME_NEUTRAL.pkl").write_bytes(pickle.dumps(flame_arrays, protocol=2))
    batch = 4
    reference = smplx.FLAME(model_path=str(tmp_path), num_betas=300, num_expression_coeffs=100,
                            use_face_contour=False, batch_size=batch)
    model = FlameModel.from_file(official_pkl, landmarks=tmp_path / "flame_static_embedding.pkl")
    params = _random_params(batch)
    with torch.no_grad():
        expected = reference(betas=params["shape"], expression=params["expression"],
                             global_orient=params["rotation"], neck_pose=params["neck"], jaw_pose=params["jaw"],
                             leye_pose=params["eyes"][:, :3], reye_pose=params["eyes"][:, 3:],
                             transl=params["translation"])
        got = model(**params)
    assert got.vertices.shape == (batch, 5023, 3) and got.vertices.dtype == torch.float32
    assert got.vertices.abs().max() > 0.1  # posed heads, not zeros
    torch.testing.assert_close(got.vertices, expected.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.joints, expected.joints[:, :5], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.landmarks, expected.joints[:, 5:], atol=1e-5, rtol=0)
    assert model.faces.shape == (9976, 3) and model.faces.dtype == torch.long
    assert (model.n_shape, model.n_expression, model.n_landmarks) == (300, 100, 51)


@pytest.fixture
def small_model(small_arrays: dict, write_pkl: Callable[..., Path]) -> FlameModel:
    return FlameModel.from_file(write_pkl(small_arrays))


def test_names_and_counts(small_model: FlameModel) -> None:
    assert small_model.n_vertices == 60 and (small_model.n_shape, small_model.n_expression) == (300, 20)
    assert small_model.shape_names[0] == "shape_000" and small_model.expression_names[19] == "expression_019"
    assert not small_model.has_eyelids and small_model.n_landmarks == 0


def test_rest_pose_is_the_template(small_model: FlameModel, small_arrays: dict) -> None:
    out = small_model()
    assert isinstance(out, FlameOutput)
    template = torch.tensor(small_arrays["v_template"], dtype=torch.float32)
    torch.testing.assert_close(out.vertices[0], template)
    torch.testing.assert_close(out.joints[0], torch.tensor(small_arrays["J"], dtype=torch.float32))
    assert out.landmarks.shape == (1, 0, 3)
    torch.testing.assert_close(out.transforms, torch.eye(4).expand(1, 5, 4, 4))


def test_fewer_columns_mean_zeros(small_model: FlameModel) -> None:
    params = _random_params(2, n_shape=300, n_expression=20)
    params["shape"][:, 10:] = 0
    params["expression"][:, 5:] = 0
    full = small_model(**params)
    short = small_model(**{**params, "shape": params["shape"][:, :10], "expression": params["expression"][:, :5]})
    torch.testing.assert_close(short.vertices, full.vertices)


def test_too_many_columns(small_model: FlameModel) -> None:
    with pytest.raises(ValueError, match=r"shape has 301 columns .* 300 shape"):
        small_model(shape=torch.zeros(1, 301))
    with pytest.raises(ValueError, match=r"expression has 21 columns .* 20 expression"):
        small_model(expression=torch.zeros(1, 21))


def test_bad_arguments(small_model: FlameModel) -> None:
    with pytest.raises(ValueError, match=r"jaw must have shape \[B, 3\], got \[2, 4\]"):
        small_model(jaw=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"eyes must have shape \[B, 6\], got \[6\]"):
        small_model(eyes=torch.zeros(6))
    with pytest.raises(TypeError, match="rotation must be a torch.Tensor"):
        small_model(rotation=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="batch sizes must agree.*'neck': 2, 'jaw': 3"):
        small_model(jaw=torch.zeros(3, 3), neck=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no eyelid blendshapes"):
        small_model(eyelids=torch.zeros(1, 2))
    with pytest.raises(TypeError, match="FlameParams or FlameSequence"):
        small_model.forward_params({"shape": np.zeros(3)})


def test_single_rows_are_shared_across_the_batch(small_model: FlameModel) -> None:
    params = _random_params(3, n_expression=20)
    shared = {**params, "shape": params["shape"][:1], "translation": params["translation"][1:2]}
    expanded = {**shared, "shape": shared["shape"].expand(3, -1), "translation": shared["translation"].expand(3, -1)}
    torch.testing.assert_close(small_model(**shared).vertices, small_model(**expanded).vertices)


def test_transforms_carry_rest_joints_to_posed_joints(small_model: FlameModel) -> None:
    params = _random_params(2, n_expression=20)
    out = small_model(**params)
    rest = small_model(shape=params["shape"], expression=params["expression"]).joints  # [B, 5, 3]
    moved = out.transforms[..., :3, :3] @ rest.unsqueeze(-1) + out.transforms[..., :3, 3:]
    torch.testing.assert_close(moved[..., 0], out.joints, atol=1e-6, rtol=0)


def test_eyelids_are_rest_pose_offsets_that_follow_the_head(small_arrays: dict, write_pkl: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    # Joints regress from vertices 0..9 only; the lids move the others (as real lids leave the joints alone).
    regressor = np.zeros((5, 60))
    regressor[:, :10] = 0.1
    lid = np.zeros((60, 1))
    lid[10:] = 1.0
    np.save(tmp_path / "l_eyelid.npy", lid * [0.0, 0.0, 0.01])
    np.save(tmp_path / "r_eyelid.npy", lid * [0.0, 0.02, 0.0])
    arrays = {**small_arrays, "J_regressor": scipy.sparse.csc_matrix(regressor)}
    model = FlameModel.from_file(write_pkl(arrays), eyelids=tmp_path)
    assert model.has_eyelids
    lids = torch.tensor([[1.0, 0.5]])
    expected = torch.tensor(lid * [0.0, 0.01, 0.01], dtype=torch.float32)  # [V, 3]
    torch.testing.assert_close(model(eyelids=lids).vertices[0] - model().vertices[0], expected)
    # A global rotation alone poses rigidly (no correctives for the root), so the offsets turn with the head.
    quarter = torch.tensor([[0.0, 0.0, np.pi / 2]])
    turned = model(eyelids=lids, rotation=quarter).vertices[0] - model(rotation=quarter).vertices[0]
    torch.testing.assert_close(turned, expected[:, [1, 0, 2]] * torch.tensor([-1.0, 1.0, 1.0]), atol=1e-6, rtol=0)


def test_forward_params_matches_the_direct_call(small_model: FlameModel) -> None:
    params = {name: value.numpy() for name, value in _random_params(3, n_shape=40, n_expression=20).items()}
    sequence = FlameSequence(**{**params, "shape": params["shape"][0]}, fps=30.0)
    direct = small_model(**{name: torch.tensor(value) for name, value in params.items()}
                         | {"shape": torch.tensor(params["shape"][:1])})
    torch.testing.assert_close(small_model.forward_params(sequence).vertices, direct.vertices)
    frame = FlameParams(**{name: value[1] for name, value in params.items()} | {"shape": params["shape"][0]})
    torch.testing.assert_close(small_model.forward_params(frame).vertices, direct.vertices[1:2])
    neutral = small_model.forward_params(FlameParams.neutral())
    torch.testing.assert_close(neutral.vertices, small_model().vertices)


def test_gradients_reach_the_parameters(small_model: FlameModel) -> None:
    expression = torch.zeros(2, 20, requires_grad=True)
    jaw = torch.zeros(2, 3, requires_grad=True)
    small_model(expression=expression, jaw=jaw).vertices.square().sum().backward()
    assert expression.grad is not None and expression.grad.abs().sum() > 0
    assert jaw.grad is not None and torch.isfinite(jaw.grad).all()


def test_dtype_and_device(small_model: FlameModel, small_arrays: dict, write_pkl: Callable[..., Path]) -> None:
    double = FlameModel.from_file(write_pkl(small_arrays), dtype=torch.float64)
    params = _random_params(2, n_expression=20)
    out64 = double(**params)  # float32 inputs are converted to the model's dtype
    assert out64.vertices.dtype == torch.float64
    torch.testing.assert_close(small_model(**params).vertices, out64.vertices.float(), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="floating-point"):
        FlameModel.from_file(write_pkl(small_arrays), dtype=torch.int32)
    devices = [torch.device("cuda")] if torch.cuda.is_available() else []
    if torch.backends.mps.is_available():
        devices.append(torch.device("mps"))
    for device in devices:
        moved = FlameModel.from_file(write_pkl(small_arrays)).to(device)
        out = moved(**params)  # CPU inputs follow the model
        assert out.vertices.device.type == device.type and moved.faces.device.type == device.type
        torch.testing.assert_close(out.vertices.cpu(), small_model(**params).vertices, atol=1e-5, rtol=0)


def test_builtin_head_missing_names_the_generator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "assets" / "keyface_head.npz"
    monkeypatch.setattr(model_module, "BUILTIN_HEAD_PATH", missing)
    with pytest.raises(FileNotFoundError) as caught:
        FlameModel.builtin()
    assert str(missing) in str(caught.value) and "python -m backend.flame.make_builtin_head" in str(caught.value)


def test_builtin_head_loads() -> None:
    if not model_module.BUILTIN_HEAD_PATH.is_file():
        pytest.skip(f"{model_module.BUILTIN_HEAD_PATH} not generated yet (python -m backend.flame.make_builtin_head)")
    head = FlameModel.builtin()
    out = head(expression=torch.ones(1, min(3, head.n_expression)), jaw=torch.tensor([[0.2, 0.0, 0.0]]))
    assert out.vertices.shape == (1, head.n_vertices, 3) and torch.isfinite(out.vertices).all()
    assert len(head.shape_names) == head.n_shape and len(head.expression_names) == head.n_expression
    assert out.landmarks.shape == (1, head.n_landmarks, 3)


def test_builtin_head_reads_its_npz_layout(monkeypatch: pytest.MonkeyPatch, small_arrays: dict,
                                           write_npz: Callable[..., Path]) -> None:
    """The colleague's asset layout: the model keys plus n_shape, names and extra keys this loader ignores."""
    path = write_npz({**small_arrays, "shapedirs": small_arrays["shapedirs"][:, :, :30], "n_shape": np.array(20),
                      "uv_coords": np.zeros((70, 2)), "texture": np.zeros((4, 4, 3), np.uint8)})
    monkeypatch.setattr(model_module, "BUILTIN_HEAD_PATH", path)
    head = FlameModel.builtin()
    assert (head.n_shape, head.n_expression, head.source) == (20, 10, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="built-in head asset is broken.*make_builtin_head"):
        FlameModel.builtin()
