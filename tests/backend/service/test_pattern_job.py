"""The test-pattern job: recycled frame buffers are never redrawn while held, and frames stay correct."""

from __future__ import annotations

import numpy as np
import pytest

from backend.service.pattern_job import CardPattern, FrameRing, read_counter, make_card, validate
from backend.service.pattern_job import run as run_test_pattern


class RecordingContext:
    """Keeps every frame it is given (so none of the ring's buffers is ever free)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def frame(self, index: int, image: np.ndarray) -> None:
        self.frames.append(image)

    def progress(self, *args, **kwargs) -> None:
        pass


def test_recycled_frames_match_fresh_ones_and_held_frames_are_never_redrawn() -> None:
    pattern = CardPattern(make_card(96, 40), count=50)
    ring = FrameRing(pattern, capacity=4)
    held = {}
    for index in range(50):
        frame = ring(index)
        np.testing.assert_array_equal(frame, pattern.frame(index))
        assert read_counter(frame) == index
        if index % 7 == 0:
            held[index] = frame
        del frame
        for kept, image in held.items():  # still showing what it showed when handed out
            np.testing.assert_array_equal(image, pattern.frame(kept))
    assert len(ring) <= 4


def test_the_ring_stops_growing_at_its_capacity_when_every_frame_is_held() -> None:
    pattern = CardPattern(make_card(48, 32), count=20)
    ring = FrameRing(pattern, capacity=3)
    frames = [ring(index) for index in range(20)]
    assert len(ring) == 3
    assert len({id(frame) for frame in frames}) == 20
    assert [read_counter(frame) for frame in frames] == list(range(20))


@pytest.mark.parametrize("width,height", [(24, 16), (512, 512), (640, 360), (100, 700)])
def test_every_disc_stays_inside_the_frame(width: int, height: int) -> None:
    card = make_card(width, height)
    pattern = CardPattern(card, count=9)
    for index in (0, 4, 8):
        frame = pattern.frame(index)
        changed = np.argwhere(np.any(frame[: height // 2] != card[: height // 2], axis=-1))
        radius = pattern.radius
        assert changed[:, 0].max() - changed[:, 0].min() <= 2 * radius  # one disc, not wrapped into a row below
        assert changed[:, 1].max() - changed[:, 1].min() <= 2 * radius


def test_the_job_streams_recycled_or_static_frames() -> None:
    moving = RecordingContext()
    run_test_pattern({"count": 12, "width": 64, "height": 48}, moving)
    assert [read_counter(frame) for frame in moving.frames] == list(range(12))
    static = RecordingContext()
    run_test_pattern({"count": 5, "width": 64, "height": 48, "static": True}, static)
    assert all(frame is static.frames[0] for frame in static.frames)
    assert not static.frames[0].flags.writeable
    np.testing.assert_array_equal(static.frames[0], make_card(64, 48))


@pytest.mark.parametrize("spec", [{"static": 1}, {"static": "yes"}, {"write": None}, {"still": True}])
def test_bad_specs_are_refused(spec: dict) -> None:
    with pytest.raises(ValueError):
        validate(spec)


def test_written_frames_are_the_streamed_frames(tmp_path) -> None:
    import imageio.v3 as iio

    from backend.service.context import JobContext
    from backend.service.registry import JobRegistry
    from backend.service.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    registry = JobRegistry(workspace)
    record = registry.create("test_pattern", "request", {}, None)
    streamed = []
    ctx = JobContext(record, registry, workspace, "cpu", lambda message: streamed.append(message))
    result = run_test_pattern({"count": 3, "width": 48, "height": 32, "write": True}, ctx)
    frames = [message.image for message in streamed if hasattr(message, "image")]
    assert len(result["files"]) == len(frames) == 3
    for index, (asset, frame) in enumerate(zip(result["files"], frames)):
        written = iio.imread(workspace.resolve(asset))
        np.testing.assert_array_equal(written, frame)
        assert read_counter(written) == index
