"""Import the add-on's bpy-free modules without bpy: a bare package over blender_addon/ whose bpy __init__ never
runs (`load("takes")` is blender_addon/takes.py)."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

ADDON = Path(__file__).resolve().parents[2] / "blender_addon"


def load(name: str) -> types.ModuleType:
    """The add-on module `name`, imported as `keyface_pure.<name>`."""
    if "keyface_pure" not in sys.modules:
        package = types.ModuleType("keyface_pure")
        package.__path__ = [str(ADDON)]
        sys.modules["keyface_pure"] = package
    return importlib.import_module(f"keyface_pure.{name}")
