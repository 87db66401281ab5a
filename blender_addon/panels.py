"""The 3D Viewport sidebar tab 'Keyface': Connection, Avatar, Render, Prompts, Jobs (the Rig panel is
rig_ops'). Panels only draw `scene.keyface`; the runtime timer keeps it current."""

import bpy

from . import runtime


class _KeyfacePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Keyface"


class KEYFACE_PT_connection(_KeyfacePanel, bpy.types.Panel):
    bl_label = "Connection"
    bl_idname = "KEYFACE_PT_connection"
    bl_order = 0

    def draw(self, context):
        layout, settings = self.layout, context.scene.keyface
        layout.prop(settings, "address")
        row = layout.row(align=True)
        row.operator("keyface.connect", icon="LINKED" if settings.connected else "UNLINKED")
        if runtime.connection() is not None:
            row.operator("keyface.disconnect", text="", icon="X")
        if settings.backend_lost:
            box = layout.box()
            box.alert = True
            box.label(text="Backend not answering", icon="ERROR")
            box.label(text="Reconnecting by itself; jobs resume when it is back")
        icon = "CHECKMARK" if settings.connected else ("ERROR" if settings.backend_lost else "INFO")
        layout.label(text=settings.status, icon=icon)
        if settings.device:
            layout.label(text=f"Device: {settings.device}", icon="MEMORY")


class KEYFACE_PT_avatar(_KeyfacePanel, bpy.types.Panel):
    bl_label = "Avatar"
    bl_idname = "KEYFACE_PT_avatar"
    bl_order = 20

    def draw(self, context):
        layout, settings = self.layout, context.scene.keyface
        layout.prop(settings, "avatar")
        column = layout.column(align=True)
        row = column.row(align=True)
        row.operator("keyface.choose_avatar", text="Default",
                     depress=settings.avatar == "default").ref = "default"
        for item in settings.avatars:
            row = column.row(align=True)
            op = row.operator("keyface.choose_avatar", text=item.name or item.ref, depress=settings.avatar == item.ref)
            op.ref = item.ref
            if item.note:
                row.label(text=item.note)
        if settings.avatar == "default":
            layout.prop(settings, "default_gaussians")
        layout.separator()
        layout.prop(settings, "video_path")
        layout.operator("keyface.reconstruct", icon="OUTLINER_OB_ARMATURE")


class KEYFACE_PT_render(_KeyfacePanel, bpy.types.Panel):
    bl_label = "Render"
    bl_idname = "KEYFACE_PT_render"
    bl_order = 30

    def draw(self, context):
        layout, settings = self.layout, context.scene.keyface
        layout.prop(settings, "use_scene_range")
        if not settings.use_scene_range:
            row = layout.row(align=True)
            row.prop(settings, "frame_start")
            row.prop(settings, "frame_end")
        layout.prop(settings, "resolution")
        layout.prop(settings, "quality", expand=True)
        layout.prop(settings, "take")
        layout.prop(settings, "camera_background")
        layout.operator("keyface.render", icon="RENDER_ANIMATION")


class KEYFACE_UL_prompts(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "frame_start", text="")
        row.prop(item, "frame_end", text="")
        row.prop(item, "text", text="", emboss=False)


class KEYFACE_PT_prompts(_KeyfacePanel, bpy.types.Panel):
    bl_label = "Prompts"
    bl_idname = "KEYFACE_PT_prompts"
    bl_order = 40

    def draw(self, context):
        layout, settings = self.layout, context.scene.keyface
        layout.prop(settings, "prompt")
        layout.prop(settings, "reference_image")
        layout.prop(settings, "editor")
        if settings.editor == "relight":
            row = layout.row(align=True)
            row.prop(settings, "light_preset")
            row.prop(settings, "light_intensity")
        layout.prop(settings, "edit_iterations")
        row = layout.row()
        row.template_list("KEYFACE_UL_prompts", "", settings, "prompt_track", settings, "prompt_index", rows=3)
        column = row.column(align=True)
        column.operator("keyface.prompt_add", text="", icon="ADD")
        column.operator("keyface.prompt_remove", text="", icon="REMOVE")
        layout.operator("keyface.edit", icon="BRUSH_DATA")


class KEYFACE_PT_jobs(_KeyfacePanel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_idname = "KEYFACE_PT_jobs"
    bl_order = 50

    def draw(self, context):
        layout, settings = self.layout, context.scene.keyface
        if not settings.jobs:
            layout.label(text="No jobs yet")
            return
        for item in reversed(settings.jobs):
            box = layout.box()
            row = box.row(align=True)
            row.label(text=item.label or item.kind)
            live = item.state in ("submitting", "queued", "running")
            if live:
                row.operator("keyface.job_cancel", text="", icon="CANCEL").key = item.key
            elif item.state != "done" or item.error:
                row.operator("keyface.job_retry", text="", icon="FILE_REFRESH").key = item.key
            box.progress(factor=item.progress, type="BAR", text=item.progress_text or item.state)
            if item.error:
                column = box.column(align=True)
                column.alert = True
                column.label(text=item.error, icon="ERROR")
                if item.hint:
                    column.label(text=item.hint, icon="INFO")
        layout.operator("keyface.jobs_clear", icon="TRASH")


CLASSES = (KEYFACE_PT_connection, KEYFACE_PT_avatar, KEYFACE_PT_render, KEYFACE_UL_prompts, KEYFACE_PT_prompts,
           KEYFACE_PT_jobs)
