"""Build the FLAME head rig in Blender from a `head_model` result: mesh, armature, shape keys, vertex groups,
drivers. The maths is in flame_pack (control bones rotate, deform bones carry -ΔJ, see its docstring).

Layout: an armature object (`obj.keyface` holds the parameters) rotated +90° about X so FLAME's +Y up stands
up in Blender; everything inside it is in FLAME coordinates. The mesh is its child with an identity parent
inverse, so evaluated mesh vertices are in armature space, in FLAME units.

Drivers, all accepted by Blender's simple expression evaluator (no "Auto Run Scripts" needed):
    shape keys `shape.*`, `expression.*`, `eyelid.*`  <- obj.keyface values (AVERAGE of one variable)
    shape keys `pose.<bone>.<r><c>`                   <- (R - I)[r][c] of the bone's normalised quaternion
    mesh object `_kf_dJ_<bone>_<axis>_<i>`            <- partial sums of ΔJ (hidden custom properties)
    control bone location                            <- SUM of the partials (+ translation for the root)
    deform bone location                             <- minus the control bone's ΔJ
Every driver F-curve carries an identity Generator modifier: without keys or modifiers, Blender 5.0 writes
positive driver values below 1e-4 as 0 (measured), which would cost up to 1e-4 m of joint offset.

Setting `obj.keyface` values from Python does not tag the object for re-evaluation: call `rig.update_tag()`
(the operators do; keyframe playback does it by itself).
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from . import flame_pack
from .flame_pack import AXES, BONE_NAMES, DEFORM_PREFIX, MAX_COEFFICIENT, RigData

BONE_LENGTH_FRACTION = 0.08
"""Bone length as a fraction of the head's height."""
PARTIAL_PREFIX = "_kf_dJ"
"""Mesh-object custom properties holding ΔJ partial sums (a leading underscore hides them in the UI)."""


def build_rig(context: bpy.types.Context, data: RigData, name: str = "Keyface Head") -> bpy.types.Object:
    """Create the rig in the active collection and return its armature object."""
    collection = context.collection or context.scene.collection
    armature = bpy.data.armatures.new(name)
    rig = bpy.data.objects.new(name, armature)
    collection.objects.link(rig)
    rig.rotation_mode = "XYZ"
    rig.rotation_euler = (math.pi / 2, 0.0, 0.0)
    _build_bones(context, rig, data)
    mesh_object = _build_mesh(collection, rig, data, f"{name} Mesh")

    settings = rig.keyface
    settings.is_rig, settings.head, settings.mesh = True, data.head, mesh_object
    settings.has_eyelids = data.eyelids is not None
    for items, names in ((settings.shape, data.shape_names), (settings.expression, data.expression_names)):
        items.clear()
        for component in names:
            items.add().name = component

    _drive_blendshapes(rig, mesh_object, data)
    _drive_correctives(rig, mesh_object)
    _drive_joints(rig, mesh_object, data)
    context.view_layer.update()
    return rig


def _build_bones(context: bpy.types.Context, rig: bpy.types.Object, data: RigData) -> None:
    joints = data.rest_joints  # [5, 3]
    height = float(np.ptp(data.template[:, 1])) or 1.0
    length = BONE_LENGTH_FRACTION * height
    armature = rig.data
    previous = context.view_layer.objects.active
    context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bones = armature.edit_bones
        for j, name in enumerate(BONE_NAMES):
            for bone_name, deform in ((name, False), (DEFORM_PREFIX + name, True)):
                bone = bones.new(bone_name)
                bone.head = joints[j]
                bone.tail = joints[j] + np.array([0.0, length * (0.5 if deform else 1.0), 0.0])
                bone.roll = 0.0
                bone.use_deform = deform
                bone.use_connect = False
            bones[DEFORM_PREFIX + name].parent = bones[name]
            if data.parents[j] >= 0:
                bones[name].parent = bones[DEFORM_PREFIX + BONE_NAMES[data.parents[j]]]
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        context.view_layer.objects.active = previous
    hidden = armature.collections.new("Deform")
    hidden.is_visible = False
    for j, name in enumerate(BONE_NAMES):
        hidden.assign(armature.bones[DEFORM_PREFIX + name])
        for bone_name in (name, DEFORM_PREFIX + name):
            pose_bone = rig.pose.bones[bone_name]
            pose_bone.rotation_mode = "QUATERNION"
            pose_bone.lock_location = (True, True, True)
            pose_bone.lock_scale = (True, True, True)
        rig.pose.bones[DEFORM_PREFIX + name].lock_rotation = (True, True, True)
        rig.pose.bones[DEFORM_PREFIX + name].lock_rotation_w = True


def _build_mesh(collection: bpy.types.Collection, rig: bpy.types.Object, data: RigData,
                name: str) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(data.template.tolist(), [], data.faces.tolist())
    mesh.update()
    mesh_object = bpy.data.objects.new(name, mesh)
    collection.objects.link(mesh_object)
    mesh_object.parent = rig
    mesh_object.parent_type = "OBJECT"
    mesh_object.matrix_parent_inverse.identity()

    for j, bone in enumerate(BONE_NAMES):
        group = mesh_object.vertex_groups.new(name=DEFORM_PREFIX + bone)
        weights = data.lbs_weights[:, j]
        for vertex in np.flatnonzero(weights):
            group.add([int(vertex)], float(weights[vertex]), "REPLACE")
    modifier = mesh_object.modifiers.new("Keyface Armature", "ARMATURE")
    modifier.object = rig
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False

    template = data.template.astype(np.float32)
    mesh_object.shape_key_add(name="Basis", from_mix=False)
    keys = [(f"shape.{n}", data.shapedirs[:, :, i]) for i, n in enumerate(data.shape_names)]
    keys += [(f"expression.{n}", data.exprdirs[:, :, i]) for i, n in enumerate(data.expression_names)]
    if data.eyelids is not None:
        keys += [(f"eyelid.{side}", data.eyelids[i]) for i, side in enumerate("LR")]
    for p in range(data.posedirs.shape[0]):
        bone, row, column = BONE_NAMES[1 + p // 9], (p % 9) // 3, p % 3
        keys.append((f"pose.{bone}.{row}{column}", data.posedirs[p]))
    for key_name, offsets in keys:
        key = mesh_object.shape_key_add(name=key_name, from_mix=False)
        key.slider_min, key.slider_max = -MAX_COEFFICIENT, MAX_COEFFICIENT
        key.data.foreach_set("co", (template + offsets.astype(np.float32)).ravel())
    return mesh_object


def _variable(driver: bpy.types.Driver, name: str, target: bpy.types.ID, path: str,
              id_type: str = "OBJECT") -> None:
    variable = driver.variables.new()
    variable.name = name
    variable.type = "SINGLE_PROP"
    variable.targets[0].id_type = id_type
    variable.targets[0].id = target
    variable.targets[0].data_path = path


def _driver(owner: bpy.types.ID, path: str, index: int = -1, kind: str = "SCRIPTED") -> bpy.types.Driver:
    """A new driver on `owner.path[index]` whose F-curve passes its value through an identity generator
    (Blender 5.0 writes positive driver values below 1e-4 as 0 from an F-curve without keys or modifiers)."""
    curve = owner.driver_add(path, index) if index >= 0 else owner.driver_add(path)
    if not curve.modifiers:
        curve.modifiers.new("GENERATOR")  # y = 0 + 1 x
    driver = curve.driver
    driver.type = kind
    return driver


def _drive_blendshapes(rig: bpy.types.Object, mesh_object: bpy.types.Object, data: RigData) -> None:
    blocks = mesh_object.data.shape_keys.key_blocks
    sources = [(f"shape.{n}", f"keyface.shape[{i}].value") for i, n in enumerate(data.shape_names)]
    sources += [(f"expression.{n}", f"keyface.expression[{i}].value") for i, n in enumerate(data.expression_names)]
    if data.eyelids is not None:
        sources += [(f"eyelid.{side}", f"keyface.eyelids[{i}]") for i, side in enumerate("LR")]
    for key_name, path in sources:
        driver = _driver(blocks[key_name], "value", kind="AVERAGE")
        _variable(driver, "v", rig, path)


def _drive_correctives(rig: bpy.types.Object, mesh_object: bpy.types.Object) -> None:
    blocks = mesh_object.data.shape_keys.key_blocks
    for bone in BONE_NAMES[1:]:
        for row in range(3):
            for column in range(3):
                driver = _driver(blocks[f"pose.{bone}.{row}{column}"], "value")
                for i, component in enumerate("wxyz"):
                    _variable(driver, component, rig, f'pose.bones["{bone}"].rotation_quaternion[{i}]')
                driver.expression = flame_pack.corrective_expression(row, column)


def _coefficient_paths(data: RigData) -> list[str]:
    """Data path on the rig object of each coefficient, in flame_pack's coefficient order."""
    paths = [f"keyface.shape[{i}].value" for i in range(data.n_shape)]
    paths += [f"keyface.expression[{i}].value" for i in range(data.n_expression)]
    if data.eyelids is not None:
        paths += [f"keyface.eyelids[{i}]" for i in range(2)]
    return paths


def _drive_joints(rig: bpy.types.Object, holder: bpy.types.Object, data: RigData) -> None:
    table = data.joint_offset_table()  # [5, 3, K]
    paths = _coefficient_paths(data)
    for j, bone in enumerate(BONE_NAMES):
        for axis in range(3):
            partials = flame_pack.partial_sums(table[j, axis])
            for p, (expression, used) in enumerate(partials):
                prop = f"{PARTIAL_PREFIX}_{bone}_{AXES[axis]}_{p}"
                holder[prop] = 0.0
                driver = _driver(holder, f'["{prop}"]')
                for v, k in enumerate(used):
                    _variable(driver, f"a{v}", rig, paths[k])
                driver.expression = expression
            control = _driver(rig, f'pose.bones["{bone}"].location', axis, kind="SUM")
            for p in range(len(partials)):
                _variable(control, f"p{p}", holder, f'["{PARTIAL_PREFIX}_{bone}_{AXES[axis]}_{p}"]')
            if j == 0:
                _variable(control, "t", rig, f"keyface.translation[{axis}]")
            deform = _driver(rig, f'pose.bones["{DEFORM_PREFIX}{bone}"].location', axis)
            _variable(deform, "l", rig, f'pose.bones["{bone}"].location[{axis}]')
            if j == 0:
                _variable(deform, "t", rig, f"keyface.translation[{axis}]")
                deform.expression = "t-l"
            else:
                deform.expression = "-l"
