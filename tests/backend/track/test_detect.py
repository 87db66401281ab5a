"""load_tracked: format detection and dispatch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.track.importers import TrackedImportError, detect_format, load_tracked


def test_each_format_is_detected(tmp_path, formats):
    rng = np.random.default_rng(0)
    formats.vhap_export(tmp_path / "vhap_export", rng, frames=2)
    formats.vhap_tracked(tmp_path / "vhap_out" / "tracked_flame_params_5.npz", rng, frames=2)
    formats.metrical(tmp_path / "actor", rng, frames=2)
    formats.insta(tmp_path / "insta", rng, frames=2)
    cases = {
        "vhap_export": ["vhap_export", "vhap_export/transforms.json"],
        "vhap_tracked": ["vhap_out", "vhap_out/tracked_flame_params_5.npz"],
        "metrical_tracker": ["actor", "actor/checkpoint", "actor/checkpoint/00000.frame"],
        "insta": ["insta", "insta/transforms.json"],
    }
    for fmt, paths in cases.items():
        for relative in paths:
            assert detect_format(tmp_path / relative) == fmt, relative
            result = load_tracked(tmp_path / relative, fps=30)
            assert result.source == fmt and result.sequence.fps == 30.0 and len(result) == 2


def test_split_only_export_is_detected(tmp_path, formats):
    formats.vhap_export(tmp_path, np.random.default_rng(1), frames=3, splits=True)
    assert detect_format(tmp_path) == "vhap_export"


def test_camera_index_only_for_multi_camera_exports(tmp_path, formats):
    formats.vhap_export(tmp_path / "multi", np.random.default_rng(2), frames=1, cameras=(0, 3))
    assert load_tracked(tmp_path / "multi", camera_index=3).image_paths[0].name == "00000_03.png"
    formats.insta(tmp_path / "insta", np.random.default_rng(3), frames=1)
    with pytest.raises(ValueError, match="camera_index=1 applies only to multi-camera"):
        load_tracked(tmp_path / "insta", camera_index=1)


def test_nothing_recognised_says_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TrackedImportError, match="looked for transforms.json .* checkpoint/\\*.frame .* "
                                                 "tracked_flame_params\\*.npz"):
        load_tracked(tmp_path)
    with pytest.raises(TrackedImportError, match="looked for"):
        load_tracked(tmp_path / "notes.txt")
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "a.png"}]}))
    with pytest.raises(TrackedImportError, match="frames have none of flame_param_path"):
        load_tracked(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_tracked(tmp_path / "absent")
    with pytest.raises(ValueError, match="fps"):
        load_tracked(tmp_path / "transforms.json", fps=-1)
