"""TrackedSequence validates what importers (or anyone) put into it."""

from __future__ import annotations

import numpy as np
import pytest

from backend.track.importers import TrackedImportError, TrackedSequence
from shared_proto.types import Camera, FlameParams, FlameSequence

SEQUENCE = FlameSequence.from_frames([FlameParams.neutral(), FlameParams.neutral()])
CAMERA = Camera(K=np.diag([500.0, 500.0, 1.0]), world_to_camera=np.eye(4), width=64, height=64)


def _make(**changes):
    fields = dict(sequence=SEQUENCE, cameras=[CAMERA, CAMERA], image_paths=[None, None], mask_paths=[None, None],
                  mesh_paths=[None, None], static_offset=None, source="test", frame_ids=["0", "1"])
    return TrackedSequence(**{**fields, **changes})


def test_valid_and_frozen():
    result = _make(static_offset=np.zeros((5, 3)), notes=["a"], missing={"shape"})
    assert len(result) == 2 and isinstance(result.cameras, tuple) and result.notes == ("a",)
    assert result.static_offset.dtype == np.float32 and not result.static_offset.flags.writeable
    with pytest.raises(AttributeError):
        result.source = "other"


@pytest.mark.parametrize("changes,error,match", [
    ({"cameras": [CAMERA]}, ValueError, "cameras has 1 entries for a 2-frame sequence"),
    ({"frame_ids": ["0"]}, ValueError, "frame_ids has 1 entries"),
    ({"cameras": [CAMERA, "camera"]}, TypeError, "cameras must be Camera objects"),
    ({"sequence": {"shape": []}}, TypeError, "sequence must be a FlameSequence"),
    ({"static_offset": np.full((5, 3), np.nan)}, ValueError, "static_offset must be a finite"),
    ({"static_offset": np.zeros((5, 2))}, ValueError, r"static_offset must be a finite \[V, 3\] array"),
])
def test_rejects(changes, error, match):
    with pytest.raises(error, match=match):
        _make(**changes)


def test_import_error_carries_path_and_key(tmp_path):
    error = TrackedImportError(tmp_path / "a.json", "frames[0].w", "must be a number")
    assert str(error) == f"{tmp_path / 'a.json'}: frames[0].w: must be a number"
    assert isinstance(error, ValueError) and error.key == "frames[0].w" and error.path == tmp_path / "a.json"
