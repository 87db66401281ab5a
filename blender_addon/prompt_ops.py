"""The prompt track and `bpy.ops.keyface.edit()`.

The Prompts panel holds a text prompt, a reference image and a track of per-frame-range prompts
(`scene.keyface.prompt_track`, in timeline frames). The edit job numbers the frames of the avatar's dataset from
0, and Import Sequence keys a reconstruction's tracking from the scene's start frame, so the job gets
timeline frame - scene start. `edit` submits them with the chosen avatar as an `edit` job; its result is a
new avatar reference, which becomes the chosen avatar and (by default) renders into a new take
`<take>_edit`.
"""

import bpy

from . import runtime
from .edit_spec import build_edit_spec
from .jobs import JobRecord


def prompt_track(settings) -> list[dict]:
    """The track as the job spec carries it: [{frame_start, frame_end, text}] in dataset frames (timeline frame -
    the scene's start frame, see the module docstring), ranges with text only, sorted."""
    first = settings.id_data.frame_start  # the Scene owning `settings`
    entries = []
    for item in settings.prompt_track:
        text = item.text.strip()
        if not text:
            continue
        if item.frame_end < item.frame_start:
            raise ValueError(f"prompt {text!r} ends (frame {item.frame_end}) before it starts (frame "
                             f"{item.frame_start})")
        if item.frame_end < first:
            raise ValueError(f"prompt {text!r} (frames {item.frame_start}-{item.frame_end}) ends before the scene "
                             f"starts (frame {first}); the edit reads the avatar's frames from the scene start on")
        entries.append({"frame_start": max(0, item.frame_start - first), "frame_end": item.frame_end - first,
                        "text": text})
    return sorted(entries, key=lambda entry: (entry["frame_start"], entry["frame_end"]))


def edit_spec(settings) -> dict:
    """The `edit` job spec of the Prompts panel (`edit_spec.build_edit_spec`); raises ValueError."""
    reference = bpy.path.abspath(settings.reference_image) if settings.reference_image else ""
    return build_edit_spec(settings.avatar, settings.editor, settings.prompt, prompt_track(settings), reference,
                           settings.light_preset, settings.light_intensity, settings.edit_iterations)


def on_edit_end(scene, record: JobRecord) -> None:
    """Choose the edited avatar; render it into a new take when asked."""
    from . import avatar_ops, render_ops

    if record.state != "done" or not record.result:
        return
    target = bpy.data.scenes.get(record.options.get("scene", "")) or scene
    settings = target.keyface
    ref = str(record.result["avatar"])
    avatar_ops.add_avatar(settings, ref, f"edit: {record.options.get('summary', '')}"[:60])
    if record.options.get("render_after"):
        options = record.options
        render_ops.submit_render(bpy.context, options["frame_start"], options["frame_end"],
                                 tuple(options["resolution"]), f"{options['take']}_edit", options["quality"], ref)


class KEYFACE_OT_prompt_add(bpy.types.Operator):
    """Add a prompt for the scene's frame range (edit its range and text in the list)"""

    bl_idname = "keyface.prompt_add"
    bl_label = "Add Prompt"

    text: bpy.props.StringProperty(name="Prompt", default="")
    frame_start: bpy.props.IntProperty(name="Start", default=-1, description="-1: the scene's start")
    frame_end: bpy.props.IntProperty(name="End", default=-1, description="-1: the scene's end")

    def execute(self, context):
        scene, settings = context.scene, context.scene.keyface
        item = settings.prompt_track.add()
        item.text = self.text or settings.prompt
        item.frame_start = scene.frame_start if self.frame_start < 0 else self.frame_start
        item.frame_end = scene.frame_end if self.frame_end < 0 else self.frame_end
        settings.prompt_index = len(settings.prompt_track) - 1
        return {"FINISHED"}


class KEYFACE_OT_prompt_remove(bpy.types.Operator):
    """Remove the active prompt"""

    bl_idname = "keyface.prompt_remove"
    bl_label = "Remove Prompt"

    def execute(self, context):
        settings = context.scene.keyface
        if not 0 <= settings.prompt_index < len(settings.prompt_track):
            self.report({"ERROR"}, "no prompt selected")
            return {"CANCELLED"}
        settings.prompt_track.remove(settings.prompt_index)
        settings.prompt_index = max(0, settings.prompt_index - 1)
        return {"FINISHED"}


class KEYFACE_OT_edit(bpy.types.Operator):
    """Edit the chosen avatar with the prompt, reference image and prompt track; render it to a new take"""

    bl_idname = "keyface.edit"
    bl_label = "Edit Avatar"

    render_after: bpy.props.BoolProperty(name="Render after", default=True,
                                         description="Render the edited avatar into a new take when done")
    wait: bpy.props.BoolProperty(name="Wait", default=True, description="Under blender -b, block until done")

    def execute(self, context):
        scene, settings = context.scene, context.scene.keyface
        try:
            spec = edit_spec(settings)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        start, end = ((scene.frame_start, scene.frame_end) if settings.use_scene_range
                      else (settings.frame_start, settings.frame_end))
        summary = spec.get("instruction") or (spec.get("prompts") or [{"text": settings.editor}])[0]["text"]
        record = runtime.submit(scene, JobRecord(kind="edit", spec=spec, label=f"edit: {summary[:40]}", options={
            "scene": scene.name, "summary": summary, "render_after": self.render_after, "frame_start": start,
            "frame_end": end, "resolution": list(settings.resolution), "take": settings.take,
            "quality": settings.quality}))
        if not (bpy.app.background and self.wait):
            return {"FINISHED"}
        runtime.wait(scene, [record])
        if record.state != "done" or record.error:
            self.report({"ERROR"}, record.error_text() or record.state)
            return {"CANCELLED"}
        return {"FINISHED"}


runtime.ON_END["edit"] = on_edit_end

CLASSES = (KEYFACE_OT_prompt_add, KEYFACE_OT_prompt_remove, KEYFACE_OT_edit)
