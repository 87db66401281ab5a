"""Editing a reconstructed avatar by iterative dataset update (PortraitGen): 2D editors behind one interface
(`editor.Editor`), face-aware crops, expression-similarity guidance from the tracker, and the loop that distils
the edits into the avatar's Neural Gaussian Texture (`backend.edit.loop.EditLoop`, imported on its own: it
pulls in the reconstruction trainer). See README.md.

    editor = make_editor("relight", EditorSettings(light=LightSpec(preset="rim")), EditModels.from_environment(), "cpu")
    loop = EditLoop(avatar, dataset, editor, instructions=[None] * len(dataset), schedule=EditSchedule())
    loop.run()
"""

from .config import DiffusionSettings, EditModels, EditorSettings, EditSchedule, LightSpec, LIGHT_PRESETS
from .editor import EDITOR_NAMES, EditContext, Editor, make_editor

__all__ = ["DiffusionSettings", "EDITOR_NAMES", "EditContext", "EditModels", "EditSchedule", "Editor",
           "EditorSettings", "LIGHT_PRESETS", "LightSpec", "make_editor"]
