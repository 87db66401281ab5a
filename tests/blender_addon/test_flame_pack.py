"""flame_pack (bpy-free): rotations, driver expressions and tables, parameters <-> rig values, and the rig's
control / deform bone maths simulated in numpy against the backend's FlameModel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backend.flame.model import FlameModel
from backend.flame.model_job import head_model_arrays
from shared_proto import FlameSequence

from tests.blender_addon.pure_addon import load

ADDON = Path(__file__).resolve().parents[2] / "blender_addon"


fp = load("flame_pack")
angles = arrays(np.float64, (3,), elements=st.floats(-1.8, 1.8))


def rodrigues(aa: np.ndarray) -> np.ndarray:
    """[3] axis-angle -> [3, 3] rotation (independent of flame_pack)."""
    angle = np.linalg.norm(aa)
    if angle < 1e-12:
        return np.eye(3)
    k = aa / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def test_flame_pack_does_not_import_bpy() -> None:
    script = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('fp', sys.argv[1]); "
              "module = sys.modules['fp'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
              "print('bpy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(ADDON / "flame_pack.py")], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@settings(max_examples=60, deadline=None)
@given(aa=angles, scale=st.floats(0.2, 5.0))
def test_quaternions_carry_the_axis_angle_rotation(aa, scale) -> None:
    q = fp.axis_angle_to_quaternion(aa)
    assert np.linalg.norm(q) == pytest.approx(1.0)
    np.testing.assert_allclose(fp.rotation_minus_identity(q * scale), rodrigues(aa) - np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rodrigues(fp.quaternion_to_axis_angle(-q * scale)), rodrigues(aa), atol=1e-12)
    if np.linalg.norm(aa) < np.pi:
        np.testing.assert_allclose(fp.quaternion_to_axis_angle(q * scale), aa, atol=1e-12)


def test_rotation_edge_cases_and_bad_input() -> None:
    np.testing.assert_array_equal(fp.axis_angle_to_quaternion(np.zeros(3)), [1, 0, 0, 0])
    np.testing.assert_allclose(fp.quaternion_to_axis_angle([1, 0, 0, 0]), np.zeros(3))
    tiny = np.array([1e-10, -2e-10, 3e-10])
    np.testing.assert_allclose(fp.quaternion_to_axis_angle(fp.axis_angle_to_quaternion(tiny)), tiny, rtol=1e-9)
    with pytest.raises(ValueError, match="zero quaternion"):
        fp.quaternion_to_axis_angle(np.zeros(4))
    with pytest.raises(ValueError, match="last axis of 3"):
        fp.axis_angle_to_quaternion(np.zeros(4))


def test_continuous_quaternions_take_the_short_way() -> None:
    rng = np.random.default_rng(0)
    q = fp.axis_angle_to_quaternion(np.cumsum(rng.normal(size=(50, 3)) * 0.4, axis=0))
    q *= np.where(rng.random(50) < 0.5, -1.0, 1.0)[:, None]
    fixed = fp.continuous_quaternions(q)
    assert np.all(np.sum(fixed[1:] * fixed[:-1], axis=1) >= 0)
    np.testing.assert_allclose(np.abs(fixed), np.abs(q))


def _evaluate_terms(expression: str, pattern: str, variables: dict[str, float]) -> float:
    """Sum of the signed products an expression is made of (the only grammar flame_pack writes)."""
    total = 0.0
    for sign, number, *names in re.findall(pattern, expression):
        term = float(number) * (-1.0 if sign == "-" else 1.0)
        for name in names:
            term *= variables[name]
        total += term
    return total


@pytest.mark.parametrize("row", range(3))
@pytest.mark.parametrize("column", range(3))
def test_corrective_expressions_are_r_minus_identity(row, column) -> None:
    expression = fp.corrective_expression(row, column)
    numerator, denominator = re.fullmatch(r"\((.*)\)/\((.*)\)", expression).groups()
    assert denominator == "w*w+x*x+y*y+z*z" and len(expression) < 256
    rng = np.random.default_rng(row * 3 + column)
    for _ in range(5):
        aa = rng.uniform(-1.5, 1.5, size=3)
        q = fp.axis_angle_to_quaternion(aa) * rng.uniform(0.5, 2.0)  # keyframe interpolation: not unit
        values = dict(zip("wxyz", q))
        value = _evaluate_terms(numerator, r"([+-]?)(\d+(?:\.\d+)?)\*([wxyz])\*([wxyz])", values) / np.dot(q, q)
        assert value == pytest.approx((rodrigues(aa) - np.eye(3))[row, column], abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(coefficients=arrays(np.float64, st.integers(0, 420), elements=st.one_of(
    st.just(0.0), st.floats(-1e3, 1e3, allow_subnormal=False), st.floats(-1e-9, 1e-9, allow_subnormal=False))))
def test_partial_sums_are_short_and_exact(coefficients) -> None:
    parts = fp.partial_sums(coefficients)
    rebuilt = np.zeros_like(coefficients)
    for expression, used in parts:
        assert 0 < len(expression) <= fp.EXPRESSION_LIMIT and used
        pattern = r"([+-]?)(\d+(?:\.\d+)?(?:e[+-]\d+)?)\*a(\d+)"
        terms = re.findall(pattern, expression)
        assert "".join(f"{s or '+'}{n}*a{i}" for s, n, i in terms).lstrip("+") == expression.lstrip("+")
        for sign, number, variable in terms:
            rebuilt[used[int(variable)]] += float(number) * (-1.0 if sign == "-" else 1.0)
    np.testing.assert_allclose(rebuilt, coefficients, rtol=1e-14, atol=0)
    assert sum(len(used) for _, used in parts) == np.count_nonzero(coefficients)


def test_partial_sums_reject_non_finite() -> None:
    with pytest.raises(ValueError, match="finite vector"):
        fp.partial_sums([1.0, np.nan])


@pytest.fixture(scope="module")
def builtin() -> tuple[FlameModel, object]:
    model = FlameModel.builtin(dtype=torch.float64)
    return model, fp.rig_data({"head": "builtin", **head_model_arrays(model, 1024, 1024)})


def test_joint_offsets_are_linear_in_every_coefficient(builtin) -> None:
    model, data = builtin
    rng = np.random.default_rng(1)
    shape, expression, lids = rng.normal(size=data.n_shape), rng.normal(size=data.n_expression), rng.random(2)
    coefficients = np.concatenate([shape, expression, lids])
    with torch.no_grad():
        joints = model(shape=torch.tensor(shape)[None], expression=torch.tensor(expression)[None],
                       eyelids=torch.tensor(lids)[None]).joints[0].numpy()  # [5, 3], unposed
    np.testing.assert_allclose(data.joint_offset_table() @ coefficients, joints - data.rest_joints, atol=1e-8)


def blender_armature_vertices(data, values) -> np.ndarray:
    """[V, 3] what Blender's Armature modifier makes of one frame of rig values: bone chain control -> deform
    with identity rest orientations, locations as rig_build's drivers set them, shape keys for v_posed."""
    table = data.joint_offset_table()  # [5, 3, K]
    parts = [values.shape[0], values.expression[0]] + ([values.eyelids[0]] if data.eyelids is not None else [])
    coefficients = np.concatenate(parts)
    offsets = table @ coefficients  # [5, 3] ΔJ
    rotations = [np.eye(3) + fp.rotation_minus_identity(q) for q in values.quaternions[0]]
    correctives = np.concatenate([fp.rotation_minus_identity(q).ravel() for q in values.quaternions[0, 1:]])
    v_posed = data.template + data.coefficient_dirs() @ coefficients + np.einsum("p,pvc->vc", correctives,
                                                                                    data.posedirs)
    heads = data.rest_joints

    def translate(t: np.ndarray) -> np.ndarray:
        m = np.eye(4)
        m[:3, 3] = t
        return m

    def rotate(r: np.ndarray) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = r
        return m

    deform = []
    for j in range(5):
        parent = data.parents[j]
        location = offsets[j] + (values.translation[0] if j == 0 else 0.0)
        base = translate(heads[j]) if parent < 0 else deform[parent] @ translate(heads[j] - heads[parent])
        control = base @ translate(location) @ rotate(rotations[j])
        deform.append(control @ translate(-offsets[j]))
    skinning = np.stack([deform[j] @ translate(-heads[j]) for j in range(5)])  # [5, 4, 4]
    blended = np.einsum("vj,jab->vab", data.lbs_weights, skinning)  # [V, 4, 4]
    return np.einsum("vab,vb->va", blended, np.concatenate([v_posed, np.ones((len(v_posed), 1))], axis=1))[:, :3]


def test_control_and_deform_bones_reproduce_flame_skinning(builtin) -> None:
    model, data = builtin
    rng = np.random.default_rng(2)
    frames = 4
    sequence = FlameSequence(shape=rng.normal(size=data.n_shape),
                             expression=rng.normal(size=(frames, data.n_expression)),
                             rotation=rng.uniform(-0.5, 0.5, (frames, 3)), neck=rng.uniform(-0.5, 0.5, (frames, 3)),
                             jaw=rng.uniform(-0.5, 0.5, (frames, 3)), eyes=rng.uniform(-0.5, 0.5, (frames, 6)),
                             translation=rng.normal(size=(frames, 3)) * 0.1, eyelids=rng.random((frames, 2)))
    values = fp.sequence_to_rig_values(sequence, data.n_shape, data.n_expression, True)
    with torch.no_grad():
        reference = model.forward_params(sequence).vertices.numpy()  # [T, V, 3]
    for t in range(frames):
        row = fp.RigValues(shape=values.shape[t:t + 1], expression=values.expression[t:t + 1],
                           eyelids=values.eyelids[t:t + 1], translation=values.translation[t:t + 1],
                           quaternions=values.quaternions[t:t + 1])
        np.testing.assert_allclose(blender_armature_vertices(data, row), reference[t], atol=1e-6)


def test_sequences_round_trip_through_rig_values() -> None:
    rng = np.random.default_rng(3)
    frames = 6
    sequence = FlameSequence(shape=rng.normal(size=5), expression=rng.normal(size=(frames, 4)),
                             rotation=rng.uniform(-1, 1, (frames, 3)), neck=rng.uniform(-1, 1, (frames, 3)),
                             jaw=rng.uniform(-1, 1, (frames, 3)), eyes=rng.uniform(-1, 1, (frames, 6)),
                             translation=rng.normal(size=(frames, 3)), eyelids=rng.random((frames, 2)), fps=30)
    values = fp.sequence_to_rig_values(sequence, 8, 4, True)
    assert values.shape.shape == (frames, 8) and np.all(values.shape[:, 5:] == 0)
    channels = values.channels()
    assert len(channels) == 8 + 4 + 2 + 3 + 5 * 4
    assert channels[0][:2] == ("keyface.shape[0].value", 0) and channels[-1][:2] == (
        'pose.bones["eye_R"].rotation_quaternion', 3)
    fields = fp.rig_values_to_fields(values)
    back = FlameSequence(**fields)
    for name in ("expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids"):
        np.testing.assert_allclose(getattr(back, name), getattr(sequence, name), atol=1e-6)
    np.testing.assert_allclose(back.shape[:5], sequence.shape, atol=1e-7)


def test_sequences_the_rig_cannot_hold_are_refused() -> None:
    frames = 2
    zeros = np.zeros((frames, 3))
    base = dict(rotation=zeros, neck=zeros, jaw=zeros, eyes=np.zeros((frames, 6)), translation=zeros)
    wide = FlameSequence(shape=np.r_[np.zeros(3), 0.5], expression=np.zeros((frames, 2)), **base)
    with pytest.raises(ValueError, match="shape component 3 .* only 3"):
        fp.sequence_to_rig_values(wide, 3, 2, False)
    fp.sequence_to_rig_values(FlameSequence(shape=np.zeros(4), expression=np.zeros((frames, 2)), **base), 3, 2, False)
    strong = FlameSequence(shape=np.zeros(3), expression=np.full((frames, 2), 12.0), **base)
    with pytest.raises(ValueError, match="slider limit"):
        fp.sequence_to_rig_values(strong, 3, 2, False)
    lids = FlameSequence(shape=np.zeros(3), expression=np.zeros((frames, 2)), eyelids=np.ones((frames, 2)), **base)
    with pytest.raises(ValueError, match="no eyelid"):
        fp.sequence_to_rig_values(lids, 3, 2, False)
    assert fp.sequence_to_rig_values(lids, 3, 2, False, drop_eyelids=True).eyelids is None
    values = fp.sequence_to_rig_values(lids, 3, 2, True)
    changing = fp.RigValues(shape=np.array([[0.0], [1.0]]), expression=values.expression, eyelids=None,
                            translation=values.translation, quaternions=values.quaternions)
    with pytest.raises(ValueError, match="changes at row 1"):
        fp.rig_values_to_fields(changing)


def test_rig_data_validates_the_head_model_result(builtin) -> None:
    _, data = builtin
    good = {"head": "x", "template": data.template, "faces": data.faces, "shapedirs": data.shapedirs,
            "exprdirs": data.exprdirs, "posedirs": data.posedirs, "J_regressor": data.J_regressor,
            "lbs_weights": data.lbs_weights, "parents": data.parents, "shape_names": data.shape_names,
            "expression_names": data.expression_names}
    parsed = fp.rig_data(good)
    assert parsed.eyelids is None and parsed.coefficient_dirs().shape[2] == data.n_shape + data.n_expression
    bad_cases = [("template", data.template[:, :2], "template"), ("parents", np.array([-1, 0, 1, 3, 1]), "parents"),
                 ("faces", data.faces + len(data.template), "faces"),
                 ("lbs_weights", data.lbs_weights * 0.5, "sum to 1"),
                 ("posedirs", data.posedirs[:35], "posedirs"), ("shape_names", ("a",), "names")]
    for key, value, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            fp.rig_data({**good, key: value})
    with pytest.raises(ValueError, match="no 'J_regressor'"):
        fp.rig_data({k: v for k, v in good.items() if k != "J_regressor"})
    with pytest.raises(TypeError):
        fp.rig_data([1, 2])


def test_presets_pick_components_by_name() -> None:
    names = ["smile", "blink_left", "blink_right", "other"]
    values, jaw, eyelids = fp.preset_values("blink", names)
    assert values == {1: 2.5, 2: 2.5} and jaw == 0.0 and eyelids == (1.0, 1.0)
    values, jaw, eyelids = fp.preset_values("smile", [f"expression_{i}" for i in range(10)])
    assert values == {} and jaw > 0 and eyelids is None
    with pytest.raises(KeyError, match="unknown expression preset"):
        fp.preset_values("grin", names)


def test_random_values_stay_in_range() -> None:
    random = fp.random_values(np.random.default_rng(4), 7, 9, shape_scale=2.0, pose_scale=0.3)
    assert random["shape"].shape == (7,) and random["expression"].shape == (9,) and random["eyes"].shape == (6,)
    assert np.abs(random["shape"]).max() <= 6.0 and 0.0 <= random["jaw"][0] <= 0.45
