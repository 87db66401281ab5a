"""metrical-tracker checkpoints: checkpoint/*.frame (torch.save'd dicts of numpy arrays)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.track.importers import TrackedImportError, TrackedSequence, load_metrical_tracker

ATOL = 1e-5


class NotAllowed:
    """Pickled by reference: loading it needs an unsafe global."""


def _check(result, truth):
    seq, params = result.sequence, truth["params"]
    for name in ("shape", "expression", "jaw", "eyes", "eyelids"):
        np.testing.assert_allclose(getattr(seq, name), params[name], atol=ATOL, err_msg=name)
    for name in ("rotation", "neck", "translation"):
        np.testing.assert_array_equal(getattr(seq, name), 0.0)
    for camera, cam in zip(result.cameras, truth["cameras"]):
        np.testing.assert_allclose(camera.K, cam["K"], rtol=1e-5)
        np.testing.assert_allclose(camera.world_to_camera, cam["w2c"], atol=ATOL)
        assert (camera.width, camera.height) == (512, 512)


@pytest.mark.parametrize("tensors", [False, True])
def test_round_trip_from_the_opencv_block(tmp_path, formats, tensors):
    truth = formats.metrical(tmp_path, np.random.default_rng(0), frames=3, tensors=tensors)
    result = load_metrical_tracker(tmp_path)
    assert result.source == "metrical_tracker" and result.sequence.fps == 25.0
    _check(result, truth)
    assert result.frame_ids == ("00000", "00001", "00002")
    assert result.image_paths[1] == tmp_path / "input/00001.png"
    assert result.mesh_paths[2] == tmp_path / "mesh/00002.ply"
    assert any("opencv" in note for note in result.notes)
    assert len(load_metrical_tracker(tmp_path / "checkpoint" / "00001.frame")) == 3  # a file: its whole folder


def test_pytorch3d_block_converts_to_the_same_camera(tmp_path, formats):
    truth = formats.metrical(tmp_path, np.random.default_rng(1), frames=2, opencv=False, images=False)
    result = load_metrical_tracker(tmp_path / "checkpoint")
    _check(result, truth)
    assert result.image_paths == (None, None) and result.mesh_paths == (None, None)
    assert any("PyTorch3D" in note for note in result.notes)


def test_pytorch3d_block_projects_like_pytorch3d(tmp_path, formats):
    # A camera written only in PyTorch3D terms, checked against PyTorch3D's own projection formula.
    formats.metrical(tmp_path, np.random.default_rng(2), frames=1, opencv=False, images=False)
    path = tmp_path / "checkpoint/00000.frame"
    payload = torch.load(path, weights_only=False)
    R = np.array([[0.0, 0.1, 0.9], [0.2, 0.9, 0.0]], np.float32)  # any non-orthonormal 6D
    payload["camera"] = {"R": R.reshape(1, 6), "t": np.array([[0.01, -0.02, 1.1]], np.float32),
                         "fl": np.array([[4.5]], np.float32), "pp": np.array([[0.02, -0.03]], np.float32)}
    payload["img_size"] = np.array([480, 640])
    torch.save(payload, path)
    camera = load_metrical_tracker(tmp_path).cameras[0]
    b1 = R[0] / np.linalg.norm(R[0])
    b2 = R[1] - b1 @ R[1] * b1
    b2 /= np.linalg.norm(b2)
    rotation = np.stack([b1, b2, np.cross(b1, b2)])  # pytorch3d rotation_6d_to_matrix: rows
    points = np.random.default_rng(3).normal(0.0, 0.1, (10, 3))
    view = points @ rotation + [0.01, -0.02, 1.1]  # PyTorch3D: row vectors
    ndc = 4.5 * view[:, :2] / view[:, 2:] + [0.02, -0.03]
    expected = np.stack([320 - 240 * ndc[:, 0], 240 - 240 * ndc[:, 1]], axis=1)  # s = min(H, W) / 2
    np.testing.assert_allclose(camera.project(points)[:, :2], expected, atol=1e-2)


def test_unsafe_pickle_is_refused(tmp_path, formats):
    formats.metrical(tmp_path, np.random.default_rng(4), frames=2)
    torch.save({"flame": NotAllowed()}, tmp_path / "checkpoint/00001.frame")
    with pytest.raises(TrackedImportError, match=r"00001\.frame: refused: loading it needs unsafe unpickling of "
                                                 r".*NotAllowed"):
        load_metrical_tracker(tmp_path)


def test_damaged_numpy_state_is_refused_not_crashing(tmp_path, formats):
    # Regression: numpy's own dtype.__setstate__ segfaulted on this one-byte change (found by fuzzing).
    formats.metrical(tmp_path, np.random.default_rng(7), frames=1)
    path = tmp_path / "checkpoint/00000.frame"
    raw = path.read_bytes()
    at = raw.index(b"NNNJ", raw.index(b"cnumpy\ndtype"))
    path.write_bytes(raw[:at] + b"M" + raw[at + 1:])  # None -> BININT2: the dtype state gets a sub-array field
    with pytest.raises(TrackedImportError, match="refused a structured or sub-array numpy dtype"):
        load_metrical_tracker(tmp_path)


@pytest.mark.parametrize("array", [np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
                                   np.array(["text"]), np.array([{"x": 1}], dtype=object)])
def test_non_numeric_numpy_arrays_are_refused(tmp_path, formats, array):
    formats.metrical(tmp_path, np.random.default_rng(8), frames=1)
    path = tmp_path / "checkpoint/00000.frame"
    payload = torch.load(path, weights_only=False)
    payload["flame"]["exp"] = array
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"00000\.frame: (refused|not a readable)"):
        load_metrical_tracker(tmp_path)


def test_byte_order_and_memory_layout_are_kept(tmp_path, formats):
    truth = formats.metrical(tmp_path, np.random.default_rng(9), frames=1)
    path = tmp_path / "checkpoint/00000.frame"
    payload = torch.load(path, weights_only=False)
    payload["flame"]["exp"] = payload["flame"]["exp"].astype(">f8")
    payload["opencv"]["R"] = np.asfortranarray(payload["opencv"]["R"])
    torch.save(payload, path)
    result = load_metrical_tracker(tmp_path)
    np.testing.assert_allclose(result.sequence.expression, truth["params"]["expression"], atol=1e-5)
    np.testing.assert_allclose(result.cameras[0].world_to_camera, truth["cameras"][0]["w2c"], atol=1e-5)


def test_errors_name_the_key(tmp_path, formats):
    formats.metrical(tmp_path, np.random.default_rng(5), frames=2)
    path = tmp_path / "checkpoint/00001.frame"
    payload = torch.load(path, weights_only=False)
    payload["flame"]["jaw"] = np.zeros((1, 6), np.float32)
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"00001\.frame: flame\.jaw: degenerate 6D rotation"):
        load_metrical_tracker(tmp_path)
    payload["flame"]["jaw"] = np.zeros((1, 9), np.float32)
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"flame\.jaw: has shape \[9\], expected \[6\]"):
        load_metrical_tracker(tmp_path)
    payload["flame"]["jaw"] = np.full((1, 6), np.nan, np.float32)
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"flame\.jaw: has 6 NaN/inf values"):
        load_metrical_tracker(tmp_path)
    del payload["flame"]["eyelids"]
    payload["flame"]["jaw"] = np.array([[1, 0, 0, 0, 1, 0]], np.float32)
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"00001\.frame: flame\.eyelids: missing, but other frames"):
        load_metrical_tracker(tmp_path)
    del payload["flame"]
    torch.save(payload, path)
    with pytest.raises(TrackedImportError, match=r"00001\.frame: flame: missing"):
        load_metrical_tracker(tmp_path)
    torch.save([1, 2], path)
    with pytest.raises(TrackedImportError, match="must hold a dict, got list"):
        load_metrical_tracker(tmp_path)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_metrical_tracker(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_metrical_tracker(tmp_path)


_VALUES = st.sampled_from([np.zeros((1, 0), np.float32), np.full((1, 6), np.inf, np.float32), "text", None,
                           np.zeros((2, 3, 3)), torch.zeros(1, 6), {"R": 1}, [1, 2], 7, np.array([[1e30] * 6])])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's remark on damaged bytes
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_tracked_import_errors(formats, damage, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        formats.metrical(root, np.random.default_rng(6), frames=2, images=False)
        path = root / "checkpoint" / data.draw(st.sampled_from(["00000.frame", "00001.frame"]))
        mode = data.draw(st.sampled_from(["truncate", "flip", "value", "drop"]))
        if mode in ("value", "drop"):
            payload = torch.load(path, weights_only=False)
            holder = data.draw(st.sampled_from([payload, payload["flame"], payload["camera"], payload["opencv"]]))
            key = data.draw(st.sampled_from(sorted(holder)))
            if mode == "drop":
                del holder[key]
            else:
                holder[key] = data.draw(_VALUES)
            torch.save(payload, path)
        else:
            damage(path, data, mode)
        try:
            assert isinstance(load_metrical_tracker(root), TrackedSequence)
        except TrackedImportError as error:
            assert error.path.parent == path.parent  # a frame that disagrees with frame 0 is the one named
