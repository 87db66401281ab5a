"""Job `head_model`: a head's model data for the Blender rig, so the add-on never reads model files itself.

Spec:
    head: 'builtin' (default) or the path of a FLAME file on the backend's machine.
    shape: N, how many identity components to send (default: all; more than the model has sends all).
    expression: M, how many expression components to send (default: all; clamped the same way).

Result (arrays travel as float32 / int32 buffers):
    head, source (the model file), n_vertices, n_faces, n_shape (= N sent), n_expression (= M sent),
    model_shape, model_expression (the model's own counts), shape_names [N], expression_names [M],
    joint_names [5], has_eyelids,
    template [V, 3], faces [F, 3], shapedirs [V, 3, N], exprdirs [V, 3, M], eyelids [2, V, 3] (only with
    eyelid blendshapes), posedirs [36, V, 3] (entry p multiplies element p of the flattened
    (R_j - I), j = 1..4), J_regressor [5, V], lbs_weights [V, 5], parents [5] (-1 for the root).

FlameModel.forward with the same head is the reference these arrays reproduce (see model.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..job_spec import check_keys, int_field
from .heads import BUILTIN, head_path, load_head
from .io import JOINT_NAMES
from .model import FlameModel

MAX_COMPONENTS = 1024
"""Most components one request may ask for (shared_proto's limit for a parameter vector)."""


def parse_spec(spec: dict[str, Any]) -> tuple[str, int, int]:
    """Validated (head, N, M); N and M are MAX_COMPONENTS when not given. Raises ValueError naming the field."""
    check_keys(spec, {"head", "shape", "expression"}, "head_model")
    head = spec.get("head", BUILTIN)
    if not isinstance(head, str) or not head:
        raise ValueError(f"spec.head must be 'builtin' or a FLAME file path, got {head!r}")
    return (head, int_field(spec, "shape", MAX_COMPONENTS, 0, MAX_COMPONENTS),
            int_field(spec, "expression", MAX_COMPONENTS, 0, MAX_COMPONENTS))


def validate(spec: dict[str, Any]) -> None:
    parse_spec(spec)


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    head, n_shape, n_expression = parse_spec(spec)
    ctx.progress("load", 0, 1, f"head {head}")
    model = load_head(head, "cpu")
    result = head_model_arrays(model, n_shape, n_expression)
    ctx.progress("load", 1, 1, f"{result['n_vertices']} vertices, {result['n_shape']} shape and "
                 f"{result['n_expression']} expression components")
    return {"head": head, "source": str(head_path(head)), **result}


def head_model_arrays(model: FlameModel, n_shape: int, n_expression: int) -> dict[str, Any]:
    """The result body's model part for the first `n_shape` / `n_expression` components (clamped)."""
    n_shape, n_expression = min(n_shape, model.n_shape), min(n_expression, model.n_expression)

    def floats(tensor: Any) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

    n_vertices = model.n_vertices
    shapedirs = floats(model.shapedirs)  # [V, 3, S + E]
    body: dict[str, Any] = {
        "n_vertices": n_vertices, "n_faces": int(model.faces.shape[0]),
        "n_shape": n_shape, "n_expression": n_expression,
        "model_shape": model.n_shape, "model_expression": model.n_expression,
        "shape_names": list(model.shape_names[:n_shape]),
        "expression_names": list(model.expression_names[:n_expression]),
        "joint_names": list(JOINT_NAMES), "has_eyelids": model.has_eyelids,
        "template": floats(model.v_template),  # [V, 3]
        "faces": model.faces.cpu().numpy().astype(np.int32),  # [F, 3]
        "shapedirs": np.ascontiguousarray(shapedirs[:, :, :n_shape]),  # [V, 3, N]
        "exprdirs": np.ascontiguousarray(shapedirs[:, :, model.n_shape:model.n_shape + n_expression]),  # [V, 3, M]
        "posedirs": floats(model.posedirs).reshape(-1, n_vertices, 3),  # [36, V * 3] -> [36, V, 3]
        "J_regressor": floats(model.J_regressor),  # [5, V]
        "lbs_weights": floats(model.lbs_weights),  # [V, 5]
        "parents": model.parents.cpu().numpy().astype(np.int32),  # [5]
    }
    if model.has_eyelids:
        body["eyelids"] = floats(model.eyelid_blendshapes)  # [2, V, 3]
    return body
