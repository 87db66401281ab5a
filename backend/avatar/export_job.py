"""Job `export`: an avatar written as a 3DGS PLY, a PLY sequence, a package or its posed FLAME mesh.

Spec:
    avatar; format 'ply' (one frame: `frame` row of `sequence`, or the neutral pose without one),
    'ply_sequence' (needs `sequence`), 'package' (the avatar package), 'mesh' (the avatar's posed FLAME head at
    row `frame`, `mesh_format` 'obj' (default) / 'ply' / 'glb'); written atomically under the job folder.
    Result {format, assets: [asset names for `fetch`]}.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.atomic import atomic_path
from backend.job_spec import check_keys
from shared_proto import FlameParams, FlameSequence

from .export import export_ply, export_ply_sequence
from .model import GaussianAvatar
from .package import save_package
from .sources import DEFAULT, AvatarSource, flame_inputs, load_avatar, parse_avatar, resolve_avatar

EXPORT_FORMATS = ("ply", "ply_sequence", "package", "mesh")
MESH_FORMATS = ("obj", "ply", "glb")


def parse_export_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Validated export spec as a dict; raises ValueError naming the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("the export spec must be an object")
    check_keys(spec, {"avatar", "format", "sequence", "frame", "mesh_format", "gaussians"}, "export")
    avatar, gaussians = parse_avatar(spec.get("avatar", DEFAULT), spec.get("gaussians"))
    fmt = spec.get("format")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"spec.format must be one of {list(EXPORT_FORMATS)}, got {fmt!r:.100}")
    sequence = FlameSequence.from_wire(spec["sequence"]) if "sequence" in spec else None
    if fmt == "ply_sequence" and sequence is None:
        raise ValueError("spec.format 'ply_sequence' needs spec.sequence")
    frame = spec.get("frame", 0)
    count = 1 if sequence is None else len(sequence)
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < count:
        raise ValueError(f"spec.frame must be a row index in [0, {count}), got {frame!r}")
    mesh_format = spec.get("mesh_format", "obj")
    if mesh_format not in MESH_FORMATS:
        raise ValueError(f"spec.mesh_format must be one of {list(MESH_FORMATS)}, got {mesh_format!r:.100}")
    return {"avatar": avatar, "gaussians": gaussians, "format": fmt, "sequence": sequence, "frame": frame,
            "mesh_format": mesh_format}


def validate_export(spec: dict[str, Any]) -> None:
    parse_export_spec(spec)


def export_avatar(source: AvatarSource, fmt: str, folder: Path, *, sequence: FlameSequence | None = None,
                  frame: int = 0, mesh_format: str = "obj", device: str = "cpu") -> list[Path]:
    """Write the export `fmt` of the avatar into `folder` (atomically, file by file); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    if source.kind == "ply":
        if fmt != "ply":
            raise ValueError(f"a static PLY avatar can only be exported as 'ply', not {fmt!r} (it has no rig)")
        target = folder / "avatar.ply"
        with atomic_path(target) as temp:
            shutil.copyfile(source.path, temp)
        return [target]
    if fmt == "package" and source.kind == "package":
        target = folder / "avatar.safetensors"
        with atomic_path(target) as temp:
            shutil.copyfile(source.path, temp)
        return [target]
    avatar = load_avatar(source, device).avatar
    params: FlameParams | FlameSequence = FlameParams.neutral() if sequence is None else sequence
    if fmt == "package":
        return [save_package(avatar, folder / "avatar.safetensors")]
    if fmt == "ply":
        return [export_ply(avatar, params, folder / "avatar.ply", frame=frame if sequence is not None else 0)]
    if fmt == "ply_sequence":
        target = export_ply_sequence(avatar, sequence, folder / "ply_sequence")
        return sorted(p for p in target.iterdir() if p.is_file())
    return _export_mesh(avatar, params if sequence is None else sequence.frame(frame), folder, mesh_format)


def _export_mesh(avatar: GaussianAvatar, params: FlameParams, folder: Path, mesh_format: str) -> list[Path]:
    from backend.flame.texture import read_head_texture
    from backend.track.mesh_export import export_mesh

    head = avatar.head
    device, dtype = head.v_template.device, head.v_template.dtype
    inputs = {name: torch.tensor(np.atleast_2d(value), dtype=dtype, device=device) for name in flame_inputs(avatar)
              if (value := getattr(params, name)) is not None}
    with torch.no_grad():
        vertices = head(shape=avatar.shape[None] if avatar.shape.numel() else None, **inputs).vertices[0]  # [V, 3]
    texture = read_head_texture(head) if mesh_format != "ply" else None
    uv = uv_faces = image = None
    if texture is not None and texture.vt is not None and texture.ft is not None:
        uv, uv_faces = np.asarray(texture.vt), np.asarray(texture.ft)
        image = None if texture.image is None else np.asarray(texture.image, dtype=np.uint8)
    target = folder / f"mesh.{mesh_format}"
    export_mesh(vertices.cpu().numpy(), head.faces.cpu().numpy(), target, uv=uv, uv_faces=uv_faces, texture=image)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.stem == "mesh" and not p.name.startswith("."))


def run_export(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    parsed = parse_export_spec(spec)
    source = resolve_avatar(parsed["avatar"], ctx.workspace.root, parsed["gaussians"])
    ctx.progress("export", 0, 1, f"{parsed['format']} of {parsed['avatar']}")
    files = export_avatar(source, parsed["format"], Path(ctx.workdir) / "export", sequence=parsed["sequence"],
                          frame=parsed["frame"], mesh_format=parsed["mesh_format"], device=ctx.device)
    ctx.progress("export", 1, 1)
    return {"format": parsed["format"], "assets": [ctx.asset_name(path) for path in files]}
