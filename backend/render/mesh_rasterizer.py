"""Triangle-mesh rasterization in plain, device-agnostic PyTorch: per pixel, the nearest face, its
perspective-correct barycentrics and the camera-space depth, batched over frames.

Conventions: OpenCV cameras (see `cameras.py`); pixel (i, j) is sampled at (j + 0.5, i + 0.5); row 0 is the
top. Both sides of every face are rendered (open meshes are fine); faces seen exactly edge-on cover nothing.
Faces are clipped exactly at the near and far planes (per pixel, see below). The nearest fragment wins; the
z-test compares float32 depths and gives ties to the lower face index, so results are deterministic.

How it works:

1. Per face, in camera space (vertices X0, X1, X2): the plane normal n = (X1 - X0) x (X2 - X0), h = X0 . n, and
   the three planes through the camera centre and an edge, c_i = X_j x X_k. The ray through a pixel, with
   direction D = K^-1 (x, y, 1), hits the face in front of the camera iff sign(h) c_i . D >= 0 for every i; it
   hits it at depth z = h / (n . D). This is 2D homogeneous rasterization (Olano & Greer 1997): a face crossing
   the near plane needs no geometric clipping; the per-pixel test near <= z <= far clips it exactly.
   Each c_i is computed from the edge's vertex with the lower index, so the two faces sharing an edge get
   exactly opposite values and a pixel centre on the edge is never dropped by both (no cracks).
2. Each face's pixel bounding box (of its part in front of the near plane) goes into a bucket by the window
   that holds it, with sides from 1, 2, 3, 4, 6, 8, 12, ... (at most 1.5x the box side). Per bucket, chunks of
   faces x window pixels are tested in single elementwise tensor ops (K^-1 folded into the planes, so each
   test is alpha x + beta y + gamma >= 0), and the key (float32 depth bits << 32 | face index) of every hit is
   scatter-min'ed into a z-buffer.
3. The winning face of each pixel is evaluated once more, with autograd, for barycentrics and depth, so
   attributes interpolated with `bary` are differentiable w.r.t. vertex positions (face selection is not).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor

from shared_proto.types import Camera

from ._checks import checked_faces, describe
from .cameras import camera_tensors, world_to_camera_points

_CANDIDATES_PER_CHUNK = 1 << 20
"""Pixel candidates tested per tensor op (bounds the memory of the binning pass)."""
_BOX_PAD = 1.0 / 256.0
"""Pixels by which face bounding boxes grow, so rounding in the projection never drops an edge pixel."""
_EDGE_ON = 1e-6
"""Faces with |cos(view ray, plane normal)| below this are seen edge-on (zero screen area) and skipped."""
_BACKGROUND_KEY = torch.iinfo(torch.int64).max


@dataclasses.dataclass(frozen=True, eq=False)
class MeshFragments:
    """What `rasterize_mesh` found at every pixel.

    Background pixels have `face_id` -1 and zero `bary` and `depth`.
    """

    face_id: Tensor
    """[B, H, W] int64 index into `faces` of the nearest face, -1 for background."""
    bary: Tensor
    """[B, H, W, 3] perspective-correct barycentric weights of the face's three vertices (sum 1)."""
    depth: Tensor
    """[B, H, W] camera-space z of the visible surface (distance along the optical axis)."""
    vertices_camera: Tensor
    """[B, V, 3] the mesh in camera space (OpenCV axes); the maps use it for normals and facing."""

    @property
    def mask(self) -> Tensor:
        """[B, H, W] bool, True where a face covers the pixel."""
        return self.face_id >= 0


def rasterize_mesh(
    vertices: Tensor,
    faces: Tensor,
    K: Tensor,
    world_to_camera: Tensor,
    width: int,
    height: int,
    near: float | Tensor = 0.01,
    far: float | Tensor = 100.0,
) -> MeshFragments:
    """Rasterize a triangle mesh seen by one camera per frame.

    Any batched argument may have batch size 1 (or none), and is then shared by all B frames: one mesh seen
    by B cameras, or B meshes seen by one camera.

    Args:
        vertices: [B, V, 3] or [V, 3] world-space positions (float).
        faces: [F, 3] integer vertex indices.
        K: [B, 3, 3] or [3, 3] intrinsics in pixels.
        world_to_camera: [B, 4, 4] or [4, 4] rigid transforms.
        width: image width W in pixels.
        height: image height H in pixels.
        near: near clip distance (camera z > 0), a number or a [B] tensor.
        far: far clip distance (> near), a number or a [B] tensor.

    Returns:
        `MeshFragments` with [B, H, W] maps on `vertices.device`, float32 (float64 for float64 vertices).
    """
    vertices, faces, K, world_to_camera, near, far = _validated(
        vertices, faces, K, world_to_camera, width, height, near, far)
    verts_cam = world_to_camera_points(vertices, world_to_camera)  # [B, V, 3]
    face_verts = verts_cam[:, faces]  # [B, F, 3, 3]
    k_inv = torch.linalg.inv(K)  # [B, 3, 3]
    with torch.no_grad():
        face_id = _zbuffer(face_verts.detach(), faces, K, k_inv, width, height, near, far)
    bary, depth = _resolve(face_verts, face_id, k_inv)
    return MeshFragments(face_id=face_id, bary=bary, depth=depth, vertices_camera=verts_cam)


def rasterize_mesh_cameras(
    vertices: Tensor, faces: Tensor, cameras: Camera | Sequence[Camera]
) -> MeshFragments:
    """`rasterize_mesh` with `shared_proto` cameras: one per frame, or one for every frame.

    Args:
        vertices: [B, V, 3] or [V, 3] world-space positions.
        faces: [F, 3] integer vertex indices.
        cameras: a `Camera` or a sequence of B (or 1) cameras sharing one image size.
    """
    if not isinstance(vertices, Tensor):
        raise TypeError(f"vertices must be a torch.Tensor, got {describe(vertices)}")
    dtype = torch.promote_types(vertices.dtype, torch.float32) if vertices.is_floating_point() else torch.float32
    return rasterize_mesh(vertices, faces, *camera_tensors(cameras, device=vertices.device, dtype=dtype))


def _validated(vertices, faces, K, world_to_camera, width, height, near, far):
    """Check types, shapes and values; return everything batched to one B on vertices' device and dtype."""
    for name, value in (("vertices", vertices), ("K", K), ("world_to_camera", world_to_camera)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {describe(value)}")
    if not vertices.is_floating_point() or vertices.ndim not in (2, 3) or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a float tensor [B, V, 3] or [V, 3], got {describe(vertices)}")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    device = vertices.device
    dtype = torch.promote_types(vertices.dtype, torch.float32)
    vertices = vertices.to(dtype)
    if vertices.ndim == 2:
        vertices = vertices[None]
    if not bool(torch.isfinite(vertices).all()):
        bad = (~torch.isfinite(vertices)).nonzero()[:3].tolist()
        raise ValueError(f"vertices must be finite; non-finite at [b, v, xyz] {bad}")
    faces = checked_faces("faces", faces, vertices.shape[1], device)
    K = _batched("K", K, (3, 3), device, dtype)
    world_to_camera = _batched("world_to_camera", world_to_camera, (4, 4), device, dtype)
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any() or (K[:, 1, 0] != 0).any() \
            or (K[:, 2] != K.new_tensor([0.0, 0.0, 1.0])).any():
        raise ValueError(f"K must be upper triangular with fx, fy > 0 and last row [0, 0, 1], got {K.tolist()}")
    near = _clip_distances("near", near, device, dtype)
    far = _clip_distances("far", far, device, dtype)
    sizes = {vertices.shape[0], K.shape[0], world_to_camera.shape[0], near.shape[0], far.shape[0]}
    batch = max(sizes)
    if not sizes <= {1, batch}:
        raise ValueError(f"batch sizes must be 1 or one common B; got vertices {vertices.shape[0]}, K {K.shape[0]}, "
                         f"world_to_camera {world_to_camera.shape[0]}, near {near.shape[0]}, far {far.shape[0]}")
    near, far = near.expand(batch), far.expand(batch)
    if not bool((near > 0).all() and (far > near).all()):
        raise ValueError(f"clip ranges must satisfy 0 < near < far, got near={near.tolist()} far={far.tolist()}")
    return (vertices.expand(batch, -1, -1), faces, K.expand(batch, -1, -1),
            world_to_camera.expand(batch, -1, -1), near, far)


def _batched(name: str, value: Tensor, shape: tuple[int, int], device, dtype) -> Tensor:
    """[*shape] or [B, *shape] -> finite [B, *shape] on device/dtype."""
    if value.ndim not in (2, 3) or tuple(value.shape[-2:]) != shape:
        want = list(shape)
        raise ValueError(f"{name} must have shape {want} or [B, {want[0]}, {want[1]}], got {list(value.shape)}")
    value = value.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got {value.tolist()}")
    return value if value.ndim == 3 else value[None]


def _clip_distances(name: str, value: float | Tensor, device, dtype) -> Tensor:
    """A number or a [B] tensor -> finite [1] or [B] tensor."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    tensor = torch.as_tensor(value, device=device, dtype=dtype)
    if tensor.ndim > 1 or tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be a finite number or a [B] tensor, got {tensor.tolist()}")
    return tensor.reshape(-1)


def _face_planes(face_verts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-face quantities for ray casting (differentiable).

    Args:
        face_verts: [B, F, 3, 3] camera-space vertices of each face.

    Returns:
        n: [B, F, 3] plane normal (X1 - X0) x (X2 - X0).
        a1, a2: [B, F, 3] such that the barycentrics of vertices 1, 2 along the ray D are (a . D) / (n . D).
        h: [B, F] X0 . n, so the hit depth is h / (n . D).
    """
    x0, x1, x2 = face_verts.unbind(2)  # 3 x [B, F, 3]
    e1, e2 = x1 - x0, x2 - x0  # [B, F, 3]
    n = torch.linalg.cross(e1, e2)  # [B, F, 3]
    a1 = torch.linalg.cross(e2, x0)  # [B, F, 3]
    a2 = torch.linalg.cross(x0, e1)  # [B, F, 3]
    h = (x0 * n).sum(-1)  # [B, F]
    return n, a1, a2, h


def _edge_planes(face_verts: Tensor, faces: Tensor) -> Tensor:
    """[B, F, 3, 3] c_i = X_j x X_k for (i, j, k) cyclic, computed from the lower-index end of each edge."""
    j = faces.new_tensor([1, 2, 0])
    k = faces.new_tensor([2, 0, 1])
    flip = faces[:, j] > faces[:, k]  # [F, 3]
    first = torch.where(flip, k, j)  # [F, 3] local vertex slot of the edge's lower-index end
    second = torch.where(flip, j, k)  # [F, 3]
    batch = face_verts.shape[0]
    x_first = face_verts.gather(2, first[None, :, :, None].expand(batch, -1, -1, 3))  # [B, F, 3, 3]
    x_second = face_verts.gather(2, second[None, :, :, None].expand(batch, -1, -1, 3))  # [B, F, 3, 3]
    planes = torch.linalg.cross(x_first, x_second - x_first)  # [B, F, 3, 3]
    return torch.where(flip[None, :, :, None], -planes, planes)  # [B, F, 3, 3]


def _pixel_boxes(face_verts: Tensor, K: Tensor, near: Tensor, width: int, height: int) -> Tensor:
    """[B, F, 4] pixel bounds (col0, row0, col1, row1), inclusive, of each face's part in front of near.

    Empty boxes (col1 < col0 or row1 < row0) mean the face cannot cover a pixel centre.
    """
    near = near[:, None, None]  # [B, 1, 1]
    z = face_verts[..., 2]  # [B, F, 3]
    start, end = face_verts, face_verts.roll(-1, dims=2)  # [B, F, 3, 3] edges (0,1), (1,2), (2,0)
    z_start, z_end = z, z.roll(-1, dims=2)  # [B, F, 3]
    crosses = (z_start - near) * (z_end - near) < 0  # [B, F, 3]
    t = ((near - z_start) / torch.where(crosses, z_end - z_start, torch.ones_like(z)))[..., None]  # [B, F, 3, 1]
    on_near = start + t * (end - start)  # [B, F, 3, 3] where an edge meets the near plane
    points = torch.cat([face_verts, on_near], dim=2)  # [B, F, 6, 3]
    valid = torch.cat([z >= near, crosses], dim=2)  # [B, F, 6]
    depth = torch.where(valid, points[..., 2], torch.ones_like(points[..., 2]))  # [B, F, 6]
    pixels = points @ K[:, None].transpose(-1, -2)  # [B, F, 6, 3]
    uv = pixels[..., :2] / depth[..., None]  # [B, F, 6, 2]
    inf = torch.full_like(uv, float("inf"))
    low = torch.where(valid[..., None], uv, inf).amin(2)  # [B, F, 2]
    high = torch.where(valid[..., None], uv, -inf).amax(2)  # [B, F, 2]
    limit = uv.new_tensor([width, height])
    first = torch.ceil(low - 0.5 - _BOX_PAD).clamp(min=torch.zeros_like(limit), max=limit)  # [B, F, 2]
    last = torch.floor(high - 0.5 + _BOX_PAD).clamp(min=-torch.ones_like(limit), max=limit - 1)  # [B, F, 2]
    return torch.cat([first, last], dim=-1).long()  # [B, F, 4]


def _pixel_planes(planes: Tensor, k_inv: Tensor) -> Tensor:
    """Fold K^-1 into plane normals: c . D(x, y) = alpha x + beta y + gamma.

    Elementwise, so exactly opposite planes stay exactly opposite (watertightness depends on it).

    Args:
        planes: [B, F, 4, 3] normals c: the three edge planes and the face plane.
        k_inv: [B, 3, 3] inverse intrinsics (upper triangular).

    Returns:
        [B, F, 4, 3] (alpha, beta, gamma) in pixel coordinates.
    """
    k = k_inv[:, None, None]  # [B, 1, 1, 3, 3]
    cx, cy, cz = planes.unbind(-1)  # 3 x [B, F, 4]
    alpha = cx * k[..., 0, 0]
    beta = cx * k[..., 0, 1] + cy * k[..., 1, 1]
    gamma = cx * k[..., 0, 2] + cy * k[..., 1, 2] + cz
    return torch.stack([alpha, beta, gamma], dim=-1)  # [B, F, P, 3]


def _window_sides(limit: int, device: torch.device) -> Tensor:
    """[S] sorted window sides 1, 2, 3, 4, 6, 8, 12, ... up to the first one >= limit."""
    sides = sorted({m << k for k in range(limit.bit_length() + 1) for m in (2, 3)} | {1})
    return torch.tensor([side for side in sides if side < 2 * limit], device=device)


def _zbuffer(face_verts: Tensor, faces: Tensor, K: Tensor, k_inv: Tensor, width: int, height: int,
             near: Tensor, far: Tensor) -> Tensor:
    """[B, H, W] int64 index of the nearest face per pixel, -1 for background (no autograd)."""
    batch, num_faces = face_verts.shape[:2]
    device = face_verts.device
    zbuf = torch.full((batch * height * width,), _BACKGROUND_KEY, dtype=torch.long, device=device)
    if num_faces == 0:
        return zbuf.new_full((batch, height, width), -1)
    n, _, _, h = _face_planes(face_verts)
    edges = _edge_planes(face_verts, faces) * torch.sign(h)[..., None, None]  # [B, F, 3, 3]
    coefficients = _pixel_planes(torch.cat([edges, n[:, :, None]], dim=2), k_inv)  # [B, F, 4, 3]
    boxes = _pixel_boxes(face_verts, K, near, width, height)  # [B, F, 4]
    z = face_verts[..., 2]  # [B, F, 3]
    facing = h.abs() > _EDGE_ON * face_verts[:, :, 0].norm(dim=-1) * n.norm(dim=-1)  # [B, F]
    keep = (facing & (z.amax(-1) >= near[:, None]) & (z.amin(-1) <= far[:, None])
            & (boxes[..., 2] >= boxes[..., 0]) & (boxes[..., 3] >= boxes[..., 1]))  # [B, F]
    b, f = keep.nonzero(as_tuple=True)  # [N], [N]
    if b.numel() == 0:
        return zbuf.new_full((batch, height, width), -1)
    box = boxes[b, f]  # [N, 4]
    sides = _window_sides(max(width, height), device)  # [S]
    which_side = torch.searchsorted(sides, (box[:, 2:] - box[:, :2] + 1).contiguous())  # [N, 2] window >= box
    bucket = which_side[:, 0] * sides.numel() + which_side[:, 1]  # [N]
    order = torch.argsort(bucket, stable=True)  # [N]
    keys, counts = torch.unique_consecutive(bucket[order], return_counts=True)
    b, f, box = b[order], f[order], box[order]
    sorted_in = dict(coefficients=coefficients[b, f], h=h[b, f], near=near[b], far=far[b], f=f, b=b, box=box)
    side_list, start = sides.tolist(), 0
    for key, count in zip(keys.tolist(), counts.tolist()):
        window = (min(side_list[key // len(side_list)], width), min(side_list[key % len(side_list)], height))
        step = max(1, _CANDIDATES_PER_CHUNK // (window[0] * window[1]))
        for chunk in range(start, start + count, step):
            rows = slice(chunk, min(chunk + step, start + count))
            _test_candidates({name: value[rows] for name, value in sorted_in.items()}, window, width, height, zbuf)
        start += count
    face_id = torch.where(zbuf == _BACKGROUND_KEY, -1, zbuf & 0xFFFFFFFF)  # [B * H * W]
    return face_id.view(batch, height, width)


def _test_candidates(faces_in: dict[str, Tensor], window: tuple[int, int], width: int, height: int,
                     zbuf: Tensor) -> None:
    """Test n faces against a window of pixels over each one's box; scatter-min the hits' keys into zbuf.

    The window (at least the box's size) is shifted to lie inside the image; its pixels outside the face's box
    fail the edge or clip tests.
    """
    window_w, window_h = window
    coefficients = faces_in["coefficients"]  # [n, 4, 3]
    dtype = coefficients.dtype
    offsets = torch.arange(window_w * window_h, device=zbuf.device)  # [P]
    dx, dy = offsets % window_w, offsets // window_w  # [P]
    col0 = faces_in["box"][:, 0].clamp(max=width - window_w)  # [n]
    row0 = faces_in["box"][:, 1].clamp(max=height - window_h)  # [n]
    x = col0.to(dtype)[:, None] + (dx.to(dtype) + 0.5)  # [n, P] pixel-centre x, exact
    y = row0.to(dtype)[:, None] + (dy.to(dtype) + 0.5)  # [n, P]
    hit = None
    for i in range(3):
        inside = coefficients[:, i, :1] * x + coefficients[:, i, 1:2] * y + coefficients[:, i, 2:] >= 0  # [n, P]
        hit = inside if hit is None else hit & inside
    den = coefficients[:, 3, :1] * x + coefficients[:, 3, 1:2] * y + coefficients[:, 3, 2:]  # [n, P] n . D
    depth = faces_in["h"][:, None] / den  # [n, P]
    hit &= (depth >= faces_in["near"][:, None]) & (depth <= faces_in["far"][:, None])
    hits = hit.view(-1).nonzero().squeeze(1)  # [M] flat candidate indices
    face, offset = hits // offsets.numel(), hits % offsets.numel()  # [M]
    depth_bits = depth.view(-1)[hits].to(torch.float32).view(torch.int32).long()  # [M] monotonic for z > 0
    key = (depth_bits << 32) | faces_in["f"][face]  # [M]
    origin = (faces_in["b"] * height + row0) * width + col0  # [n] pixel index of each window's corner
    pixel = origin[face] + (dy * width + dx)[offset]  # [M]
    zbuf.scatter_reduce_(0, pixel, key, reduce="amin")


def _resolve(face_verts: Tensor, face_id: Tensor, k_inv: Tensor) -> tuple[Tensor, Tensor]:
    """Barycentrics [B, H, W, 3] and depth [B, H, W] of each pixel's face (differentiable in face_verts)."""
    batch, height, width = face_id.shape
    dtype, device = face_verts.dtype, face_id.device
    mask = face_id >= 0  # [B, H, W]
    if face_verts.shape[1] == 0:
        return face_verts.new_zeros(batch, height, width, 3), face_verts.new_zeros(batch, height, width)
    n, a1, a2, h = _face_planes(face_verts)
    planes = torch.cat([n, a1, a2, h[..., None]], dim=-1)  # [B, F, 10]
    row = face_id.clamp(min=0) + torch.arange(batch, device=device)[:, None, None] * planes.shape[1]  # [B, H, W]
    per_pixel = planes.flatten(0, 1).index_select(0, row.flatten()).view(batch, height, width, 10)
    x = torch.arange(width, device=device, dtype=dtype) + 0.5  # [W]
    y = torch.arange(height, device=device, dtype=dtype)[:, None] + 0.5  # [H, 1]
    k = k_inv[:, :, :, None, None]  # [B, 3, 3, 1, 1]
    ray_x = k[:, 0, 0] * x + k[:, 0, 1] * y + k[:, 0, 2]  # [B, H, W] ray direction D = (ray_x, ray_y, 1)
    ray_y = k[:, 1, 1] * y + k[:, 1, 2]  # [B, H, 1]

    def dot(first: int) -> Tensor:  # [B, H, W] plane . D for the plane in columns first..first + 2
        return per_pixel[..., first] * ray_x + per_pixel[..., first + 1] * ray_y + per_pixel[..., first + 2]

    den = torch.where(mask, dot(0), torch.ones((), dtype=dtype, device=device))  # [B, H, W] finite on background
    b1, b2 = dot(3) / den, dot(6) / den  # [B, H, W]
    bary = torch.stack([1.0 - b1 - b2, b1, b2], dim=-1)  # [B, H, W, 3]
    depth = per_pixel[..., 9] / den  # [B, H, W]
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(mask[..., None], bary, zero), torch.where(mask, depth, zero)
