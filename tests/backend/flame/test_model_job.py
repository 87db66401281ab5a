"""Job `head_model` (backend/flame/model_job.py): spec checks and arrays that reproduce FlameModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.flame.model import FlameModel
from backend.flame.model_job import MAX_COMPONENTS, head_model_arrays, parse_spec


def test_spec_defaults_and_refusals() -> None:
    assert parse_spec({}) == ("builtin", MAX_COMPONENTS, MAX_COMPONENTS)
    assert parse_spec({"head": "/x/model.pkl", "shape": 0, "expression": 7}) == ("/x/model.pkl", 0, 7)
    for spec, message in (({"shape": -1}, "spec.shape"), ({"expression": 2.5}, "spec.expression"),
                          ({"shape": True}, "spec.shape"), ({"head": ""}, "spec.head"), ({"heads": 1}, "heads")):
        with pytest.raises(ValueError, match=message):
            parse_spec(spec)


def test_arrays_are_the_model_and_clamp_the_component_counts() -> None:
    model = FlameModel.builtin()
    body = head_model_arrays(model, 5, 1024)
    V = model.n_vertices
    assert body["n_shape"] == 5 and body["n_expression"] == model.n_expression == body["model_expression"]
    assert body["shape_names"] == list(model.shape_names[:5]) and len(body["expression_names"]) == model.n_expression
    expected = {"template": (V, 3), "shapedirs": (V, 3, 5), "exprdirs": (V, 3, model.n_expression),
                "eyelids": (2, V, 3), "posedirs": (36, V, 3), "J_regressor": (5, V), "lbs_weights": (V, 5),
                "parents": (5,), "faces": (model.faces.shape[0], 3)}
    for key, shape in expected.items():
        assert body[key].shape == shape and body[key].flags.c_contiguous, key
        assert body[key].dtype == (np.int32 if key in ("parents", "faces") else np.float32), key
    assert body["parents"].tolist() == [-1, 0, 1, 1, 1]
    np.testing.assert_array_equal(body["exprdirs"][:, :, 3], model.shapedirs[:, :, model.n_shape + 3].numpy())


def test_posedirs_layout_matches_the_models_correctives() -> None:
    model = FlameModel.builtin(dtype=torch.float64)
    body = head_model_arrays(model, 0, 0)
    jaw = torch.tensor([[0.3, -0.1, 0.05]], dtype=torch.float64)
    with torch.no_grad():
        out = model(jaw=jaw)
    posed, transforms = out.vertices[0].numpy(), out.transforms[0].numpy()  # [V, 3], [5, 4, 4]
    rotation = transforms[2, :3, :3]  # root and neck unrotated: the jaw's global rotation is its own
    feature = np.zeros(36)
    feature[9:18] = (rotation - np.eye(3)).ravel()  # joint 2 (jaw) is block 1 of joints 1..4
    correctives = np.einsum("p,pvc->vc", feature, body["posedirs"].astype(np.float64))
    weights = body["lbs_weights"].astype(np.float64)
    blended = np.einsum("vj,jab->vab", weights, transforms)
    rest = model.v_template.numpy() + correctives
    rebuilt = np.einsum("vab,vb->va", blended, np.concatenate([rest, np.ones((len(rest), 1))], axis=1))[:, :3]
    np.testing.assert_allclose(rebuilt, posed, atol=1e-6)
