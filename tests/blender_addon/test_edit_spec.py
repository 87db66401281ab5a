"""The Prompts panel's `edit` job spec (blender_addon/edit_spec.py, bpy-free) against the backend's own parser."""

from __future__ import annotations

import pytest

from backend.edit.config import LIGHT_PRESETS
from backend.edit.job import validate

from tests.blender_addon.pure_addon import load

edit_spec = load("edit_spec")


def spec(**overrides):
    values = dict(avatar="avatars/j-anna", editor="instruct-pix2pix", prompt="", track=[], reference="",
                  light_preset="front", light_intensity=1.0, iterations=1500)
    values.update(overrides)
    return edit_spec.build_edit_spec(**values)


def test_the_add_on_offers_exactly_the_backends_light_presets() -> None:
    assert edit_spec.LIGHT_PRESETS == tuple(LIGHT_PRESETS)


@pytest.mark.parametrize("overrides", [
    dict(prompt="  make it a bronze statue "),
    dict(track=[{"frame_start": 0, "frame_end": 3, "text": "smile"}], iterations=4),
    dict(editor="reference-style", reference="/data/painting.png"),
    dict(editor="relight", light_preset="warm-sunset", light_intensity=2.5),
    dict(editor="relight", avatar=""),
])
def test_every_spec_the_panel_builds_passes_the_backends_validation(overrides) -> None:
    built = spec(**overrides)
    if built["avatar"] == "default":
        with pytest.raises(ValueError, match="spec.dataset"):  # the default avatar has no dataset to edit
            validate(built)
        return
    validate(built)
    assert built["schedule"] == {"iterations": overrides.get("iterations", 1500)}
    if built["editor"] == "relight":
        assert built["light"] == {"preset": "warm-sunset", "intensity": 2.5}
    else:
        assert "light" not in built


@pytest.mark.parametrize("overrides, message", [
    (dict(), "needs a prompt or a prompt track entry"),
    (dict(editor="reference-style"), "needs a reference image"),
    (dict(editor="relight", light_preset="disco"), "light preset must be one of"),
])
def test_an_editor_without_its_input_is_refused_before_submitting(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**overrides)
