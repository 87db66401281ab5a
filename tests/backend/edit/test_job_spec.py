"""Job `edit` spec handling: parsing, per-frame instructions from the prompt track, the run key that lets a
resubmitted spec resume, and reading user images (fuzzed)."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.edit.job import instructions_for, parse_spec, previous_checkpoint, read_image, run_key, CHECKPOINT


def spec(**extra):
    return {"avatar": "avatars/j1", "editor": "relight", **extra}


def test_parse_fills_defaults_and_reads_prompts_light_and_paint() -> None:
    parsed = parse_spec(spec(prompts=[{"frame_start": 2, "frame_end": 3, "text": "clown"}],
                             light={"direction": [1, 0, 0], "colour": [1, 0.5, 0.5]}, paint={"4": "/x.png"},
                             schedule={"iterations": 10}, seed=3))
    assert parsed.resolution == 512 and parsed.seed == 3 and parsed.schedule.iterations == 10
    assert parsed.light.direction == (1.0, 0.0, 0.0) and parsed.paint[4].name == "x.png"
    assert instructions_for(parse_spec(spec(instruction="smile", prompts=[
        {"frame_start": 1, "frame_end": 2, "text": "frown"}, {"frame_start": 2, "frame_end": 9, "text": "wink"}])),
        4) == ["smile", "frown", "wink", "wink"]
    assert instructions_for(parsed, 3) == [None, None, "clown"]


@pytest.mark.parametrize("bad, fragment", [
    ({"avatar": 3}, "spec.avatar"), ({"light": {"direction": [1, 0]}}, "direction"),
    ({"light": {"glow": 1}}, "glow"), ({"resolution": 8}, "resolution"), ({"seed": -1}, "seed"),
    ({"models": {"sd": "/x"}}, "sd"), ({"diffusion": {"steps": 0}}, "steps"), ({"colour": 1}, "colour"),
    ({"editor": "reference-style"}, "reference"), ({"prompts": [{"frame_start": 0, "frame_end": 1}]}, r"prompts\[0\]"),
    ({"instruction": "  "}, "instruction"), ({"schedule": {"max_frames": 0}}, "max_frames"),
])
def test_bad_values_name_the_field(bad, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_spec(spec(**bad))


def test_run_key_follows_the_files_content_and_finds_the_previous_checkpoint(tmp_path) -> None:
    avatar, painted = tmp_path / "a.safetensors", tmp_path / "p.png"
    avatar.write_bytes(b"avatar")
    PIL.Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(painted)
    parsed = parse_spec(spec(editor="keyframe-paint", paint={"0": str(painted)}, dataset=str(tmp_path)))
    key = run_key(parsed, avatar, tmp_path)
    assert key == run_key(parse_spec(spec(editor="keyframe-paint", paint={"0": str(painted)}, dataset=str(tmp_path))),
                          avatar, tmp_path)
    assert key != run_key(parse_spec(spec(editor="keyframe-paint", paint={"0": str(painted)}, dataset=str(tmp_path),
                                          seed=1)), avatar, tmp_path)
    PIL.Image.fromarray(np.ones((4, 4, 3), np.uint8)).save(painted)  # repainted: a different run
    assert run_key(parsed, avatar, tmp_path) != key
    jobs = tmp_path / "jobs"
    for name, run in (("j1", key), ("j2", "other"), ("j3", key)):
        (jobs / name).mkdir(parents=True)
        (jobs / name / "run.json").write_text(json.dumps({"key": run}))
        (jobs / name / CHECKPOINT).write_bytes(b"x")
    (jobs / "j4").mkdir()
    found = previous_checkpoint(jobs / "j4", key)
    assert found is not None and found.parent.name in ("j1", "j3")
    assert previous_checkpoint(jobs / "j4", "nothing") is None


def test_read_image_keeps_alpha_and_refuses_junk(tmp_path) -> None:
    rgba = np.zeros((3, 5, 4), np.uint8)
    rgba[..., 3] = 200
    PIL.Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", "painting").shape == (3, 5, 4)
    (tmp_path / "b.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="painting"):
        read_image(tmp_path / "b.png", "painting")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "c.png", "painting")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["truncate", "flip"]))
def test_damaged_images_fail_cleanly(tmp_path, damage, data, mode) -> None:
    path = tmp_path / "frame.png"
    PIL.Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)).save(path)
    damage(path, data, mode)
    try:
        image = read_image(path, "reference image")
    except ValueError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4)
