"""Keyface Blender extension: connect to a Keyface backend (the rig, jobs and takes build on this)."""

import sys
from pathlib import Path

# The installed extension carries shared_proto and shared_client in ./vendor (see build.py addon).
_VENDOR = Path(__file__).resolve().parent / "vendor"
if _VENDOR.is_dir() and str(_VENDOR) not in sys.path:
    sys.path.insert(0, str(_VENDOR))

import bpy  # noqa: E402

from . import connection  # noqa: E402


class KeyfaceSettings(bpy.types.PropertyGroup):
    """Scene settings of the add-on (`context.scene.keyface`)."""

    address: bpy.props.StringProperty(name="Address", default="tcp://127.0.0.1:5555",
                                      description="ZeroMQ endpoint of the Keyface backend")
    status: bpy.props.StringProperty(name="Status", default="not connected")
    device: bpy.props.StringProperty(name="Device", default="")
    connected: bpy.props.BoolProperty(name="Connected", default=False)


class KEYFACE_OT_connect(bpy.types.Operator):
    """Connect to the Keyface backend and show its device"""

    bl_idname = "keyface.connect"
    bl_label = "Connect"

    address: bpy.props.StringProperty(name="Address", default="", description="Overrides the scene setting")

    def execute(self, context):
        settings = context.scene.keyface
        if self.address:
            settings.address = self.address
        status = connection.connect(settings.address)
        settings.connected, settings.status, settings.device = status.connected, status.text, status.device
        if not status.connected:
            self.report({"ERROR"}, status.text)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Keyface backend on {status.device}")
        return {"FINISHED"}


class KEYFACE_PT_connection(bpy.types.Panel):
    bl_label = "Connection"
    bl_idname = "KEYFACE_PT_connection"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Keyface"

    def draw(self, context):
        settings = context.scene.keyface
        self.layout.prop(settings, "address")
        self.layout.operator(KEYFACE_OT_connect.bl_idname, icon="LINKED" if settings.connected else "UNLINKED")
        self.layout.label(text=settings.status, icon="CHECKMARK" if settings.connected else "ERROR")
        if settings.device:
            self.layout.label(text=f"Device: {settings.device}")


CLASSES = (KeyfaceSettings, KEYFACE_OT_connect, KEYFACE_PT_connection)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.keyface = bpy.props.PointerProperty(type=KeyfaceSettings)


def unregister() -> None:
    connection.disconnect()
    del bpy.types.Scene.keyface
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
