"""Gaussians in Blender: a vertex-only mesh carrying the 3DGS attributes, previewed as splats.

The object's mesh has one vertex per Gaussian (at its centre) and these point attributes:
`colour` (FLOAT_COLOR: the SH DC colour clamped to [0, 1] and sRGB-decoded to scene-linear, so the Standard view
transform shows the colours a 3DGS renderer writes; alpha = opacity; the active colour attribute, so Solid shading
with 'Attribute' colour shows it), `opacity` (FLOAT), `scale` (FLOAT_VECTOR, linear standard deviations),
`rotation` (QUATERNION, wxyz), `sh_0` (FLOAT_VECTOR: the stored f_dc) and `sh_1` .. `sh_{K-1}` (FLOAT_VECTOR per
higher SH coefficient, RGB) when the file has them.

The preview is a Geometry Nodes modifier (node group `Keyface Splat Preview`, shared by every imported splat
object): an icosphere instanced on every point, rotated by `rotation` and scaled by `scale` times the modifier's
`Size` input (in standard deviations), realised with only `colour` and `opacity` (the other attributes are removed
first: realising multiplies them by 13) so they reach the surface; the points themselves are joined in too, which
keeps `colour` the active colour attribute of the result. The material `Keyface Splat` emits `colour` mixed with
transparency by `opacity`. It shows in Material Preview and Rendered shading and renders in EEVEE and Cycles.
Built with the Python API only, using API that exists from Blender 4.2 to 5.x (tested with bpy 5.0.1).
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from .splat_ply import SplatCloud

NODE_GROUP_NAME = "Keyface Splat Preview"
MATERIAL_NAME = "Keyface Splat"
MODIFIER_NAME = "Keyface Splats"
SIZE_INPUT = "Size"
ICOSPHERE_SUBDIVISIONS = 1
"""Detail of each splat's ellipsoid (1: 12 vertices, 20 triangles)."""
UP_AXIS_ROTATION_X = {"Y": math.pi / 2, "-Y": -math.pi / 2, "Z": 0.0}
"""Object rotation about X that stands a file whose up axis is the key upright in Blender (Z up).
'Y' is Keyface's own exports (FLAME space, like the rig), '-Y' most 3DGS captures (OpenCV camera world)."""


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> scene-linear (the IEC 61966-2-1 curve), any shape."""
    values = np.asarray(values, dtype=np.float32)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _add_attribute(mesh: bpy.types.Mesh, name: str, data_type: str, values: np.ndarray) -> None:
    """Point attribute `name` filled with `values` ([N] or [N, C] float32)."""
    key = {"FLOAT": "value", "FLOAT_VECTOR": "vector", "FLOAT_COLOR": "color", "QUATERNION": "value"}[data_type]
    attribute = mesh.attributes.new(name, data_type, "POINT")
    attribute.data.foreach_set(key, np.ascontiguousarray(values, dtype=np.float32).ravel())


def build_splat_mesh(cloud: SplatCloud, name: str) -> bpy.types.Mesh:
    """A vertex-only mesh holding `cloud` (positions as vertices, the rest as point attributes)."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(cloud.count)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(cloud.positions, dtype=np.float32).ravel())
    rgb = srgb_to_linear(np.clip(cloud.colours, 0.0, 1.0))  # [N, 3]; 3DGS colours are display (sRGB) values
    colour = np.concatenate([rgb, cloud.opacity[:, None]], axis=1)  # [N, 4]
    _add_attribute(mesh, "colour", "FLOAT_COLOR", colour)
    _add_attribute(mesh, "opacity", "FLOAT", cloud.opacity)
    _add_attribute(mesh, "scale", "FLOAT_VECTOR", cloud.scales)
    _add_attribute(mesh, "rotation", "QUATERNION", cloud.rotations)
    _add_attribute(mesh, "sh_0", "FLOAT_VECTOR", cloud.sh_dc)
    if cloud.f_rest is not None:
        for k in range(cloud.f_rest.shape[1]):
            _add_attribute(mesh, f"sh_{k + 1}", "FLOAT_VECTOR", cloud.f_rest[:, k])
    mesh.color_attributes.active_color = mesh.color_attributes["colour"]
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.update()
    return mesh


def splat_material() -> bpy.types.Material:
    """The shared splat material (created once): emission of `colour`, transparent by `opacity`."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        return material
    material = bpy.data.materials.new(MATERIAL_NAME)
    if hasattr(material, "use_nodes") and not material.use_nodes:  # Blender < 5 starts without nodes
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    colour = nodes.new("ShaderNodeAttribute")
    colour.attribute_type, colour.attribute_name, colour.location = "GEOMETRY", "colour", (-600, 100)
    opacity = nodes.new("ShaderNodeAttribute")
    opacity.attribute_type, opacity.attribute_name, opacity.location = "GEOMETRY", "opacity", (-600, 350)
    emission = nodes.new("ShaderNodeEmission")
    emission.location = (-300, 0)
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    transparent.location = (-300, 200)
    mix = nodes.new("ShaderNodeMixShader")
    mix.location = (0, 150)
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (250, 150)
    links.new(colour.outputs["Color"], emission.inputs["Color"])
    links.new(opacity.outputs["Fac"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    material.diffuse_color = (0.8, 0.6, 0.5, 1.0)  # Solid shading with 'Material' colour
    return material


def splat_node_group() -> bpy.types.NodeTree:
    """The shared Geometry Nodes preview (created once): oriented, scaled ellipsoids on every point."""
    group = bpy.data.node_groups.get(NODE_GROUP_NAME)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        return group
    group = bpy.data.node_groups.new(NODE_GROUP_NAME, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = group.interface.new_socket(SIZE_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = 1.5, 0.0, 10.0
    size.description = "Ellipsoid radius in standard deviations of each Gaussian"
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    if hasattr(group, "is_modifier"):
        group.is_modifier = True
    nodes, links = group.nodes, group.links
    source = nodes.new("NodeGroupInput")
    source.location = (-800, 0)
    sphere = nodes.new("GeometryNodeMeshIcoSphere")
    sphere.inputs["Radius"].default_value = 1.0
    sphere.inputs["Subdivisions"].default_value = ICOSPHERE_SUBDIVISIONS
    sphere.location = (-550, -150)
    rotation = nodes.new("GeometryNodeInputNamedAttribute")
    rotation.data_type, rotation.location = "QUATERNION", (-550, -350)
    rotation.inputs["Name"].default_value = "rotation"
    scale = nodes.new("GeometryNodeInputNamedAttribute")
    scale.data_type, scale.location = "FLOAT_VECTOR", (-550, -500)
    scale.inputs["Name"].default_value = "scale"
    sized = nodes.new("ShaderNodeVectorMath")
    sized.operation, sized.location = "SCALE", (-300, -500)
    instance = nodes.new("GeometryNodeInstanceOnPoints")
    instance.location = (-50, 0)
    join = nodes.new("GeometryNodeJoinGeometry")
    join.location = (150, 100)
    links.new(source.outputs["Geometry"], instance.inputs["Points"])
    links.new(sphere.outputs["Mesh"], instance.inputs["Instance"])
    links.new(rotation.outputs["Attribute"], instance.inputs["Rotation"])
    links.new(scale.outputs["Attribute"], sized.inputs[0])
    links.new(source.outputs[SIZE_INPUT], sized.inputs["Scale"])
    links.new(sized.outputs["Vector"], instance.inputs["Scale"])
    # The input points (loose vertices: never drawn in Object Mode nor rendered) are joined first, so the result
    # keeps their active colour attribute and Solid shading with 'Attribute' colour shows the splat colours.
    for first, second in ((instance, source), (source, instance)):  # the link order of a multi-input socket varies
        links.new(first.outputs[0], join.inputs["Geometry"])
        links.new(second.outputs[0], join.inputs["Geometry"])
        if join.inputs["Geometry"].links[0].from_node == source:
            break
        for link in list(join.inputs["Geometry"].links):
            links.remove(link)
    # Only `colour` and `opacity` are needed on the surface: drop the rest before realising (x13 vertices).
    stripped = join.outputs["Geometry"]
    for i, name in enumerate(("scale", "rotation", *(f"sh_{k}" for k in range(16)))):
        remove = nodes.new("GeometryNodeRemoveAttribute")
        remove.inputs["Name"].default_value, remove.location, remove.hide = name, (350 + 30 * i, 100 - 30 * i), True
        links.new(stripped, remove.inputs["Geometry"])
        stripped = remove.outputs["Geometry"]
    realize = nodes.new("GeometryNodeRealizeInstances")
    realize.location = (950, 0)
    material = nodes.new("GeometryNodeSetMaterial")
    material.inputs["Material"].default_value = splat_material()
    material.location = (1150, 0)
    sink = nodes.new("NodeGroupOutput")
    sink.location = (1350, 0)
    links.new(stripped, realize.inputs["Geometry"])
    links.new(realize.outputs["Geometry"], material.inputs["Geometry"])
    links.new(material.outputs["Geometry"], sink.inputs["Geometry"])
    return group


def add_splat_object(context: bpy.types.Context, cloud: SplatCloud, name: str, *, source: str = "",
                     up_axis: str = "Y", size: float = 1.5) -> bpy.types.Object:
    """Link a new splat object for `cloud` into the active collection, select it and make it active.

    Args:
        context: the operator's context.
        cloud: the decoded Gaussians.
        name: object and mesh name.
        source: where the Gaussians came from (stored as the object's `keyface_source`).
        up_axis: the file's up axis, one of UP_AXIS_ROTATION_X ('Y' for Keyface exports).
        size: ellipsoid radius in standard deviations (the modifier's `Size`).
    """
    if up_axis not in UP_AXIS_ROTATION_X:
        raise ValueError(f"up_axis must be one of {sorted(UP_AXIS_ROTATION_X)}, got {up_axis!r}")
    if not size >= 0:
        raise ValueError(f"size must be >= 0, got {size}")
    obj = bpy.data.objects.new(name, build_splat_mesh(cloud, name))
    obj.rotation_euler = (UP_AXIS_ROTATION_X[up_axis], 0.0, 0.0)
    obj.data.materials.append(splat_material())
    obj["keyface_source"] = source
    obj["keyface_gaussians"] = cloud.count
    obj["keyface_gaussians_in_file"] = cloud.total
    obj["keyface_sh_degree"] = cloud.sh_degree
    modifier = obj.modifiers.new(MODIFIER_NAME, "NODES")
    modifier.node_group = splat_node_group()
    modifier[modifier.node_group.interface.items_tree[SIZE_INPUT].identifier] = float(size)
    context.collection.objects.link(obj)
    for other in context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj
