"""Job `geometry_maps`: a FLAME head posed by a FlameSequence, rendered to guidance maps, streamed as frames.

Spec:
    head: 'builtin' (default) or the path of a FLAME file on the backend's machine.
    sequence: FlameSequence (wire form).
    camera: one Camera for every frame, or `cameras`: a list with one Camera per frame.
    maps: subset of ['depth', 'normal', 'render', 'uv'] (default ['depth', 'normal', 'render']).

Replies: one `frame` per (sequence frame, map), index = t * len(maps) + k, meta {'map', 'frame'}; RGBA uint8
with alpha = coverage. Result: {'frames', 'maps', 'width', 'height'}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from shared_proto import Camera, FlameSequence

from ..flame.heads import BUILTIN, load_head
from ..job_spec import cameras_from_spec, check_keys
from ..flame.texture import read_head_texture
from .mesh_attributes import sample_texture
from .mesh_maps import depth_map, normal_map, render_map, uv_map
from .mesh_rasterizer import rasterize_mesh_cameras

MAPS = ("depth", "normal", "render", "uv")
DEFAULT_MAPS = ("depth", "normal", "render")
SKIN = (0.78, 0.6, 0.5)
"""Albedo used for heads without a texture (official FLAME files carry none)."""
CHUNK = 4
"""Frames rasterized together."""


def parse_spec(spec: dict[str, Any]) -> tuple[str, FlameSequence, list[Camera], tuple[str, ...]]:
    """Validated (head, sequence, one camera per frame, maps); raises ValueError naming the bad field."""
    check_keys(spec, {"head", "sequence", "camera", "cameras", "maps"}, "geometry_maps")
    head = spec.get("head", BUILTIN)
    if not isinstance(head, str) or not head:
        raise ValueError(f"spec.head must be 'builtin' or a FLAME file path, got {head!r}")
    if "sequence" not in spec:
        raise ValueError("spec.sequence (a FlameSequence) is required")
    sequence = FlameSequence.from_wire(spec["sequence"])
    cameras = cameras_from_spec(spec, len(sequence))
    maps = spec.get("maps", list(DEFAULT_MAPS))
    if not isinstance(maps, list) or not maps or any(m not in MAPS for m in maps) or len(set(maps)) != len(maps):
        raise ValueError(f"spec.maps must be a non-empty list of distinct names from {list(MAPS)}, got {maps!r}")
    return head, sequence, cameras, tuple(maps)


def validate(spec: dict[str, Any]) -> None:
    parse_spec(spec)


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    head_name, sequence, cameras, maps = parse_spec(spec)
    device = torch.device(ctx.device)
    ctx.progress("load", 0, 1, f"head {head_name}")
    model = load_head(head_name, str(device))
    texture = read_head_texture(model)
    textures = None if texture is None or texture.image is None else (
        torch.tensor(texture.vt, dtype=torch.float32, device=device),
        torch.tensor(texture.ft, dtype=torch.long, device=device),
        torch.tensor(texture.image, dtype=torch.float32, device=device) / 255.0)
    if "uv" in maps and textures is None:
        raise ValueError(f"head {head_name!r} has no UV layout, so it has no 'uv' map; drop 'uv' from spec.maps")
    index = 0
    for start in range(0, len(sequence), CHUNK):
        ctx.check_cancelled()
        rows = range(start, min(start + CHUNK, len(sequence)))
        with torch.no_grad():
            vertices = _pose(model, sequence, rows, device)  # [B, V, 3]
            fragments = rasterize_mesh_cameras(vertices, model.faces, [cameras[t] for t in rows])
            images = _maps(fragments, model.faces, maps, textures)  # name -> [B, H, W, C]
        alpha = fragments.mask.cpu().numpy()  # [B, H, W]
        for b, t in enumerate(rows):
            for name in maps:
                ctx.frame(index, _rgba(images[name][b], alpha[b]), map=name, frame=sequence.frame_start + t)
                index += 1
            ctx.progress("render", t + 1, len(sequence))
    return {"frames": len(sequence), "maps": list(maps), "width": cameras[0].width, "height": cameras[0].height}


def _pose(model: Any, sequence: FlameSequence, rows: range, device: torch.device) -> torch.Tensor:
    def take(name: str) -> torch.Tensor:
        return torch.as_tensor(np.asarray(getattr(sequence, name)[rows.start:rows.stop]), device=device)

    lids = None if sequence.eyelids is None or not model.has_eyelids else take("eyelids")
    return model(shape=torch.as_tensor(sequence.shape, device=device)[None], expression=take("expression"),
                 rotation=take("rotation"), neck=take("neck"), jaw=take("jaw"), eyes=take("eyes"),
                 translation=take("translation"), eyelids=lids).vertices


def _maps(fragments: Any, faces: torch.Tensor, maps: tuple[str, ...], textures: Any) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if "depth" in maps:
        out["depth"] = depth_map(fragments)
    if "normal" in maps:
        out["normal"] = normal_map(fragments, faces)
    uv = uv_map(fragments, textures[0], textures[1]) if textures is not None else None  # [B, H, W, 2]
    if "uv" in maps:
        out["uv"] = torch.cat([uv, torch.zeros_like(uv[..., :1])], dim=-1)
    if "render" in maps:
        if textures is not None:
            albedo = sample_texture(textures[2], uv)
        else:
            albedo = fragments.bary.new_tensor(SKIN).expand(fragments.bary.shape)  # [B, H, W, 3]
        out["render"] = render_map(fragments, faces, albedo)
    return out


def _rgba(image: torch.Tensor, alpha: np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] + [H, W] coverage -> [H, W, 4] uint8 straight alpha."""
    rgb = (image.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return np.concatenate([rgb, (alpha * 255).astype(np.uint8)[..., None]], axis=-1)
