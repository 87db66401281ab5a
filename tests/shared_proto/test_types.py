"""Validation of the wire data types: bad values are rejected with the values in the message."""

from __future__ import annotations

import numpy as np
import pytest

from shared_proto import Camera, ErrorCode, FlameParams, FlameSequence, Frame, ProtocolError


def params(**changes) -> dict:
    values = dict(shape=np.zeros(10), expression=np.zeros(5), rotation=np.zeros(3), neck=np.zeros(3),
                  jaw=np.array([0.2, 0, 0]), eyes=np.zeros(6), translation=np.array([0, 0, 0.5]))
    values.update(changes)
    return values


def seq_values(frames: int = 4, **changes) -> dict:
    values = dict(shape=np.zeros(10), expression=np.zeros((frames, 5)), rotation=np.zeros((frames, 3)),
                  neck=np.zeros((frames, 3)), jaw=np.zeros((frames, 3)), eyes=np.zeros((frames, 6)),
                  translation=np.zeros((frames, 3)))
    values.update(changes)
    return values


def camera_values(**changes) -> dict:
    values = dict(K=[[500, 0, 256], [0, 500, 256], [0, 0, 1]], world_to_camera=np.eye(4), width=512, height=512)
    values.update(changes)
    return values


def rejects(cls, values, *fragments) -> None:
    with pytest.raises(ProtocolError) as info:
        cls(**values)
    assert info.value.code is ErrorCode.BAD_VALUE
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_valid_params_are_frozen_float32() -> None:
    p = FlameParams(**params())
    assert p.jaw.dtype == np.float32 and not p.jaw.flags.writeable
    with pytest.raises(Exception):
        p.jaw = np.zeros(3)


@pytest.mark.parametrize("changes, fragments", [
    ({"shape": [np.nan, 0]}, ("shape", "non-finite", "nan")),
    ({"expression": [0, 80.0]}, ("expression", "80", "out of range")),
    ({"jaw": [0, 0]}, ("jaw", "[3]", "[2]")),
    ({"jaw": [20.0, 0, 0]}, ("jaw", "axis-angle", "radians")),
    ({"eyes": [0, 0, 0, 0, 0, 30.0]}, ("eyes",)),
    ({"translation": [0, 0, 5000]}, ("translation", "5000")),
    ({"eyelids": [0.1]}, ("eyelids",)),
    ({"rotation": "abc"}, ("rotation",)),
    ({"shape": np.zeros(2000)}, ("too many coefficients", "2000")),
    ({"shape": [10**400]}, ("shape",)),
])
def test_params_rejections(changes, fragments) -> None:
    rejects(FlameParams, params(**changes), *fragments)


def test_sequence_rows_and_stacking_round_trip() -> None:
    rng = np.random.default_rng(1)
    seq = FlameSequence(**seq_values(expression=rng.normal(size=(4, 5)), eyelids=rng.uniform(size=(4, 2))),
                        fps=24, frame_start=5)
    frames = [seq.frame(i) for i in range(len(seq))]
    again = FlameSequence.from_frames(frames, fps=24, frame_start=5)
    for name in ("expression", "rotation", "eyelids", "shape"):
        np.testing.assert_array_equal(getattr(seq, name), getattr(again, name))
    assert FlameSequence.from_wire(seq.to_wire()).frame_start == 5
    with pytest.raises(IndexError):
        seq.frame(4)


@pytest.mark.parametrize("changes, fragments", [
    ({"jaw": np.zeros((3, 3))}, ("jaw", "[4, 3]", "[3, 3]")),
    ({"expression": np.zeros((0, 5)), "rotation": np.zeros((0, 3))}, ("1..",)),
    ({"fps": 0}, ("fps",)),
    ({"fps": float("inf")}, ("fps",)),
    ({"frame_start": 1.5}, ("frame_start",)),
    ({"frame_start": True}, ("frame_start",)),
    ({"neck": np.full((4, 3), np.inf)}, ("neck", "non-finite")),
])
def test_sequence_rejections(changes, fragments) -> None:
    rejects(FlameSequence, seq_values(**changes), *fragments)


def test_from_frames_requires_one_identity() -> None:
    a, b = FlameParams(**params()), FlameParams(**params(shape=np.ones(10)))
    with pytest.raises(ProtocolError, match="identity"):
        FlameSequence.from_frames([a, b])


def test_from_wire_names_unknown_and_missing_fields() -> None:
    with pytest.raises(ProtocolError, match="unknown fields"):
        FlameSequence.from_wire({**seq_values(), "bogus": 1})
    with pytest.raises(ProtocolError, match="missing fields"):
        FlameSequence.from_wire({"shape": np.zeros(3)})


def test_camera_projection_follows_opencv() -> None:
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, 2]
    camera = Camera(**camera_values(world_to_camera=pose))
    uvz = camera.project(np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]]))
    np.testing.assert_allclose(uvz[0], [256, 256, 2])
    np.testing.assert_allclose(uvz[1], [256 + 25, 256 + 25, 2])  # +x right, +y down
    np.testing.assert_allclose(camera.camera_to_world @ pose, np.eye(4), atol=1e-6)


@pytest.mark.parametrize("changes, fragments", [
    ({"K": [[-5, 0, 0], [0, 5, 0], [0, 0, 1]]}, ("focal", "-5")),
    ({"K": [[5, 0, 0], [0, 5, 0], [0, 1, 1]]}, ("last row",)),
    ({"world_to_camera": np.diag([1, 1, -1, 1.0])}, ("rigid", "det")),
    ({"world_to_camera": np.diag([2, 1, 1, 1.0])}, ("rigid",)),
    ({"width": 0}, ("width",)),
    ({"height": 10**6}, ("height",)),
    ({"near": 1.0, "far": 0.5}, ("near", "far")),
    ({"K": [[1e39, 0, 0], [0, 5, 0], [0, 0, 1]]}, ("K", "out of range")),
    ({"far": 10**400}, ("far", "out of range")),
])
def test_camera_rejections(changes, fragments) -> None:
    rejects(Camera, camera_values(**changes), *fragments)


def test_frame_validation() -> None:
    Frame(np.zeros((2, 3, 4), np.uint8))
    Frame(np.zeros((2, 3, 4), np.float16))
    rejects(Frame, {"pixels": np.zeros((2, 3, 3), np.uint8)}, "[H, W, 4]", "[2, 3, 3]")
    rejects(Frame, {"pixels": np.zeros((2, 3, 4), np.float32)}, "float32")
    rejects(Frame, {"pixels": np.full((2, 3, 4), np.inf, np.float16)}, "non-finite")
    rejects(Frame, {"pixels": [[0]]}, "numpy array")


@pytest.mark.parametrize("pixels, fragment", [
    (np.zeros((2, 3, 3), np.uint8), "[H, W, 4]"),
    (np.zeros((2, 3, 4), np.float32), "float32"),
    (np.zeros((2, 3, 4), ">f2"), "uint8 or float16"),
    (np.full((2, 3, 4), np.nan, np.float16), "non-finite"),
    ([[0]], "numpy array"),
])
def test_frame_and_progress_messages_check_their_images_like_frame(pixels, fragment) -> None:
    from shared_proto import FrameReply, Progress

    rejects(Frame, {"pixels": pixels}, fragment)
    rejects(FrameReply, {"id": "r", "job": "j", "image": pixels}, fragment)
    rejects(Progress, {"id": "r", "job": "j", "stage": "s", "preview": pixels}, fragment)
