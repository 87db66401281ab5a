"""Returned frames on the timeline: an image strip in the sequencer, optionally the camera's background.

Blender 4.2-4.5 call the sequencer's strip collection `sequences`, 5.x `strips`; both have `new_image`.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from .takes import TAKES_FOLDER, frame_path


def takes_root() -> Path:
    """`//keyface_takes` beside the saved .blend; for an unsaved file, `keyface_takes` in Blender's user data
    folder (never Blender's temporary folder: Blender deletes that when it quits, and the takes with it)."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//{TAKES_FOLDER}"))
    return Path(bpy.utils.user_resource("DATAFILES", path=TAKES_FOLDER, create=True))


def strip_collection(scene):
    """The scene's top-level strips (`strips` in 5.x, `sequences` before), creating the sequence editor."""
    editor = scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _blend_path(path: Path) -> str:
    """A path as Blender should store it: relative (//) to a saved .blend, absolute otherwise."""
    return bpy.path.relpath(str(path)) if bpy.data.filepath else str(path)


def free_channel(scene, frame_start: int, frame_end: int) -> int:
    """The lowest channel with no strip overlapping [frame_start, frame_end]."""
    busy = {strip.channel for strip in strip_collection(scene)
            if strip.frame_final_start <= frame_end and strip.frame_final_end > frame_start}
    channel = 1
    while channel in busy:
        channel += 1
    return channel


def add_take_strip(scene, folder: str | os.PathLike, frames: list[int], name: str = ""):
    """An image strip playing the take's PNGs from timeline frame frames[0], on a free channel.

    `frames` must be consecutive (an incomplete take is not put on the timeline: it would play out of sync).
    """
    if not frames or frames != list(range(frames[0], frames[0] + len(frames))):
        raise ValueError(f"a take strip needs consecutive frames, got {frames[:5]}... ({len(frames)} frames)")
    folder = Path(folder)
    first = frame_path(folder, frames[0])
    channel = free_channel(scene, frames[0], frames[-1])
    strip = strip_collection(scene).new_image(name=name or folder.name, filepath=_blend_path(first),
                                              channel=channel, frame_start=frames[0], fit_method="FIT")
    for frame in frames[1:]:
        strip.elements.append(frame_path(folder, frame).name)
    return strip


def use_as_camera_background(camera_object, folder: str | os.PathLike, frames: list[int]) -> None:
    """Show the take behind the camera view, in sync with the timeline (file number = scene frame)."""
    folder = Path(folder)
    image = bpy.data.images.load(_blend_path(frame_path(folder, frames[0])), check_existing=False)
    image.source = "SEQUENCE"
    image.name = folder.name
    data = camera_object.data
    background = data.background_images.new()
    background.image = image
    background.image_user.frame_start = 1  # the file number is the scene frame: frame_000012.png at frame 12
    background.image_user.frame_offset = 0
    background.image_user.frame_duration = frames[-1]
    background.image_user.use_auto_refresh = True
    data.show_background_images = True
