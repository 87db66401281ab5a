"""`obj.keyface`: the FLAME parameters of a Keyface rig (armature object), keyframeable and driving the mesh.

Shape, expression and eyelid values, and the translation, live here; the global, neck, jaw and eye rotations
are the control bones' quaternions (see flame_pack). Drivers read these values, so playback is live.
"""

import bpy

from .flame_pack import MAX_COEFFICIENT


class KeyfaceCoefficient(bpy.types.PropertyGroup):
    """One shape or expression component: `name` is the component's name, `value` its coefficient."""

    value: bpy.props.FloatProperty(name="Value", default=0.0, min=-MAX_COEFFICIENT, max=MAX_COEFFICIENT,
                                   soft_min=-3.0, soft_max=3.0, precision=3,
                                   description="Coefficient (about one standard deviation per unit)")


class KeyfaceRig(bpy.types.PropertyGroup):
    """FLAME parameters and metadata of a Keyface rig (`object.keyface`)."""

    is_rig: bpy.props.BoolProperty(name="Keyface Rig", default=False, options={"HIDDEN"})
    head: bpy.props.StringProperty(name="Head", default="", description="The backend head this rig was built from")
    mesh: bpy.props.PointerProperty(name="Mesh", type=bpy.types.Object, description="The rig's head mesh")
    has_eyelids: bpy.props.BoolProperty(name="Has Eyelids", default=False, options={"HIDDEN"})
    shape: bpy.props.CollectionProperty(type=KeyfaceCoefficient, name="Shape")
    expression: bpy.props.CollectionProperty(type=KeyfaceCoefficient, name="Expression")
    eyelids: bpy.props.FloatVectorProperty(name="Eyelids", size=2, default=(0.0, 0.0), min=-MAX_COEFFICIENT,
                                           max=MAX_COEFFICIENT, soft_min=0.0, soft_max=1.0,
                                           description="Left and right eyelid closure (1 closes the eye)")
    translation: bpy.props.FloatVectorProperty(name="Translation", size=3, subtype="TRANSLATION", unit="LENGTH",
                                               default=(0.0, 0.0, 0.0), min=-1000.0, max=1000.0,
                                               description="FLAME translation in metres (FLAME axes: y up)")
    show: bpy.props.EnumProperty(name="Show", items=(("SHAPE", "Shape", "Identity components"),
                                                      ("EXPRESSION", "Expression", "Expression components")),
                                 default="EXPRESSION")
    filter: bpy.props.StringProperty(name="Filter", default="", options={"TEXTEDIT_UPDATE"},
                                     description="Show only components whose name contains this")


CLASSES = (KeyfaceCoefficient, KeyfaceRig)


def register_properties() -> None:
    bpy.types.Object.keyface = bpy.props.PointerProperty(type=KeyfaceRig)


def unregister_properties() -> None:
    del bpy.types.Object.keyface
