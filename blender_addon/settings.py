"""The add-on's scene settings, `context.scene.keyface` (one PropertyGroup; the rig keeps its own)."""

import bpy

from .edit_spec import LIGHT_PRESETS
from .jobs import STATES


class KeyfaceJobItem(bpy.types.PropertyGroup):
    """A job as saved in the .blend, so a reload (or a restart) can re-attach to it."""

    key: bpy.props.StringProperty(name="Key", description="The add-on's handle of the job")
    job_id: bpy.props.StringProperty(name="Job", description="The backend's job id")
    kind: bpy.props.StringProperty(name="Kind")
    label: bpy.props.StringProperty(name="Label")
    state: bpy.props.EnumProperty(name="State", items=[(s, s.title(), "") for s in STATES], default="submitting")
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    progress_text: bpy.props.StringProperty(name="Progress text")
    error: bpy.props.StringProperty(name="Error")
    hint: bpy.props.StringProperty(name="Hint")
    options: bpy.props.StringProperty(name="Options", description="JSON: what the add-on does when the job ends")


class KeyfaceAvatarItem(bpy.types.PropertyGroup):
    """An avatar the backend can render (`name` is what the panel shows)."""

    ref: bpy.props.StringProperty(name="Reference", description="'default', avatars/<id>, a .safetensors or .ply "
                                  "path on the backend's machine")
    note: bpy.props.StringProperty(name="Note", description="e.g. the held-out PSNR of a reconstruction")


class KeyfacePromptRange(bpy.types.PropertyGroup):
    """One entry of the prompt track: a text for a frame range (used by the edit and reenact jobs)."""

    text: bpy.props.StringProperty(name="Prompt", description="Instruction for these frames")
    frame_start: bpy.props.IntProperty(name="Start", default=1, description="First timeline frame of this prompt")
    frame_end: bpy.props.IntProperty(name="End", default=250, description="Last timeline frame of this prompt")


class KeyfaceSettings(bpy.types.PropertyGroup):
    """Scene settings of the add-on (`context.scene.keyface`)."""

    # connection
    address: bpy.props.StringProperty(name="Address", default="tcp://127.0.0.1:5555",
                                      description="ZeroMQ endpoint of the Keyface backend")
    status: bpy.props.StringProperty(name="Status", default="not connected")
    device: bpy.props.StringProperty(name="Device", default="")
    connected: bpy.props.BoolProperty(name="Connected", default=False)
    backend_lost: bpy.props.BoolProperty(name="Backend lost", default=False,
                                         description="A connected backend stopped answering; reconnecting")
    # avatar
    avatar: bpy.props.StringProperty(name="Avatar", default="default",
                                     description="What renders: 'default', avatars/<id> (a reconstruction or "
                                     "an edit), or a .safetensors / .ply path on the backend's machine")
    avatars: bpy.props.CollectionProperty(type=KeyfaceAvatarItem)
    default_gaussians: bpy.props.IntProperty(name="Default avatar Gaussians", default=0, min=0, max=2_000_000,
                                             description="Gaussians of the built-in default avatar (0: the "
                                             "backend's default); fewer render faster")
    video_path: bpy.props.StringProperty(name="Video", subtype="FILE_PATH",
                                         description="Portrait video (on the backend's machine) to reconstruct")
    # render
    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True,
                                            description="Render the scene's frame range")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    resolution: bpy.props.IntVectorProperty(name="Resolution", size=2, default=(0, 0), min=0, max=8192,
                                            description="Output width and height; 0 0 uses the scene's "
                                            "resolution and percentage")
    quality: bpy.props.EnumProperty(name="Quality", default="draft", items=[
        ("draft", "Draft", "Half size, for quick previews"), ("final", "Final", "Full size")])
    take: bpy.props.StringProperty(name="Take", default="take",
                                   description="Take name; each render writes a new version <take>_v###")
    camera_background: bpy.props.BoolProperty(name="Camera background", default=False,
                                              description="Also show the returned frames behind the camera view")
    # prompts
    prompt: bpy.props.StringProperty(name="Prompt", description="Text prompt for edits")
    reference_image: bpy.props.StringProperty(name="Reference image", subtype="FILE_PATH",
                                              description="Reference image for edits (on the backend's machine)")
    editor: bpy.props.EnumProperty(name="Editor", default="instruct-pix2pix", items=[
        ("instruct-pix2pix", "Instruction", "Edit by the text prompt / prompt track (InstructPix2Pix)"),
        ("reference-style", "Reference", "Carry the reference image's style over"),
        ("relight", "Relight", "Relight the avatar")])
    light_preset: bpy.props.EnumProperty(name="Light", default="front", items=[
        (name, name.replace("-", " ").title(), f"Relight with the '{name}' light") for name in LIGHT_PRESETS])
    light_intensity: bpy.props.FloatProperty(name="Intensity", default=1.0, min=0.0, max=10.0,
                                             description="Strength of the relighting editor's directional light")
    edit_iterations: bpy.props.IntProperty(name="Iterations", default=1500, min=1, max=100000,
                                           description="Optimisation steps that distil the edits into the avatar")
    prompt_track: bpy.props.CollectionProperty(type=KeyfacePromptRange)
    prompt_index: bpy.props.IntProperty(name="Active prompt", default=0)
    # jobs
    jobs: bpy.props.CollectionProperty(type=KeyfaceJobItem)
    job_index: bpy.props.IntProperty(name="Active job", default=0)


CLASSES = (KeyfaceJobItem, KeyfaceAvatarItem, KeyfacePromptRange, KeyfaceSettings)
