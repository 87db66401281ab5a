"""The built-in head asset: deterministic generation, FLAME layout, rig behaviour, bases, landmarks, mesh."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from smplx.lbs import lbs

from backend.flame.make_builtin_head import DEFAULT_OUTPUT, write_head

EYE_CENTER = np.array([0.0315, 0.0215, 0.0235])
PART = {"skin": 0, "mouth": 1, "ear_left": 2, "ear_right": 3, "eye_left": 4, "eye_right": 5}


@pytest.fixture(scope="module")
def head() -> dict[str, np.ndarray]:
    with np.load(DEFAULT_OUTPUT, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("head") / "keyface_head.npz"
    write_head(path)
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _n(head):
    n_shape = int(head["n_shape"])
    return n_shape, head["shapedirs"].shape[-1] - n_shape


def _pose(head, betas=None, rotation=(0, 0, 0), neck=(0, 0, 0), jaw=(0, 0, 0), eyes=(0,) * 6, correctives=True):
    """Pose the head with smplx's own LBS, FLAME's storage conventions.  # [V, 3]"""
    d = lambda key: torch.tensor(head[key], dtype=torch.float64)  # noqa: E731
    n_all = head["shapedirs"].shape[-1]
    beta = torch.zeros(1, n_all, dtype=torch.float64) if betas is None else torch.tensor(betas)[None].double()
    pose = torch.tensor([list(rotation) + list(neck) + list(jaw) + list(eyes)], dtype=torch.float64)
    posedirs = d("posedirs").reshape(-1, 36).T * (1.0 if correctives else 0.0)
    parents = torch.tensor(head["kintree_table"][0].astype(np.int64))
    parents[0] = -1
    vertices, _ = lbs(beta, pose, d("v_template")[None], d("shapedirs"), posedirs, d("J_regressor"), parents,
                      d("weights"), pose2rot=True)
    return vertices[0].numpy()


def _landmarks(head, vertices):
    tri = vertices[head["f"][head["lmk_face_idx"]]]
    return np.einsum("lk,lkc->lc", head["lmk_b_coords"], tri)


# generation ---------------------------------------------------------------------------------------------------


def test_generator_is_deterministic(head, regenerated):
    assert sorted(head) == sorted(regenerated)
    for key, shipped in head.items():
        fresh = regenerated[key]
        assert fresh.shape == shipped.shape and fresh.dtype == shipped.dtype, key
        if key == "texture":
            assert np.abs(fresh.astype(int) - shipped.astype(int)).max() <= 1
        elif shipped.dtype.kind == "f":
            np.testing.assert_allclose(fresh, shipped, rtol=0, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(fresh, shipped, err_msg=key)


def test_file_is_small_and_pickle_free():
    assert DEFAULT_OUTPUT.stat().st_size < 5 * 1024 * 1024
    with np.load(DEFAULT_OUTPUT, allow_pickle=False) as data:
        for key in data.files:
            assert data[key].dtype != object, key


# layout -------------------------------------------------------------------------------------------------------


def test_flame_layout(head):
    v = head["v_template"]
    n_v, n_f = v.shape[0], head["f"].shape[0]
    n_shape, n_expr = _n(head)
    assert 4000 <= n_v <= 8000 and v.shape == (n_v, 3)
    assert head["f"].shape == (n_f, 3) and head["f"].min() == 0 and head["f"].max() == n_v - 1
    assert head["shapedirs"].shape == (n_v, 3, n_shape + n_expr)
    assert head["posedirs"].shape == (n_v, 3, 36)
    assert head["J_regressor"].shape == (5, n_v)
    assert head["weights"].shape == (n_v, 5)
    np.testing.assert_array_equal(head["kintree_table"], [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]])
    assert head["l_eyelid"].shape == head["r_eyelid"].shape == (n_v, 3)
    assert head["lmk_face_idx"].shape == (68,) and head["lmk_b_coords"].shape == (68, 3)
    assert head["mediapipe_indices"].shape == (68,)
    assert head["ft"].shape == (n_f, 3) and head["ft"].max() < head["vt"].shape[0]
    assert head["texture"].dtype == np.uint8 and head["texture"].shape[2] == 3
    assert str(head["version"]) and str(head["generator"]) == "backend.flame.make_builtin_head"
    # roughly FLAME's frame: metres, +Y up, face towards +Z, origin near the neck
    assert 0.18 < np.ptp(v[head["part_ids"] == PART["skin"], 1]) < 0.36
    assert v[:, 1].max() > 0.1 and v[:, 2].max() > 0.06 and abs(v[:, 0].mean()) < 1e-3


def test_component_names(head):
    n_shape, n_expr = _n(head)
    shape, expr = list(head["shape_names"]), list(head["expression_names"])
    assert len(shape) == n_shape >= 50 and len(expr) == n_expr >= 30
    assert len(set(shape + expr)) == len(shape) + len(expr)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in shape + expr)


def test_loads_with_the_flame_reader():
    from backend.flame import read_flame

    data = read_flame(DEFAULT_OUTPUT)
    assert data.n_shape == 60 and data.eyelids.shape[0] == 2 and data.mediapipe_indices.min() >= 0


# rig ----------------------------------------------------------------------------------------------------------


def test_weights_and_regressor_are_convex(head):
    for key in ("weights", "J_regressor"):
        rows = head[key]
        assert rows.min() >= 0.0
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-6)


def test_joints_sit_where_flame_puts_them(head):
    joints = head["J_regressor"].astype(np.float64) @ head["v_template"]
    root, neck, jaw, left, right = joints
    np.testing.assert_allclose(left, EYE_CENTER, atol=1e-4)
    np.testing.assert_allclose(right, EYE_CENTER * [-1, 1, 1], atol=1e-4)
    assert np.abs(joints[:3, 0]).max() < 1e-4
    assert root[1] < neck[1] < jaw[1] < left[1]


def test_eyeballs_are_rigid_under_eye_rotation(head):
    rest = _pose(head)
    posed = _pose(head, eyes=(0.2, 0.4, 0.0, -0.1, -0.3, 0.05))
    for part in ("eye_left", "eye_right"):
        ball = head["part_ids"] == PART[part]
        a, b = rest[ball], posed[ball]
        np.testing.assert_allclose(np.linalg.norm(b[:, None] - b[None], axis=-1),
                                   np.linalg.norm(a[:, None] - a[None], axis=-1), atol=1e-7)
        assert np.abs(b - a).max() > 1e-3
    others = (head["part_ids"] != PART["eye_left"]) & (head["part_ids"] != PART["eye_right"])
    np.testing.assert_allclose(posed[others], rest[others], atol=1e-9)


def test_jaw_opens_the_mouth_and_keeps_the_skull_still(head):
    rest, open_ = _pose(head), _pose(head, jaw=(0.3, 0.0, 0.0))
    lmk_rest, lmk_open = _landmarks(head, rest), _landmarks(head, open_)
    assert lmk_open[8, 1] < lmk_rest[8, 1] - 0.01  # chin down by more than a centimetre
    assert np.linalg.norm(lmk_rest[62] - lmk_rest[66]) < 1e-3  # lips closed at rest ...
    assert np.linalg.norm(lmk_open[62] - lmk_open[66]) > 0.008  # ... parted when the jaw opens
    skull = head["v_template"][:, 1] > 0.03
    np.testing.assert_allclose(open_[skull], rest[skull], atol=1e-9)


def test_neck_turns_the_head_over_a_still_base(head):
    rest, turned = _pose(head), _pose(head, neck=(0.0, 0.5, 0.0))
    base = head["weights"][:, 0] > 0.999
    np.testing.assert_allclose(turned[base], rest[base], atol=1e-9)
    nose_tip = _landmarks(head, turned)[30] - _landmarks(head, rest)[30]
    assert nose_tip[0] > 0.03  # turning left (+Y) swings the nose towards +X


def test_pose_correctives_keep_blended_skin_on_arcs(head):
    posedirs = head["posedirs"]
    assert np.abs(posedirs[..., :18]).max() > 1e-4  # neck and jaw blocks are used
    assert np.abs(posedirs[..., 18:]).max() == 0.0  # eyes are rigid: no correctives
    joints = head["J_regressor"].astype(np.float64) @ head["v_template"]
    blended = (head["weights"][:, 2] > 0.2) & (head["weights"][:, 2] < 0.8)
    drift = []
    for correctives in (False, True):
        posed = _pose(head, jaw=(0.35, 0.0, 0.0), correctives=correctives)
        before = np.linalg.norm(head["v_template"][blended] - joints[2], axis=1)
        drift.append(np.abs(np.linalg.norm(posed[blended] - joints[2], axis=1) - before).mean())
    assert drift[1] < 0.5 * drift[0]


# bases --------------------------------------------------------------------------------------------------------

_REGIONS = {  # keyword in a component name -> where its largest displacement must be
    "ear": lambda p: (np.abs(p[0]) > 0.055) & (p[2] < -0.02),
    "nose": lambda p: (np.abs(p[0]) < 0.025) & (-0.025 < p[1] < 0.035) & (p[2] > 0.04),
    "nasion": lambda p: (np.abs(p[0]) < 0.02) & (0.0 < p[1] < 0.04) & (p[2] > 0.035),
    "nostril": lambda p: (np.abs(p[0]) < 0.025) & (-0.025 < p[1] < 0.0) & (p[2] > 0.04),
    "lip": lambda p: (np.abs(p[0]) < 0.04) & (-0.065 < p[1] < -0.015) & (p[2] > 0.02),
    "lips": lambda p: (np.abs(p[0]) < 0.04) & (-0.065 < p[1] < -0.015) & (p[2] > 0.02),
    "mouth": lambda p: (np.abs(p[0]) < 0.045) & (-0.065 < p[1] < -0.015) & (p[2] > 0.02),
    "philtrum": lambda p: (np.abs(p[0]) < 0.045) & (-0.09 < p[1] < -0.015) & (p[2] > 0.0),
    "smile": lambda p: (np.abs(p[0]) < 0.05) & (-0.065 < p[1] < 0.03) & (p[2] > 0.0),
    "dimple": lambda p: (np.abs(p[0]) < 0.045) & (-0.065 < p[1] < -0.015) & (p[2] > 0.02),
    "chin": lambda p: (np.abs(p[0]) < 0.045) & (p[1] < -0.035) & (p[2] > -0.02),
    "jaw": lambda p: (np.abs(p[0]) > 0.025) & (-0.1 < p[1] < -0.01),
    "jawline": lambda p: (np.abs(p[0]) > 0.01) & (-0.11 < p[1] < -0.04),
    "eye": lambda p: np.linalg.norm(np.abs(p) - EYE_CENTER) < 0.04,
    "lid": lambda p: np.linalg.norm(np.abs(p) - EYE_CENTER) < 0.03,
    "blink": lambda p: np.linalg.norm(np.abs(p) - EYE_CENTER) < 0.02,
    "squint": lambda p: np.linalg.norm(np.abs(p) - EYE_CENTER) < 0.03,
    "brow": lambda p: (np.abs(p[0]) < 0.07) & (0.02 < p[1] < 0.08) & (p[2] > 0.01),
    "cheek": lambda p: (0.015 < np.abs(p[0]) < 0.075) & (-0.07 < p[1] < 0.03) & (p[2] > -0.02),
    "cheekbone": lambda p: (0.025 < np.abs(p[0]) < 0.08) & (-0.03 < p[1] < 0.035) & (p[2] > -0.03),
    "forehead": lambda p: (p[1] > 0.035) & (p[2] > -0.01),
    "temple": lambda p: (np.abs(p[0]) > 0.04) & (0.0 < p[1] < 0.09),
    "neck": lambda p: p[1] < -0.07,
    "adams": lambda p: (p[1] < -0.08) & (p[2] > -0.03),
    "cranium": lambda p: (p[1] > 0.0) & (p[2] < 0.0),
    "parietal": lambda p: (p[1] > 0.0) & (p[2] < 0.0),
    "head": lambda p: True,
    "face": lambda p: p[2] > -0.03,
}


def _region_of(name: str):
    for keyword, region in _REGIONS.items():
        if keyword in name.split("_"):
            return region
    raise AssertionError(f"component {name!r} has no known region keyword")


def test_every_component_moves_its_named_region(head):
    n_shape, _ = _n(head)
    names = list(head["shape_names"]) + list(head["expression_names"])
    v = head["v_template"]
    for k, name in enumerate(names):
        magnitude = np.linalg.norm(head["shapedirs"][:, :, k], axis=1)
        assert magnitude.max() > 3e-4, f"{name} barely moves anything"
        assert _region_of(name)(v[np.argmax(magnitude)]), f"{name} moves {v[np.argmax(magnitude)]} most"
        if name.endswith(("_left", "_right")) and k >= n_shape:  # acts on, or moves towards, its side
            wanted = 1 if name.endswith("_left") else -1
            centroid_x = (magnitude * v[:, 0]).sum() / magnitude.sum()
            shift_x = head["shapedirs"][:, 0, k].sum()
            assert wanted in (np.sign(np.round(centroid_x, 6)), np.sign(np.round(shift_x, 6))), name


def test_components_are_unit_scaled(head):
    largest = np.linalg.norm(head["shapedirs"], axis=1).max(axis=0)  # [S + E] metres per unit coefficient
    assert largest.min() > 3e-4 and largest.max() < 8e-3


def test_eyeballs_only_translate_with_the_sockets(head):
    n_shape, _ = _n(head)
    v = head["v_template"].astype(np.float64)
    skin = head["part_ids"] == PART["skin"]
    for part, joint in (("eye_left", 3), ("eye_right", 4)):
        ball = head["part_ids"] == PART[part]
        d = head["shapedirs"][ball]
        assert np.abs(d - d[:1]).max() < 1e-6  # shape: one translation per eyeball
        assert np.abs(d[..., n_shape:]).max() == 0.0  # expressions: still
        for key in ("l_eyelid", "r_eyelid"):
            assert np.abs(head[key][ball]).max() == 0.0
        for k in range(head["shapedirs"].shape[-1]):
            for coefficient in (-3.0, 3.0):
                moved = v + coefficient * head["shapedirs"][:, :, k]
                center = head["J_regressor"][joint] @ moved
                gap = np.linalg.norm(moved[skin] - center, axis=1).min() - 0.0122
                assert gap > 0.0, f"component {k} at {coefficient} pushes the lids into the {part}"


def test_eyelid_blendshapes_close_one_eye_each(head):
    rest = _landmarks(head, head["v_template"])
    for key, closing, open_ in (("l_eyelid", (43, 47, 44, 46), (37, 41, 38, 40)),
                                ("r_eyelid", (37, 41, 38, 40), (43, 47, 44, 46))):
        lmk = _landmarks(head, head["v_template"] + head[key])
        for a, b in zip(closing[::2], closing[1::2]):  # upper and lower lid points meet
            assert rest[a, 1] - rest[b, 1] > 0.006
            assert abs(lmk[a, 1] - lmk[b, 1]) < 0.0015
        for a, b in zip(open_[::2], open_[1::2]):
            assert np.linalg.norm(lmk[a] - lmk[b]) == pytest.approx(np.linalg.norm(rest[a] - rest[b]))


# landmarks ----------------------------------------------------------------------------------------------------


def test_landmarks_are_valid_and_ordered(head):
    bary = head["lmk_b_coords"]
    assert bary.min() >= -1e-6 and np.allclose(bary.sum(axis=1), 1.0, atol=1e-5)
    assert head["lmk_face_idx"].max() < head["f"].shape[0]
    assert (head["part_ids"][head["f"][head["lmk_face_idx"]]] == PART["skin"]).all()
    mp = head["mediapipe_indices"]
    assert mp.min() >= 0 and mp.max() < 468 and len(set(mp.tolist())) == 68
    lmk = _landmarks(head, head["v_template"])
    mirror = {0: 16, 36: 45, 39: 42, 48: 54, 31: 35, 17: 26, 60: 64, 4: 12}
    for right, left in mirror.items():
        np.testing.assert_allclose(lmk[right] * [-1, 1, 1], lmk[left], atol=5e-4)
        assert lmk[right, 0] < 0 < lmk[left, 0]
    brows, eyes, tip, mouth, chin = lmk[17:27, 1].mean(), lmk[36:48, 1].mean(), lmk[30, 1], lmk[48:68, 1].mean(), lmk[8, 1]
    assert brows > eyes > tip > mouth > chin
    assert lmk[30, 2] == lmk[:, 2].max()  # the nose tip is the most forward landmark


# mesh and texture ---------------------------------------------------------------------------------------------


def test_mesh_is_clean(head):
    v, f = head["v_template"].astype(np.float64), head["f"].astype(np.int64)
    assert np.isfinite(v).all() and all(np.isfinite(head[k]).all() for k in ("shapedirs", "posedirs"))
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    assert area.min() > 1e-8  # 0.01 mm^2
    assert np.unique(np.sort(f, axis=1), axis=0).shape[0] == f.shape[0]
    assert np.bincount(f.ravel(), minlength=v.shape[0]).min() > 0
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert np.unique(directed, axis=0).shape[0] == directed.shape[0]  # consistently oriented, manifold
    edges, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    boundary = edges[counts == 1]
    # the only openings: the base of the neck and the two eye fissures (each eye is filled by its eyeball)
    parent = np.arange(v.shape[0])

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in boundary:
        parent[find(a)] = find(b)
    loops = {find(a) for a in boundary[:, 0]}
    assert len(loops) == 3
    assert v[boundary.ravel(), 1].min() < -0.18


def test_surfaces_face_outwards(head):
    v, f, parts = head["v_template"].astype(np.float64), head["f"], head["part_ids"]
    face_part = parts[f[:, 0]]
    for name in ("ear_left", "ear_right", "eye_left", "eye_right"):  # closed pieces: positive volume
        tri = v[f[face_part == PART[name]]]
        assert np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0 > 1e-7, name
    skin = f[face_part == PART["skin"]]
    normal = np.cross(v[skin[:, 1]] - v[skin[:, 0]], v[skin[:, 2]] - v[skin[:, 0]])
    centre = v[skin].mean(axis=1)
    for point, direction in (([0.0, 0.125, -0.04], [0, 1, 0]), ([0.0, 0.06, 0.05], [0, 0, 1]),
                             ([0.0, 0.03, -0.13], [0, 0, -1])):
        nearest = np.argmin(np.linalg.norm(centre - point, axis=1))
        assert normal[nearest] @ np.array(direction) > 0.0


def test_uvs_and_texture_look_like_a_face(head):
    vt, ft, tex = head["vt"], head["ft"], head["texture"].astype(np.float64)
    assert vt.min() >= 0.0 and vt.max() <= 1.0
    height, width, _ = tex.shape

    def colour_at(point):
        v = head["v_template"]
        face = np.argmin(np.linalg.norm(v[head["f"]].mean(axis=1) - point, axis=1))
        u, w = vt[ft[face]].mean(axis=0)
        return tex[int((1 - w) * height), int(u * width)]

    cheek = colour_at(np.array([0.04, -0.01, 0.04]))
    lips = colour_at(np.array([0.0, -0.049, 0.058]))
    hair = colour_at(np.array([0.0, 0.12, -0.05]))
    pupil = colour_at(EYE_CENTER + [0.0, 0.0, 0.0125])
    assert cheek[0] > cheek[1] > cheek[2] and cheek.mean() > 120
    assert lips[0] - lips[1] > cheek[0] - cheek[1]
    assert hair.mean() < 0.6 * cheek.mean() and pupil.mean() < 40
