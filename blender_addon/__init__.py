"""Keyface Blender extension: keyframe a FLAME head, render it through a Keyface backend onto the timeline.

Registration of every module's `CLASSES` (explicit tuples, in order) and of the two property owners:
`Scene.keyface` (settings.KeyfaceSettings) and `Object.keyface` (the rig's, via rig_props).
Scripting contract: see README.md ("Scripting the add-on").
"""

import sys
from pathlib import Path

# The installed extension carries shared_proto and shared_client in ./vendor (see build.py addon).
_VENDOR = Path(__file__).resolve().parent / "vendor"
if _VENDOR.is_dir() and str(_VENDOR) not in sys.path:
    sys.path.insert(0, str(_VENDOR))

import bpy  # noqa: E402

from . import (  # noqa: E402
    avatar_ops,
    connection,
    gaussian_ops,
    job_ops,
    panels,
    prompt_ops,
    render_ops,
    rig_ops,
    rig_props,
    runtime,
    settings,
)

MODULES = (settings, rig_props, job_ops, render_ops, avatar_ops, prompt_ops, gaussian_ops, panels, rig_ops)
"""Registered in this order (property groups before the pointers to them; the Connection panel before the
Rig panel), unregistered in reverse."""

__all__ = ["connection", "register", "unregister"]


def register() -> None:
    for module in MODULES:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
        if hasattr(module, "register_properties"):
            module.register_properties()
    bpy.types.Scene.keyface = bpy.props.PointerProperty(type=settings.KeyfaceSettings)
    bpy.types.TOPBAR_MT_file_import.append(gaussian_ops.menu_import)
    runtime.register()


def unregister() -> None:
    runtime.unregister()
    bpy.types.TOPBAR_MT_file_import.remove(gaussian_ops.menu_import)
    del bpy.types.Scene.keyface
    for module in reversed(MODULES):
        if hasattr(module, "unregister_properties"):
            module.unregister_properties()
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
