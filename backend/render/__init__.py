"""Rasterizers and geometry maps.

Mesh path (plain PyTorch, any device): `rasterize_mesh` -> `MeshFragments` -> maps.

    fragments = rasterize_mesh_cameras(vertices, faces, cameras)   # [B, V, 3] world, one Camera per frame
    depth = depth_map(fragments)                                   # [B, H, W, 3]
    normals = normal_map(fragments, faces)                         # [B, H, W, 3]
    uv = uv_map(fragments, uvs, uv_faces)                          # [B, H, W, 2]
    render = render_map(fragments, faces, sample_texture(texture, uv), sh_coefficients)

Conventions: OpenCV cameras (x right, y down, z forward; K in pixels), pixel (i, j) sampled at
(j + 0.5, i + 0.5), row 0 at the top; maps are channels-last [B, H, W, C] with a zero background.
"""

from ._checks import describe
from .cameras import CameraTensors, camera_tensors, world_to_camera_points
from .gaussian_rasterizer import GaussianRender, rasterize_gaussians
from .mesh_attributes import interpolate, sample_texture, vertex_normals
from .mesh_maps import camera_normal_map, depth_map, normal_map, render_map, uv_map
from .mesh_rasterizer import MeshFragments, rasterize_mesh, rasterize_mesh_cameras
from .sh import SH_CONSTANTS, frontal_sh, sh_basis, sh_shading

__all__ = [
    "CameraTensors",
    "GaussianRender",
    "MeshFragments",
    "SH_CONSTANTS",
    "camera_normal_map",
    "camera_tensors",
    "depth_map",
    "describe",
    "frontal_sh",
    "interpolate",
    "normal_map",
    "rasterize_gaussians",
    "rasterize_mesh",
    "rasterize_mesh_cameras",
    "render_map",
    "sample_texture",
    "sh_basis",
    "sh_shading",
    "uv_map",
    "vertex_normals",
    "world_to_camera_points",
]
