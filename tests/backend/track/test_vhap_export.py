"""VHAP / GaussianAvatars export: transforms*.json + flame_param/*.npz."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.track.importers import TrackedImportError, TrackedSequence, load_vhap_export

ATOL = 1e-5


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return dict(archive)


def _check_camera(camera, truth):
    np.testing.assert_allclose(camera.K, truth["K"], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(camera.world_to_camera, truth["w2c"], atol=ATOL)
    assert (camera.width, camera.height) == (truth["width"], truth["height"])


def test_round_trip(tmp_path, formats):
    truth = formats.vhap_export(tmp_path, np.random.default_rng(0), frames=3)
    result = load_vhap_export(tmp_path)
    assert isinstance(result, TrackedSequence) and result.source == "vhap_export"
    seq, params = result.sequence, truth["params"]
    assert len(seq) == 3 and seq.fps == 25.0 and seq.eyelids is None
    for ours, theirs in (("shape", "shape"), ("expression", "expression"), ("rotation", "rotation"),
                         ("neck", "neck"), ("jaw", "jaw"), ("eyes", "eyes"), ("translation", "translation")):
        np.testing.assert_allclose(getattr(seq, ours), params[theirs], atol=ATOL, err_msg=ours)
    for camera in result.cameras:
        _check_camera(camera, truth["cameras"][0])
    assert result.image_paths[1] == tmp_path / "images/00001_00.png"
    assert result.mask_paths[2] == tmp_path / "fg_masks/00002_00.png"
    assert result.mesh_paths == (None, None, None)
    assert result.frame_ids == ("frame_00000", "frame_00001", "frame_00002")
    np.testing.assert_allclose(result.static_offset, truth["static_offset"], atol=1e-7)
    assert not result.missing


def test_projection_matches_the_truth_camera(tmp_path, formats):
    truth = formats.vhap_export(tmp_path, np.random.default_rng(1), frames=1)
    camera = load_vhap_export(tmp_path / "transforms.json").cameras[0]
    cam = truth["cameras"][0]
    points = np.random.default_rng(2).normal(0.0, 0.1, (10, 3))
    view = points @ cam["w2c"][:3, :3].T + cam["w2c"][:3, 3]
    uv = view @ cam["K"].T
    np.testing.assert_allclose(camera.project(points)[:, :2], uv[:, :2] / uv[:, 2:], atol=1e-2)


def test_multi_camera_picks_the_lowest_index_and_says_so(tmp_path, formats):
    truth = formats.vhap_export(tmp_path, np.random.default_rng(3), frames=2, cameras=(4, 8, 9))
    result = load_vhap_export(tmp_path)
    assert len(result) == 2
    _check_camera(result.cameras[0], truth["cameras"][4])
    assert any("camera index 4 of [4, 8, 9]" in note for note in result.notes)
    picked = load_vhap_export(tmp_path, camera_index=8)
    _check_camera(picked.cameras[1], truth["cameras"][8])
    assert picked.image_paths[1].name == "00001_08.png"
    with pytest.raises(TrackedImportError, match=r"no frames for camera 3; the export has \[4, 8, 9\]"):
        load_vhap_export(tmp_path, camera_index=3)
    with pytest.raises(TypeError):
        load_vhap_export(tmp_path, camera_index="8")


def test_split_files_only(tmp_path, formats):
    truth = formats.vhap_export(tmp_path, np.random.default_rng(4), frames=4, splits=True)
    result = load_vhap_export(tmp_path)
    assert len(result) == 4
    np.testing.assert_allclose(result.sequence.expression, truth["params"]["expression"], atol=ATOL)
    assert "transforms_train.json" in result.notes[0]
    assert load_vhap_export(tmp_path / "transforms_test.json").frame_ids == ("frame_00003",)


def test_field_of_view_only_and_no_static_offset(tmp_path, formats):
    truth = formats.vhap_export(tmp_path, np.random.default_rng(5), frames=2, static_offset=False)
    db = json.loads((tmp_path / "transforms.json").read_text())
    for holder in (db, *db["frames"]):
        for key in ("fl_x", "fl_y", "cx", "cy"):
            holder.pop(key)
    (tmp_path / "transforms.json").write_text(json.dumps(db))
    result = load_vhap_export(tmp_path)
    cam = truth["cameras"][0]
    assert result.static_offset is None
    np.testing.assert_allclose(result.cameras[0].K[0, 0], cam["K"][0, 0], rtol=1e-6)
    np.testing.assert_allclose(result.cameras[0].K[:2, 2], [cam["width"] / 2, cam["height"] / 2])


def _edit(path: Path, change) -> None:
    db = json.loads(path.read_text())
    change(db)
    path.write_text(json.dumps(db))


def test_errors_name_the_file_and_key(tmp_path, formats):
    formats.vhap_export(tmp_path, np.random.default_rng(6), frames=2)
    transforms = tmp_path / "transforms.json"
    _edit(transforms, lambda db: db["frames"][1].pop("transform_matrix"))
    with pytest.raises(TrackedImportError, match=r"transforms\.json: frames\[1\]\.transform_matrix: missing") as info:
        load_vhap_export(tmp_path)
    assert info.value.path == transforms and info.value.key == "frames[1].transform_matrix"

    formats.vhap_export(tmp_path, np.random.default_rng(6), frames=2)
    params = _arrays(tmp_path / "flame_param/00001.npz")
    params["jaw_pose"] = np.array([[0.1, np.nan, 0.0]], np.float32)
    np.savez(tmp_path / "flame_param/00001.npz", **params)
    with pytest.raises(TrackedImportError, match=r"00001\.npz: jaw_pose: has 1 NaN/inf values, first at index \[1\]"):
        load_vhap_export(tmp_path)

    params["jaw_pose"] = np.zeros((2, 3), np.float32)
    np.savez(tmp_path / "flame_param/00001.npz", **params)
    with pytest.raises(TrackedImportError, match=r"jaw_pose: has shape \[2, 3\], expected \[3\]"):
        load_vhap_export(tmp_path)

    params["jaw_pose"] = np.zeros((1, 3), np.float32)
    params["expr"] = np.zeros((1, 50), np.float32)
    np.savez(tmp_path / "flame_param/00001.npz", **params)
    with pytest.raises(TrackedImportError, match=r"expr: has shape \[50\], expected \[E=100\]"):
        load_vhap_export(tmp_path)

    (tmp_path / "flame_param/00001.npz").unlink()
    with pytest.raises(TrackedImportError, match=r"00001\.npz: file not found"):
        load_vhap_export(tmp_path)


def test_values_out_of_flame_range_name_the_timestep_file(tmp_path, formats):
    formats.vhap_export(tmp_path, np.random.default_rng(7), frames=3)
    params = _arrays(tmp_path / "flame_param/00002.npz")
    params["expr"] = np.full((1, 100), 500.0, np.float32)
    np.savez(tmp_path / "flame_param/00002.npz", **params)
    with pytest.raises(TrackedImportError, match=r"00002\.npz: not a valid FLAME sequence: expression is out of range"):
        load_vhap_export(tmp_path)


def test_mesh_mode_export_gets_a_hint(tmp_path, formats):
    formats.vhap_export(tmp_path, np.random.default_rng(8), frames=1)

    def to_mesh_mode(db):
        frame = db["frames"][0]
        del frame["flame_param_path"]
        frame.update(exp_path="flame/exp/00000.txt", mesh_path="meshes/00000.obj")

    _edit(tmp_path / "transforms.json", to_mesh_mode)
    with pytest.raises(TrackedImportError, match="flame-mode param"):
        load_vhap_export(tmp_path)


def test_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_vhap_export(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="transforms"):
        load_vhap_export(tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_tracked_import_errors(formats, damage, damage_json, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        formats.vhap_export(root, np.random.default_rng(9), frames=2, cameras=(0, 1))
        transforms = root / "transforms.json"
        mode = data.draw(st.sampled_from(["json_value", "json_drop", "truncate", "flip", "npz_array"]))
        if mode in ("json_value", "json_drop"):
            damage_json(transforms, data, mode, lambda db: [db, *db["frames"]])
        else:
            target = data.draw(st.sampled_from([transforms, root / "flame_param/00000.npz",
                                                root / "flame_param/00001.npz"]))
            if mode in ("truncate", "flip"):
                damage(target, data, mode)
            else:
                target = root / "flame_param/00001.npz"
                params = _arrays(target)
                key = data.draw(st.sampled_from(sorted(params)))
                params[key] = data.draw(st.sampled_from([np.zeros((0,)), np.full((1, 3), np.inf), np.array(["x"]),
                                                         np.zeros((2, 2, 2)), np.array(7),
                                                         np.full((1, 5143, 3), 1e300)]))
                np.savez(target, **params)
        try:
            assert isinstance(load_vhap_export(root), TrackedSequence)
        except TrackedImportError as error:
            assert str(error.path) in str(error)
