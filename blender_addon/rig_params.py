"""Read and write a Keyface rig's FLAME parameters: per frame, as keyframes, and as FlameSequence files.

Public API for the rest of the add-on:
    find_rig(context) -> Object | None
    rig_sequence(obj, frame_start, frame_end) -> FlameSequence   (the rig at each frame, both ends included)
    keyframe_sequence(obj, sequence, frame_start=None)            (bulk keyframes, replaces that range)
    export_sequence(obj, path, frame_start, frame_end)            (.npz or .json via shared_proto.sequence_io)
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy_extras import anim_utils

from shared_proto import FlameSequence
from shared_proto.sequence_io import load_sequence_json, load_sequence_npz, save_sequence_json, save_sequence_npz

from .flame_pack import BONE_NAMES, RigValues, rig_values_to_fields, sequence_to_rig_values


def is_rig(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == "ARMATURE" and getattr(obj, "keyface", None) is not None \
        and obj.keyface.is_rig


def find_rig(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active rig, the rig of the active mesh, or the first rig in the scene (None if there is none)."""
    active = context.active_object
    for candidate in (active, active.parent if active is not None else None):
        if is_rig(candidate):
            return candidate
    return next((obj for obj in context.scene.objects if is_rig(obj)), None)


def _check_rig(obj: bpy.types.Object) -> None:
    if not is_rig(obj):
        raise TypeError(f"{getattr(obj, 'name', obj)!r} is not a Keyface rig (build one with Build Rig)")


def read_values(obj: bpy.types.Object) -> RigValues:
    """The rig's current values as one-frame RigValues (quaternions as stored, not normalised)."""
    _check_rig(obj)
    settings = obj.keyface

    def collection(items: bpy.types.bpy_prop_collection) -> np.ndarray:
        values = np.zeros(len(items), dtype=np.float32)
        items.foreach_get("value", values)
        return values.astype(np.float64)[None]

    quaternions = np.array([[tuple(obj.pose.bones[name].rotation_quaternion) for name in BONE_NAMES]])
    eyelids = np.array([tuple(settings.eyelids)]) if settings.has_eyelids else None
    return RigValues(shape=collection(settings.shape), expression=collection(settings.expression), eyelids=eyelids,
                     translation=np.array([tuple(settings.translation)]), quaternions=quaternions)


def set_values(obj: bpy.types.Object, values: RigValues, row: int = 0) -> None:
    """Set the rig to row `row` of `values` (no keyframes) and tag it for re-evaluation."""
    _check_rig(obj)
    settings = obj.keyface
    settings.shape.foreach_set("value", values.shape[row].astype(np.float32))
    settings.expression.foreach_set("value", values.expression[row].astype(np.float32))
    if values.eyelids is not None:
        settings.eyelids = values.eyelids[row]
    settings.translation = values.translation[row]
    for j, name in enumerate(BONE_NAMES):
        obj.pose.bones[name].rotation_quaternion = values.quaternions[row, j]
    obj.update_tag()


def rig_sequence(obj: bpy.types.Object, frame_start: int, frame_end: int) -> FlameSequence:
    """The rig's parameters at every frame of [frame_start, frame_end] (both included), as Blender animates them.

    Keyframed channels are read from their F-curves (fast); when NLA, action blending, muted groups or
    drivers on the parameters are in play, each frame is evaluated by the scene instead (exact either way).
    The scene stays at its current frame.
    """
    _check_rig(obj)
    if not isinstance(frame_start, int) or not isinstance(frame_end, int) or frame_end < frame_start:
        raise ValueError(f"need integer frames with frame_start <= frame_end, got {frame_start!r}..{frame_end!r}")
    frames = range(frame_start, frame_end + 1)
    curves = animation_curves(obj)
    values = _values_from_curves(obj, curves, frames) if curves is not None else _values_by_frame_set(obj, frames)
    fields = rig_values_to_fields(values)
    if fields["eyelids"] is None:
        del fields["eyelids"]
    render = bpy.context.scene.render
    return FlameSequence(**fields, fps=render.fps / render.fps_base, frame_start=frame_start)


def _parameter_paths(obj: bpy.types.Object) -> set[str]:
    settings = obj.keyface
    paths = {f"keyface.shape[{i}].value" for i in range(len(settings.shape))}
    paths |= {f"keyface.expression[{i}].value" for i in range(len(settings.expression))}
    paths |= {"keyface.eyelids", "keyface.translation"}
    return paths | {f'pose.bones["{name}"].rotation_quaternion' for name in BONE_NAMES}


def animation_curves(obj: bpy.types.Object) -> dict[tuple[str, int], bpy.types.FCurve] | None:
    """{(data path, index): F-curve} of the rig's parameter channels in its action, or None when reading
    F-curves would not reproduce what Blender evaluates (NLA in use, action influence or blending, drivers
    on a parameter)."""
    animation = obj.animation_data
    if animation is None:
        return {}
    parameters = _parameter_paths(obj)
    if any(curve.data_path in parameters for curve in animation.drivers):
        return None
    if (animation.use_nla and len(animation.nla_tracks)) or animation.use_tweak_mode:
        return None
    if animation.action_influence != 1.0 or animation.action_blend_type != "REPLACE":
        return None
    action = animation.action
    if action is None:
        return {}
    channelbag_for_slot = getattr(anim_utils, "action_get_channelbag_for_slot", None)
    if channelbag_for_slot is not None:  # Blender 4.4+ (5.x has no action.fcurves): the object's slot's channelbag
        bag = channelbag_for_slot(action, animation.action_slot)  # None without a slot
        curves = [] if bag is None else list(bag.fcurves)
    else:  # Blender 4.2-4.3: the action's F-curves (4.3 has experimental `layers` too, empty for these actions)
        curves = list(action.fcurves)
    out = {}
    for curve in curves:
        if curve.data_path not in parameters:
            continue
        if curve.mute or (curve.group is not None and curve.group.mute):
            continue  # Blender leaves a muted channel at its current value
        out[(curve.data_path, curve.array_index)] = curve
    return out


def _values_from_curves(obj: bpy.types.Object, curves: dict[tuple[str, int], bpy.types.FCurve],
                        frames: range) -> RigValues:
    current = read_values(obj)
    count = len(frames)
    current = RigValues(**{name: None if getattr(current, name) is None else
                           np.repeat(getattr(current, name), count, axis=0) for name in _FIELDS})
    for path, index, column in current.channels():
        curve = curves.get((path, index))
        if curve is not None:
            column[:] = [curve.evaluate(frame) for frame in frames]  # a view into `current`'s arrays
    return current


def _values_by_frame_set(obj: bpy.types.Object, frames: range) -> RigValues:
    scene = bpy.context.scene
    frame, subframe = scene.frame_current, scene.frame_subframe
    rows = []
    try:
        for index in frames:
            scene.frame_set(index)
            rows.append(read_values(obj))
    finally:
        scene.frame_set(frame, subframe=subframe)
    return RigValues(**{name: None if getattr(rows[0], name) is None else
                        np.concatenate([getattr(row, name) for row in rows]) for name in _FIELDS})


_FIELDS = ("shape", "expression", "eyelids", "translation", "quaternions")


def _fcurve(obj: bpy.types.Object, action: bpy.types.Action, path: str, index: int) -> bpy.types.FCurve:
    """The F-curve for obj.path[index] in `action`: layered actions (Blender 4.4+) or legacy `fcurves`."""
    if hasattr(action, "fcurve_ensure_for_datablock"):
        return action.fcurve_ensure_for_datablock(obj, path, index=index)
    return action.fcurves.find(path, index=index) or action.fcurves.new(path, index=index)


_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def keyframe_values(obj: bpy.types.Object, values: RigValues, frame_start: int) -> None:
    """Key every channel at frames frame_start.. (one per row, linear interpolation), replacing the keys already
    in that range and leaving the others (and their handles) as they are.

    Bulk insertion (foreach_get / foreach_set on the keyframe points), so long sequences are fast.
    """
    _check_rig(obj)
    frames = np.arange(frame_start, frame_start + len(values.translation), dtype=np.float64)  # [T]
    animation = obj.animation_data or obj.animation_data_create()
    if animation.action is None:
        animation.action = bpy.data.actions.new(f"{obj.name} Keyface")
    for path, index, channel in values.channels():
        curve = _fcurve(obj, animation.action, path, index)
        points = curve.keyframe_points
        co = np.zeros(2 * len(points), dtype=np.float32)
        points.foreach_get("co", co)
        inside = np.flatnonzero((co[0::2] > frames[0] - 0.5) & (co[0::2] < frames[-1] + 0.5))
        for i in inside[::-1]:
            points.remove(points[int(i)], fast=True)
        kept = len(points)
        points.add(len(frames))
        co = np.zeros((len(points), 2), dtype=np.float32)
        points.foreach_get("co", co.ravel())
        co[kept:] = np.stack([frames, channel], axis=1)
        interpolation = np.zeros(len(points), dtype=np.int32)
        points.foreach_get("interpolation", interpolation)
        interpolation[kept:] = _LINEAR
        points.foreach_set("co", co.ravel())
        points.foreach_set("interpolation", interpolation)
        curve.update()  # sorts the keys by frame, recomputes automatic handles
    obj.update_tag()


def keyframe_sequence(obj: bpy.types.Object, sequence: FlameSequence, frame_start: int | None = None, *,
                      drop_eyelids: bool = False) -> int:
    """Key a FlameSequence onto the rig from `frame_start` (default: the sequence's own); returns the frame
    count. Raises ValueError when the rig cannot represent it (see flame_pack.sequence_to_rig_values)."""
    _check_rig(obj)
    settings = obj.keyface
    values = sequence_to_rig_values(sequence, len(settings.shape), len(settings.expression), settings.has_eyelids,
                                    drop_eyelids=drop_eyelids)
    keyframe_values(obj, values, sequence.frame_start if frame_start is None else frame_start)
    return len(sequence)


def load_sequence_file(path: str | Path) -> FlameSequence:
    """A Keyface FlameSequence file on this machine (.npz or .json, shared_proto.sequence_io)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return load_sequence_json(path)
    if path.suffix.lower() == ".npz":
        return load_sequence_npz(path)
    raise ValueError(f"{path}: a FlameSequence file ends in .npz or .json")


def export_sequence(obj: bpy.types.Object, path: str | Path, frame_start: int, frame_end: int) -> Path:
    """Write the rig's parameters for [frame_start, frame_end] as .npz (VHAP keys) or .json, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".json"):
        raise ValueError(f"{path}: export to a .npz or .json file")
    sequence = rig_sequence(obj, frame_start, frame_end)
    return save_sequence_json(sequence, path) if suffix == ".json" else save_sequence_npz(sequence, path)
