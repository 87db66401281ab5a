"""Job `head_model` through a real backend: the built-in head's arrays arrive intact; bad specs and missing
model files fail with stable codes."""

from __future__ import annotations

import numpy as np
import pytest

from backend.flame.model import FlameModel
from shared_client import Client, JobFailed, RequestFailed
from shared_proto import ErrorCode


def test_builtin_head_arrives_intact(shared_backend) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        assert "head_model" in client.hello().capabilities
        result = client.submit("head_model", {"head": "builtin", "shape": 10, "expression": 4}).wait(timeout=120)
    model = FlameModel.builtin()
    assert result["head"] == "builtin" and result["has_eyelids"] is True
    assert (result["n_shape"], result["n_expression"], result["model_shape"]) == (10, 4, model.n_shape)
    assert result["shape_names"] == list(model.shape_names[:10]) and result["joint_names"][2] == "jaw"
    np.testing.assert_array_equal(result["template"], model.v_template.numpy())
    np.testing.assert_array_equal(result["shapedirs"], model.shapedirs[:, :, :10].numpy())
    np.testing.assert_array_equal(result["eyelids"], model.eyelid_blendshapes.numpy())
    np.testing.assert_array_equal(result["faces"], model.faces.numpy())
    assert result["posedirs"].shape == (36, model.n_vertices, 3) and result["parents"].tolist() == [-1, 0, 1, 1, 1]


def test_bad_specs_and_missing_models_fail_clearly(shared_backend, tmp_path) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        with pytest.raises(RequestFailed) as info:
            client.submit("head_model", {"shape": -3})
        assert info.value.code is ErrorCode.BAD_SPEC and "spec.shape" in info.value.message
        with pytest.raises(JobFailed) as info:
            client.submit("head_model", {"head": str(tmp_path / "generic_model.pkl")}).wait(timeout=120)
        assert info.value.code is ErrorCode.MODEL_MISSING and "generic_model.pkl" in info.value.message
        (tmp_path / "broken.npz").write_bytes(b"not a model")
        with pytest.raises(JobFailed) as info:
            client.submit("head_model", {"head": str(tmp_path / "broken.npz")}).wait(timeout=120)
        assert info.value.code is ErrorCode.BAD_SPEC
