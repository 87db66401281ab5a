"""Rig operators (build, randomise, reset, expression presets, sequence import / export) and the Rig panel.

Thin: each calls rig_build / rig_params / flame_pack and reports errors with `self.report`. Backend jobs
(`head_model`, `import_tracked`) answer in seconds, so they run blocking (with a timeout) on a short-lived
client of their own to the connected backend's address, apart from the add-on's job connection; without a
connected backend they fail at once instead of freezing Blender while a dead address times out.
"""

from __future__ import annotations

import bpy
import numpy as np

from shared_client import BackendUnavailable, Client, RequestFailed
from shared_proto import FlameSequence, ProtocolError

from . import flame_pack, rig_build, rig_params, runtime
from .flame_pack import BONE_NAMES, EXPRESSION_PRESETS

JOB_TIMEOUT_S = 300.0
"""Longest wait for a `head_model` or `import_tracked` job."""
_BACKEND_ERRORS = (BackendUnavailable, RequestFailed, TimeoutError)
_TARGETS = (("ALL", "All", "Shape, expression, eyelids and pose"), ("SHAPE", "Shape", "Identity components"),
            ("EXPRESSION", "Expression", "Expression components and eyelids"),
            ("POSE", "Pose", "Neck, jaw and eye rotations"))


def _run_job(kind: str, spec: dict) -> dict:
    """Run a job on the connected backend and return its result body (ValueError when none is connected)."""
    with Client(runtime.connected_address(), timeout=10.0, retries=1, name="keyface rig") as client:
        return client.submit(kind, spec).wait(timeout=JOB_TIMEOUT_S)


def _rig_or_report(operator: bpy.types.Operator, context: bpy.types.Context) -> bpy.types.Object | None:
    rig = rig_params.find_rig(context)
    if rig is None:
        operator.report({"ERROR"}, "no Keyface rig in the scene; build one with Build Rig")
    return rig


class KEYFACE_OT_build_rig(bpy.types.Operator):
    """Build a FLAME head rig from the backend's head model"""

    bl_idname = "keyface.build_rig"
    bl_label = "Build Rig"
    bl_options = {"REGISTER", "UNDO"}

    head: bpy.props.StringProperty(name="Head", default="builtin",
                                   description="'builtin' or the path of a FLAME file on the backend's machine")
    shape: bpy.props.IntProperty(name="Shape Components", default=100, min=0, max=1024)
    expression: bpy.props.IntProperty(name="Expression Components", default=100, min=0, max=1024)

    @classmethod
    def poll(cls, context):
        return context.mode == "OBJECT"

    def execute(self, context):
        try:
            spec = {"head": self.head, "shape": self.shape, "expression": self.expression}
            result = _run_job("head_model", spec)
            data = flame_pack.rig_data(result)
        except _BACKEND_ERRORS + (ValueError, TypeError) as error:
            self.report({"ERROR"}, f"Build Rig: {error}")
            return {"CANCELLED"}
        rig = rig_build.build_rig(context, data)
        for obj in context.selected_objects:
            obj.select_set(False)
        rig.select_set(True)
        context.view_layer.objects.active = rig
        self.report({"INFO"}, f"built {rig.name}: {data.n_shape} shape, {data.n_expression} expression components")
        return {"FINISHED"}


class KEYFACE_OT_rig_randomise(bpy.types.Operator):
    """Set random shape, expression and pose values on the rig (no keyframes)"""

    bl_idname = "keyface.rig_randomise"
    bl_label = "Randomise"
    bl_options = {"REGISTER", "UNDO"}

    target: bpy.props.EnumProperty(name="Target", items=_TARGETS, default="ALL")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    strength: bpy.props.FloatProperty(name="Strength", default=1.0, min=0.0, max=3.0)

    def execute(self, context):
        rig = _rig_or_report(self, context)
        if rig is None:
            return {"CANCELLED"}
        settings = rig.keyface
        random = flame_pack.random_values(np.random.default_rng(self.seed), len(settings.shape),
                                          len(settings.expression), shape_scale=self.strength,
                                          expression_scale=self.strength, pose_scale=0.2 * self.strength)
        if self.target in ("ALL", "SHAPE"):
            settings.shape.foreach_set("value", random["shape"].astype(np.float32))
        if self.target in ("ALL", "EXPRESSION"):
            settings.expression.foreach_set("value", random["expression"].astype(np.float32))
        if self.target in ("ALL", "POSE"):
            for name in ("neck", "jaw"):
                rig.pose.bones[name].rotation_quaternion = flame_pack.axis_angle_to_quaternion(random[name])
            for name, side in (("eye_L", slice(0, 3)), ("eye_R", slice(3, 6))):
                rig.pose.bones[name].rotation_quaternion = flame_pack.axis_angle_to_quaternion(random["eyes"][side])
        rig.update_tag()
        return {"FINISHED"}


class KEYFACE_OT_rig_reset(bpy.types.Operator):
    """Reset the rig's values to the neutral head (no keyframes)"""

    bl_idname = "keyface.rig_reset"
    bl_label = "Reset"
    bl_options = {"REGISTER", "UNDO"}

    target: bpy.props.EnumProperty(name="Target", items=_TARGETS, default="ALL")

    def execute(self, context):
        rig = _rig_or_report(self, context)
        if rig is None:
            return {"CANCELLED"}
        settings = rig.keyface
        if self.target in ("ALL", "SHAPE"):
            settings.shape.foreach_set("value", np.zeros(len(settings.shape), dtype=np.float32))
        if self.target in ("ALL", "EXPRESSION"):
            settings.expression.foreach_set("value", np.zeros(len(settings.expression), dtype=np.float32))
            settings.eyelids = (0.0, 0.0)
        if self.target in ("ALL", "POSE"):
            for name in BONE_NAMES:
                rig.pose.bones[name].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
            settings.translation = (0.0, 0.0, 0.0)
        rig.update_tag()
        return {"FINISHED"}


class KEYFACE_OT_rig_preset(bpy.types.Operator):
    """Apply an expression preset (by component name; components the head lacks are skipped)"""

    bl_idname = "keyface.rig_preset"
    bl_label = "Expression Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Preset", items=[(name.upper(), name.title(), f"The {name} expression")
                                                          for name in EXPRESSION_PRESETS])

    def execute(self, context):
        rig = _rig_or_report(self, context)
        if rig is None:
            return {"CANCELLED"}
        settings = rig.keyface
        names = [item.name for item in settings.expression]
        values, jaw, eyelids = flame_pack.preset_values(self.preset.lower(), names)
        wanted = EXPRESSION_PRESETS[self.preset.lower()]["expression"]
        if wanted and not values:
            self.report({"WARNING"}, f"this head has none of the components the {self.preset.lower()} preset "
                        f"uses ({', '.join(sorted(wanted))})")
            return {"CANCELLED"}
        expression = np.zeros(len(names), dtype=np.float32)
        for index, value in values.items():
            expression[index] = value
        settings.expression.foreach_set("value", expression)
        rig.pose.bones["jaw"].rotation_quaternion = flame_pack.axis_angle_to_quaternion([jaw, 0.0, 0.0])
        if eyelids is not None and settings.has_eyelids:
            settings.eyelids = eyelids
        rig.update_tag()
        return {"FINISHED"}


class KEYFACE_OT_import_sequence(bpy.types.Operator):
    """Key a tracked FLAME sequence onto the rig: any tracker output the backend reads (VHAP, GaussianAvatars,
    metrical-tracker, INSTA, path on the backend's machine) or a Keyface sequence file on this machine"""

    bl_idname = "keyface.import_sequence"
    bl_label = "Import Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Path", subtype="FILE_PATH", default="")
    source: bpy.props.EnumProperty(name="Source", default="BACKEND", items=(
        ("BACKEND", "Tracked Dataset", "Read on the backend's machine by its importers (job import_tracked)"),
        ("FILE", "Sequence File", "A Keyface FlameSequence .npz / .json on this machine")))
    fps: bpy.props.FloatProperty(name="FPS", default=0.0, min=0.0, max=1000.0,
                                 description="Frame rate for formats that do not store one (0: the format's default)")
    use_scene_start: bpy.props.BoolProperty(name="Start at Scene Start", default=True,
                                            description="Key from the scene's start frame, not the sequence's own")
    drop_eyelids: bpy.props.BoolProperty(name="Drop Eyelids", default=True,
                                         description="Ignore eyelid weights when the rig's head has no eyelid "
                                                     "blendshapes (it cannot show them)")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        rig = _rig_or_report(self, context)
        if rig is None:
            return {"CANCELLED"}
        try:
            if self.source == "FILE":
                sequence = rig_params.load_sequence_file(bpy.path.abspath(self.filepath))
            else:
                spec = {"path": self.filepath} | ({"fps": self.fps} if self.fps > 0 else {})
                sequence = FlameSequence.from_wire(_run_job("import_tracked", spec)["sequence"])
            start = context.scene.frame_start if self.use_scene_start else sequence.frame_start
            frames = rig_params.keyframe_sequence(rig, sequence, start, drop_eyelids=self.drop_eyelids)
        except _BACKEND_ERRORS + (ValueError, TypeError, OSError, ProtocolError) as error:
            self.report({"ERROR"}, f"Import Sequence: {error}")
            return {"CANCELLED"}
        context.scene.frame_end = max(context.scene.frame_end, start + frames - 1)
        if sequence.eyelids is not None and not rig.keyface.has_eyelids and np.any(sequence.eyelids != 0):
            self.report({"WARNING"}, "dropped the sequence's eyelid weights: this head has no eyelid blendshapes")
        self.report({"INFO"}, f"keyed {frames} frames from frame {start}")
        return {"FINISHED"}


class KEYFACE_OT_export_sequence(bpy.types.Operator):
    """Write the rig's animation over the scene's frame range as a FlameSequence (.npz or .json)"""

    bl_idname = "keyface.export_sequence"
    bl_label = "Export Sequence"

    filepath: bpy.props.StringProperty(name="Path", subtype="FILE_PATH", default="")

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = "flame_sequence.npz"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        rig = _rig_or_report(self, context)
        if rig is None:
            return {"CANCELLED"}
        scene = context.scene
        try:
            path = rig_params.export_sequence(rig, bpy.path.abspath(self.filepath), scene.frame_start, scene.frame_end)
        except (ValueError, TypeError, OSError) as error:
            self.report({"ERROR"}, f"Export Sequence: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"wrote {scene.frame_end - scene.frame_start + 1} frames to {path}")
        return {"FINISHED"}


class KEYFACE_PT_rig(bpy.types.Panel):
    bl_label = "Rig"
    bl_idname = "KEYFACE_PT_rig"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Keyface"

    def draw(self, context):
        layout = self.layout
        layout.operator(KEYFACE_OT_build_rig.bl_idname, icon="ARMATURE_DATA")
        rig = rig_params.find_rig(context)
        if rig is None:
            layout.label(text="No rig: connect, then Build Rig", icon="INFO")
            return
        settings = rig.keyface
        layout.label(text=f"{rig.name} ({settings.head})", icon="OUTLINER_OB_ARMATURE")
        row = layout.row(align=True)
        row.operator(KEYFACE_OT_rig_randomise.bl_idname, icon="RNDCURVE")
        row.operator(KEYFACE_OT_rig_reset.bl_idname, icon="LOOP_BACK")
        layout.operator_menu_enum(KEYFACE_OT_rig_preset.bl_idname, "preset", icon="PRESET")
        row = layout.row(align=True)
        row.operator(KEYFACE_OT_import_sequence.bl_idname, icon="IMPORT")
        row.operator(KEYFACE_OT_export_sequence.bl_idname, icon="EXPORT")
        layout.prop(settings, "translation")
        if settings.has_eyelids:
            layout.prop(settings, "eyelids")
        for name in BONE_NAMES:
            layout.prop(rig.pose.bones[name], "rotation_quaternion", text=name)
        layout.prop(settings, "show", expand=True)
        layout.prop(settings, "filter", icon="VIEWZOOM", text="")
        items = settings.shape if settings.show == "SHAPE" else settings.expression
        column = layout.column(align=True)
        for item in items:
            if settings.filter.lower() in item.name.lower():
                column.prop(item, "value", text=item.name, slider=True)


CLASSES = (KEYFACE_OT_build_rig, KEYFACE_OT_rig_randomise, KEYFACE_OT_rig_reset, KEYFACE_OT_rig_preset,
           KEYFACE_OT_import_sequence, KEYFACE_OT_export_sequence, KEYFACE_PT_rig)
