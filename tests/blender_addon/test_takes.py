"""Versioned take folders and the zlib PNG writer (blender_addon/takes.py, bpy-free)."""

from __future__ import annotations


import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.blender_addon.pure_addon import load



takes = load("takes")


def test_each_render_gets_a_new_version_and_never_touches_older_takes(tmp_path) -> None:
    first = takes.new_take(tmp_path / "keyface_takes", "take", job="j1")
    assert first.name == "take_v001" and (first / takes.INCOMPLETE).exists()
    takes.write_frame(first, 12, np.full((4, 6, 4), 200, np.uint8))
    before = takes.frame_path(first, 12).read_bytes()
    second = takes.new_take(tmp_path / "keyface_takes", "take")
    (tmp_path / "keyface_takes" / "take_v007").mkdir()  # a gap (someone deleted some) still counts up
    third = takes.new_take(tmp_path / "keyface_takes", "take")
    other = takes.new_take(tmp_path / "keyface_takes", "take_b")
    assert [second.name, third.name, other.name] == ["take_v002", "take_v008", "take_b_v001"]
    assert takes.frame_path(first, 12).read_bytes() == before
    assert takes.versions(tmp_path / "keyface_takes", "take") == [1, 2, 7, 8]
    assert takes.read_info(first) == {"take": "take", "version": 1, "job": "j1", "state": "rendering"}


def test_finish_marks_complete_only_when_every_frame_arrived(tmp_path) -> None:
    folder = takes.new_take(tmp_path, "shot")
    for frame in (10, 11, 13):
        takes.write_frame(folder, frame, np.zeros((2, 2, 4), np.uint8))
    assert takes.frames_in(folder) == [10, 11, 13]
    assert takes.finish_take(folder, "done", [10, 11, 12, 13]) == [12]
    assert (folder / takes.INCOMPLETE).exists() and takes.read_info(folder)["missing"] == [12]
    takes.write_frame(folder, 12, np.zeros((2, 2, 4), np.uint8))
    assert takes.finish_take(folder, "done", [10, 11, 12, 13]) == []
    assert not (folder / takes.INCOMPLETE).exists() and takes.read_info(folder)["state"] == "complete"


def test_a_cancelled_render_stays_clearly_partial(tmp_path) -> None:
    folder = takes.new_take(tmp_path, "shot")
    takes.write_frame(folder, 1, np.zeros((2, 2, 4), np.uint8))
    takes.finish_take(folder, "cancelled", [1, 2, 3], "[cancelled] cancelled by the user")
    marker = (folder / takes.INCOMPLETE).read_text()
    assert "cancelled" in marker and "2 frames missing" in marker
    assert takes.read_info(folder)["state"] == "cancelled"
    assert not list(folder.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("name", ["", "../up", "a/b", "_hidden", "x" * 65, "sp ace"])
def test_unsafe_take_names_are_refused(tmp_path, name) -> None:
    with pytest.raises(ValueError, match="take name"):
        takes.new_take(tmp_path, name)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 17), width=st.integers(1, 17), channels=st.sampled_from([3, 4]), seed=st.integers(0, 99))
def test_png_round_trips_through_pil(tmp_path_factory, height, width, channels, seed) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    path = tmp_path_factory.mktemp("png") / "x.png"
    path.write_bytes(takes.encode_png(image))
    with PIL.Image.open(path) as opened:
        assert opened.mode == ("RGBA" if channels == 4 else "RGB")
        np.testing.assert_array_equal(np.asarray(opened), image)


def test_png_encoder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match=r"float32 \[2, 2, 4\]"):
        takes.encode_png(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        takes.encode_png(np.zeros((2, 2), np.uint8))


def request_spec() -> dict:
    rng = np.random.default_rng(3)
    return {"avatar": "default", "quality": "draft",
            "sequence": {"shape": rng.normal(size=4).astype(np.float32), "expression": rng.normal(size=(3, 5)),
                         "fps": 24.0, "frame_start": 7},
            "cameras": [{"K": np.eye(3), "width": 64, "height": 48}] * 3}


def test_the_request_round_trips_through_the_take_folder(tmp_path) -> None:
    spec = request_spec()
    path = takes.save_request(tmp_path, "render", spec)
    kind, loaded = takes.load_request(path)
    assert kind == "render" and loaded["avatar"] == "default" and loaded["sequence"]["frame_start"] == 7
    np.testing.assert_array_equal(loaded["sequence"]["expression"], spec["sequence"]["expression"])
    assert loaded["sequence"]["shape"].dtype == np.float32 and len(loaded["cameras"]) == 3


@settings(max_examples=60, deadline=None)
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]))
def test_damaged_request_files_fail_cleanly(tmp_path_factory, damage, data, mode) -> None:
    folder = tmp_path_factory.mktemp("request")
    path = takes.save_request(folder, "render", request_spec())
    damage(path, data, mode)
    try:
        kind, spec = takes.load_request(path)
    except ValueError as error:
        assert str(path) in str(error)
    else:  # a flip inside an array's bytes still decodes: to a well-formed request
        assert isinstance(kind, str) and isinstance(spec, dict)
