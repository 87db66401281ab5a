"""Operator `keyface.import_gaussians`: a 3DGS PLY as a splat object (thin: splat_ply reads, gaussians_bpy builds).

No `from __future__ import annotations` here: Blender reads the bpy.props annotations as objects.
"""

from pathlib import Path

import bpy
from bpy_extras.io_utils import ImportHelper

from . import gaussians_bpy
from .splat_ply import read_splat_ply


class KEYFACE_OT_import_gaussians(bpy.types.Operator, ImportHelper):
    """Import a 3D Gaussian Splatting PLY as a point mesh with its attributes and a splat preview"""

    bl_idname = "keyface.import_gaussians"
    bl_label = "Import Gaussians (.ply)"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: bpy.props.StringProperty(default="*.ply", options={"HIDDEN"})
    max_points: bpy.props.IntProperty(
        name="Max Gaussians", default=1_000_000, min=0,
        description="Import at most this many Gaussians, evenly spaced through the file (0: all of them)")
    size: bpy.props.FloatProperty(
        name="Splat Size", default=1.5, min=0.0, soft_max=4.0,
        description="Preview ellipsoid radius in standard deviations (the modifier's Size input; change it later)")
    up_axis: bpy.props.EnumProperty(
        name="Up Axis", default="Y",
        items=(("Y", "Y (Keyface, FLAME)", "Files Keyface exports: FLAME space, +Y up (like the rig)"),
               ("-Y", "-Y (3DGS capture)", "Most 3DGS captures: OpenCV camera world, -Y up"),
               ("Z", "Z (as stored)", "Keep the file's coordinates")))

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        try:
            cloud = read_splat_ply(path, max_points=self.max_points or None)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        obj = gaussians_bpy.add_splat_object(context, cloud, path.stem, source=str(path), up_axis=self.up_axis,
                                             size=self.size)
        kept = f"{cloud.count} of {cloud.total}" if cloud.count < cloud.total else f"{cloud.count}"
        self.report({"INFO"}, f"Imported {kept} Gaussians (SH degree {cloud.sh_degree}) as '{obj.name}'")
        return {"FINISHED"}


def menu_import(self, context) -> None:
    """File > Import entry (append to bpy.types.TOPBAR_MT_file_import)."""
    self.layout.operator(KEYFACE_OT_import_gaussians.bl_idname, text="Keyface Gaussians (.ply)")


CLASSES = (KEYFACE_OT_import_gaussians,)
