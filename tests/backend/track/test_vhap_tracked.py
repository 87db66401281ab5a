"""VHAP tracker output: tracked_flame_params*.npz."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.track.importers import TrackedImportError, TrackedSequence, load_vhap_tracked

ATOL = 1e-5


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return dict(archive)


def test_round_trip(tmp_path, formats):
    path = tmp_path / "tracked_flame_params_30.npz"
    truth = formats.vhap_tracked(path, np.random.default_rng(0), frames=4)
    result = load_vhap_tracked(path, fps=30)
    seq, params = result.sequence, truth["params"]
    assert result.source == "vhap_tracked" and len(result) == 4 and seq.fps == 30.0
    for name in ("shape", "expression", "rotation", "neck", "jaw", "eyes", "translation"):
        np.testing.assert_allclose(getattr(seq, name), params[name], atol=ATOL, err_msg=name)
    assert result.frame_ids == ("00000", "00001", "00002", "00003")
    assert result.static_offset.shape == (5143, 3)
    assert result.image_paths == (None,) * 4 and result.mask_paths == (None,) * 4
    assert all(camera is result.cameras[0] for camera in result.cameras)


def test_fixed_camera_is_vhaps_opengl_camera_in_opencv_axes(tmp_path, formats):
    truth = formats.vhap_tracked(tmp_path / "tracked_flame_params_1.npz", np.random.default_rng(1), frames=1)
    camera = load_vhap_tracked(tmp_path / "tracked_flame_params_1.npz").cameras[0]
    f = truth["focal"] * max(truth["height"], truth["width"])  # VHAP: f * max(H, W) pixels
    np.testing.assert_allclose(camera.K, [[f, 0, 320], [0, f, 240], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(camera.world_to_camera, [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 1], [0, 0, 0, 1]])
    assert (camera.width, camera.height) == (640, 480)
    uv = camera.project(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    np.testing.assert_allclose(uv[0], [320.0, 240.0, 1.0])  # head at the origin, 1 m in front
    assert uv[1, 0] > 320.0 and uv[2, 1] < 240.0  # +x right, +y up (FLAME faces the camera)


def test_folder_picks_the_highest_epoch(tmp_path, formats):
    formats.vhap_tracked(tmp_path / "tracked_flame_params_9.npz", np.random.default_rng(2), frames=2)
    formats.vhap_tracked(tmp_path / "tracked_flame_params_30.npz", np.random.default_rng(3), frames=3)
    result = load_vhap_tracked(tmp_path)
    assert len(result) == 3 and "tracked_flame_params_30.npz" in result.notes[0]


def test_calibrated_tracking_has_no_camera(tmp_path, formats):
    formats.vhap_tracked(tmp_path / "tracked_flame_params_1.npz", np.random.default_rng(4), focal=False)
    with pytest.raises(TrackedImportError, match="focal_length: missing: this sequence was tracked with calibrated"):
        load_vhap_tracked(tmp_path / "tracked_flame_params_1.npz")


def test_errors_name_the_key(tmp_path, formats):
    path = tmp_path / "tracked_flame_params_1.npz"
    formats.vhap_tracked(path, np.random.default_rng(5), frames=3)
    data = _arrays(path)
    data["eyes_pose"] = data["eyes_pose"][:2]
    np.savez(path, **data)
    with pytest.raises(TrackedImportError, match=r"eyes_pose: has shape \[2, 6\], expected \[T=3, 6\]"):
        load_vhap_tracked(path)
    del data["eyes_pose"]
    np.savez(path, **data)
    with pytest.raises(TrackedImportError, match="eyes_pose: missing"):
        load_vhap_tracked(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(TrackedImportError, match="not a readable .npz archive"):
        load_vhap_tracked(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(TrackedImportError, match="single .npy array"):
        load_vhap_tracked(tmp_path / "single.npy")


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_vhap_tracked(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="tracked_flame_params"):
        load_vhap_tracked(tmp_path)
    with pytest.raises(ValueError, match="fps"):
        load_vhap_tracked(tmp_path, fps=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_tracked_import_errors(formats, damage, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tracked_flame_params_1.npz"
        formats.vhap_tracked(path, np.random.default_rng(6), frames=3)
        mode = data.draw(st.sampled_from(["truncate", "flip", "array", "drop"]))
        if mode in ("array", "drop"):
            arrays = _arrays(path)
            key = data.draw(st.sampled_from(sorted(arrays)))
            if mode == "drop":
                del arrays[key]
            else:
                arrays[key] = data.draw(st.sampled_from([
                    np.zeros((0,)), np.full((3, 3), np.nan), np.array(["a", "b", "c"]), np.zeros((3, 3, 3)),
                    np.array(1e30), np.array([True, False]), np.zeros((3, 6), np.complex64), np.array([0, 0]),
                    np.full((1, 5143, 3), 1e300), np.full((3, 3), 1e300)]))
            np.savez(path, **arrays)
        else:
            damage(path, data, mode)
        try:
            assert isinstance(load_vhap_tracked(path), TrackedSequence)
        except TrackedImportError as error:
            assert error.path == path
