"""`bpy.ops.keyface.render`: the rig's keyframed FLAME motion through the scene camera -> a new take on the
timeline.

The rig is sampled per frame (rig_params.rig_sequence), the scene camera converted per frame in the rig's
FLAME space (camera_bpy), a new take version folder created (takes.new_take), and a `render` job submitted;
the connection thread writes each returned frame into the take. When the job ends, the take is finished
(INCOMPLETE removed only when every frame arrived) and added as an image strip, optionally also as the
camera's background. In the UI the operator returns at once (the Jobs panel follows the job); under
`blender -b` it blocks until the take is complete, so scripts and render farms can drive it.
"""

from pathlib import Path

import bpy

from . import camera_bpy, rig_params, runtime, takes, timeline
from .jobs import JobRecord

BUILTIN_HEAD = "builtin"
"""The `head` of Keyface's own head model (what the default avatar is built on)."""


def find_rig_and_sequence(context, frame_start: int, frame_end: int):
    """(rig object, FlameSequence over the range); ValueError with what to do when there is no rig."""
    rig = rig_params.find_rig(context)
    if rig is None:
        raise ValueError("build the rig first: Keyface panel -> Rig -> Build Rig (or bpy.ops.keyface.build_rig())")
    return rig, rig_params.rig_sequence(rig, frame_start, frame_end)


def render_spec(settings, sequence, cameras, quality: str, avatar: str = "") -> dict:
    """The `render` job spec (see backend/avatar/render_job.py)."""
    spec = {"avatar": avatar or settings.avatar or "default", "sequence": sequence.to_wire(),
            "cameras": [camera.to_wire() for camera in cameras], "quality": quality}
    if spec["avatar"] == "default" and settings.default_gaussians:
        spec["gaussians"] = settings.default_gaussians
    return spec


def submit_render(context, start: int, end: int, resolution: tuple[int, int], take: str, quality: str,
                  avatar: str = "") -> JobRecord:
    """Sample the rig and camera, create the take folder and submit; ValueError/OSError when it cannot."""
    scene, settings = context.scene, context.scene.keyface
    if end < start:
        raise ValueError(f"frame_end {end} is before frame_start {start}")
    takes.check_take_name(take)
    rig, sequence = find_rig_and_sequence(context, start, end)
    spec_avatar = avatar or settings.avatar or "default"
    if spec_avatar == "default" and rig.keyface.head not in ("", BUILTIN_HEAD):
        raise ValueError(f"the default avatar is built on the built-in head, but {rig.name} was built from "
                         f"{rig.keyface.head!r}: reconstruct an avatar with this rig (Avatar panel) or build the rig "
                         f"from the '{BUILTIN_HEAD}' head")
    cameras = camera_bpy.cameras_over(scene, start, end, rig, resolution)
    spec = render_spec(settings, sequence, cameras, quality, avatar)
    folder = new_take_folder(scene, take, start, end)
    request = takes.save_request(folder, "render", spec)
    record = JobRecord(kind="render", spec=spec, label=f"render {folder.name}", options={
        "take": take, "take_dir": str(folder), "frame_start": start, "frame_end": end, "scene": scene.name,
        "camera_background": settings.camera_background, "request": str(request)})
    return runtime.submit(scene, record, str(folder))


def new_take_folder(scene, take: str, frame_start: int, frame_end: int) -> Path:
    return takes.new_take(timeline.takes_root(), take, meta={"frame_start": frame_start, "frame_end": frame_end,
                                                              "scene": scene.name})


def on_render_end(scene, record: JobRecord) -> None:
    """Finish the take; a complete one goes on the timeline (and behind the camera when asked)."""
    options = record.options
    folder = options["take_dir"]
    expected = list(range(options["frame_start"], options["frame_end"] + 1))
    missing = takes.finish_take(folder, record.state, expected, record.error_text())
    if record.state != "done":
        return
    if missing and record.spec and not options.get("refill"):
        # frames sent while no client was attached (Blender restarted mid-render) are not replayed: render the
        # same request again into the same take; the backend serves the finished frames from its cache
        refill = record.retry()
        refill.options["refill"] = True
        refill.label = f"refill {Path(folder).name} ({len(missing)} frames)"
        runtime.submit(scene, refill, folder)
        return
    if missing:
        record.error = (f"take {Path(folder).name} is missing {len(missing)} frames (e.g. {missing[:3]}); it stayed "
                        "marked INCOMPLETE: press Retry (unchanged frames come from the backend's cache)")
        return
    target = bpy.data.scenes.get(options.get("scene", "")) or scene
    strip = timeline.add_take_strip(target, folder, expected)
    options["strip"] = strip.name
    if options.get("camera_background") and target.camera is not None:
        timeline.use_as_camera_background(target.camera, folder, expected)


def on_render_retry(scene, record: JobRecord) -> str:
    """A retried render writes a new version of the same take."""
    options = record.options
    folder = new_take_folder(scene, options["take"], options["frame_start"], options["frame_end"])
    options["take_dir"] = str(folder)
    options["request"] = str(takes.save_request(folder, "render", record.spec))
    options.pop("strip", None)
    options.pop("refill", None)
    record.label = f"render {folder.name}"
    return str(folder)


class KEYFACE_OT_render(bpy.types.Operator):
    """Render the rig's motion with the chosen avatar into a new take on the timeline"""

    bl_idname = "keyface.render"
    bl_label = "Render Take"

    frame_start: bpy.props.IntProperty(name="Start", default=1, description="First frame (default: the panel's)")
    frame_end: bpy.props.IntProperty(name="End", default=250, description="Last frame (default: the panel's)")
    resolution: bpy.props.IntVectorProperty(name="Resolution", size=2, default=(0, 0), min=0, max=8192,
                                            description="Width, height (default: the panel's; 0 0: the scene's)")
    quality: bpy.props.EnumProperty(name="Quality", items=[("PANEL", "Panel", "The panel's setting"),
                                                            ("draft", "Draft", "Half size"),
                                                            ("final", "Final", "Full size")], default="PANEL")
    take: bpy.props.StringProperty(name="Take", default="", description="Take name (default: the panel's)")
    wait: bpy.props.BoolProperty(name="Wait", default=True, description="Under blender -b (no UI), block until "
                                 "the take is complete; the UI never blocks")

    def _range(self, context) -> tuple[int, int]:
        scene, settings = context.scene, context.scene.keyface
        if settings.use_scene_range:
            start, end = scene.frame_start, scene.frame_end
        else:
            start, end = settings.frame_start, settings.frame_end
        if self.properties.is_property_set("frame_start"):
            start = self.frame_start
        if self.properties.is_property_set("frame_end"):
            end = self.frame_end
        return start, end

    def execute(self, context):
        scene, settings = context.scene, context.scene.keyface
        if not runtime.status().connected:
            self.report({"ERROR"}, runtime.NOT_CONNECTED)
            return {"CANCELLED"}
        start, end = self._range(context)
        resolution = tuple(self.resolution) if self.properties.is_property_set("resolution") \
            else tuple(settings.resolution)
        take = self.take or settings.take
        quality = settings.quality if self.quality == "PANEL" else self.quality
        try:
            record = submit_render(context, start, end, resolution, take, quality)
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        folder = record.options["take_dir"]
        if not (bpy.app.background and self.wait):
            self.report({"INFO"}, f"rendering frames {start}-{end} into {folder}")
            return {"FINISHED"}
        runtime.wait(scene, [record])
        if record.state != "done" or record.error:
            self.report({"ERROR"}, f"{record.label}: {record.error_text() or record.state}"
                        + (f" ({record.hint})" if record.hint else ""))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{record.frames_written} frames in {folder}, strip {record.options.get('strip')!r}")
        return {"FINISHED"}


runtime.ON_END["render"] = on_render_end
runtime.ON_RETRY["render"] = on_render_retry

CLASSES = (KEYFACE_OT_render,)
