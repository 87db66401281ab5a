"""INSTA datasets: transforms*.json (OpenCV camera-to-world) + flame/exp/*.txt."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.track.importers import TrackedImportError, TrackedSequence, load_insta


def test_round_trip(tmp_path, formats):
    truth = formats.insta(tmp_path, np.random.default_rng(0), frames=4)
    result = load_insta(tmp_path)
    seq = result.sequence
    assert result.source == "insta" and len(result) == 4 and seq.fps == 25.0
    np.testing.assert_allclose(seq.expression, truth["params"]["expression"], atol=1e-6)
    assert seq.shape.shape == (0,) and seq.eyelids is None
    for name in ("rotation", "neck", "jaw", "eyes", "translation"):
        np.testing.assert_array_equal(getattr(seq, name), 0.0)
    assert result.missing == {"shape", "rotation", "neck", "jaw", "eyes", "translation"}
    for camera, cam in zip(result.cameras, truth["cameras"]):
        np.testing.assert_allclose(camera.K, cam["K"], rtol=1e-6)
        np.testing.assert_allclose(camera.world_to_camera, cam["w2c"], atol=1e-6)
        assert (camera.width, camera.height) == (512, 512)
    assert result.image_paths[3] == tmp_path / "images/00003.png"
    assert result.mesh_paths[0] == tmp_path / "meshes/00000.obj"
    assert result.mask_paths == (None,) * 4
    assert result.frame_ids == ("00000", "00001", "00002", "00003")


def test_null_frames_are_skipped_and_splits_are_merged(tmp_path, formats):
    formats.insta(tmp_path, np.random.default_rng(1), frames=5, null_at=1, splits=True)
    result = load_insta(tmp_path)
    assert result.frame_ids == ("00000", "00002", "00003", "00004")  # val repeats a test frame: read once
    assert len(load_insta(tmp_path / "transforms_val.json")) == 1


def test_errors_name_the_file_and_key(tmp_path, formats):
    formats.insta(tmp_path, np.random.default_rng(2), frames=3)
    (tmp_path / "flame/exp/00002.txt").write_text("0.1\nnan\n" + "0.0\n" * 98)
    with pytest.raises(TrackedImportError, match=r"00002\.txt: values: has 1 NaN/inf values, first at index \[1\]"):
        load_insta(tmp_path)
    (tmp_path / "flame/exp/00002.txt").write_text("0.1\n" * 99)
    with pytest.raises(TrackedImportError, match=r"00002\.txt: values: has shape \[99\], expected \[E=100\]"):
        load_insta(tmp_path)
    (tmp_path / "flame/exp/00002.txt").write_text("0.1 zero")
    with pytest.raises(TrackedImportError, match=r"00002\.txt: must hold only numbers"):
        load_insta(tmp_path)
    (tmp_path / "flame/exp/00002.txt").unlink()
    with pytest.raises(TrackedImportError, match=r"00002\.txt: file not found"):
        load_insta(tmp_path)
    db = json.loads((tmp_path / "transforms.json").read_text())
    db.pop("fl_x")
    (tmp_path / "transforms.json").write_text(json.dumps(db))
    with pytest.raises(TrackedImportError, match=r"transforms\.json: fl_x: missing"):
        load_insta(tmp_path)
    db["fl_x"], db["w"] = 900.0, 511.5
    (tmp_path / "transforms.json").write_text(json.dumps(db))
    with pytest.raises(TrackedImportError, match=r"w: must be a whole number, got 511.5"):
        load_insta(tmp_path)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_insta(tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_tracked_import_errors(formats, damage, damage_json, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        formats.insta(root, np.random.default_rng(3), frames=3)
        transforms = root / "transforms.json"
        mode = data.draw(st.sampled_from(["json_value", "json_drop", "truncate", "flip"]))
        if mode.startswith("json"):
            damage_json(transforms, data, mode, lambda db: [db, *db["frames"]])
        else:
            target = data.draw(st.sampled_from([transforms, root / "flame/exp/00001.txt"]))
            damage(target, data, mode)
        try:
            assert isinstance(load_insta(root), TrackedSequence)
        except TrackedImportError as error:
            assert str(error.path) in str(error)
