"""Avatar operators: `bpy.ops.keyface.reconstruct(filepath=...)` (a `reconstruct` job from a portrait video,
a frame folder or a tracked dataset on the backend's machine) and choosing which avatar renders.

A finished reconstruction's avatar reference (`avatars/<job id>`) joins `scene.keyface.avatars` and becomes
the chosen avatar, so the next render uses it.
"""

from pathlib import Path

import bpy

from . import rig_params, runtime
from .jobs import JobRecord
from .render_ops import BUILTIN_HEAD

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
TRACKED_MARKERS = ("transforms.json", "transforms_train.json", "checkpoint")


def source_key(path: str, source: str) -> str:
    """The spec key for `path`: 'video', 'frames' or 'tracked'. AUTO guesses from the suffix, else from what the
    path is on this machine; ValueError when it cannot (a folder that exists only on a remote backend's machine).
    """
    if source != "AUTO":
        return source.lower()
    local = Path(path)
    if local.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if local.suffix.lower() in (".npz", ".json") or any((local / marker).exists() for marker in TRACKED_MARKERS):
        return "tracked"
    if local.is_dir():
        return "frames"
    if local.is_file():
        return "video"
    raise ValueError(f"{path} is not on this machine, so Auto cannot tell a frame folder from a tracked dataset or "
                     "a video: set Source to Video, Frames or Tracked (the backend reads the path on its machine)")


def add_avatar(settings, ref: str, name: str, note: str = "") -> None:
    """Add (or update) an avatar in the list and choose it."""
    item = next((a for a in settings.avatars if a.ref == ref), None) or settings.avatars.add()
    item.ref, item.name, item.note = ref, name, note
    settings.avatar = ref


def on_reconstruct_end(scene, record: JobRecord) -> None:
    if record.state != "done" or not record.result:
        return
    result = record.result
    note = ", ".join(f"{label} {result[key]:.3g}" for key, label in (("psnr_holdout", "PSNR"),
                                                                     ("ssim_holdout", "SSIM"))
                     if isinstance(result.get(key), (int, float)))
    target = bpy.data.scenes.get(record.options.get("scene", "")) or scene
    add_avatar(target.keyface, str(result["avatar"]), Path(record.options.get("source", "avatar")).stem, note)


class KEYFACE_OT_reconstruct(bpy.types.Operator):
    """Reconstruct a Gaussian avatar from a portrait video (or frames / a tracked dataset) on the backend"""

    bl_idname = "keyface.reconstruct"
    bl_label = "Reconstruct Avatar"

    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH",
                                       description="Video, frame folder or tracked dataset (on the backend's "
                                       "machine); default: the panel's")
    source: bpy.props.EnumProperty(name="Source", default="AUTO", items=[
        ("AUTO", "Auto", "Guess from the path"), ("VIDEO", "Video", "A portrait video"),
        ("FRAMES", "Frames", "A folder of frames"), ("TRACKED", "Tracked", "A tracked FLAME dataset")])
    resolution: bpy.props.IntProperty(name="Resolution", default=0, min=0, max=4096,
                                      description="Training resolution (0: the backend's default)")
    iterations: bpy.props.IntProperty(name="Iterations", default=0, min=0,
                                      description="Optimisation steps (0: the backend's default)")
    max_frames: bpy.props.IntProperty(name="Max frames", default=0, min=0,
                                      description="Frames used at most (0: the backend's default)")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    wait: bpy.props.BoolProperty(name="Wait", default=True, description="Under blender -b, block until done")

    def execute(self, context):
        scene, settings = context.scene, context.scene.keyface
        path = bpy.path.abspath(self.filepath or settings.video_path)
        if not path:
            self.report({"ERROR"}, "choose a video, frame folder or tracked dataset to reconstruct from")
            return {"CANCELLED"}
        rig = rig_params.find_rig(context)  # the avatar is bound to the rig's head, so the rig's motion fits it
        head = rig.keyface.head if rig is not None and rig.keyface.head else BUILTIN_HEAD
        try:
            spec = {source_key(path, self.source): path, "head": head, "seed": self.seed}
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        for name in ("resolution", "iterations", "max_frames"):
            if getattr(self, name):
                spec[name] = getattr(self, name)
        record = runtime.submit(scene, JobRecord(kind="reconstruct", spec=spec, label=f"reconstruct "
                                                 f"{Path(path).name}", options={"source": path, "scene": scene.name}))
        if not (bpy.app.background and self.wait):
            return {"FINISHED"}
        runtime.wait(scene, [record])
        if record.state != "done":
            self.report({"ERROR"}, f"{record.error_text() or record.state}" + (f" ({record.hint})" if record.hint
                                                                                else ""))
            return {"CANCELLED"}
        self.report({"INFO"}, f"avatar {settings.avatar} chosen")
        return {"FINISHED"}


class KEYFACE_OT_choose_avatar(bpy.types.Operator):
    """Render with this avatar"""

    bl_idname = "keyface.choose_avatar"
    bl_label = "Use Avatar"

    ref: bpy.props.StringProperty(name="Reference", default="default")

    def execute(self, context):
        context.scene.keyface.avatar = self.ref
        return {"FINISHED"}


runtime.ON_END["reconstruct"] = on_reconstruct_end

CLASSES = (KEYFACE_OT_reconstruct, KEYFACE_OT_choose_avatar)
