"""Jobs `render` and `export`: an avatar (default, package, 3DGS PLY) posed by a FlameSequence, rendered to
frames or written to files. `render_frames` is the shared core the CLI (`python -m backend render`) also runs.

Avatar sources (`spec.avatar`):
    'default'            `default_avatar()` on the built-in head (`gaussians` sets its count, default 100k).
    '/path/x.safetensors' an avatar package (`load_package`), on the backend's machine.
    '/path/x.ply'        a static 3DGS PLY, rendered as is (the FLAME sequence only sets the frame count).
    'avatars/<id>'       inside the workspace: `avatars/<id>.safetensors|.ply`, or a folder `avatars/<id>/`
                         holding `avatar.safetensors` (or `avatar.ply`).

Job `render` spec:
    avatar, sequence (FlameSequence wire; optional for a PLY: one frame), camera | cameras (one per frame),
    width / height (optional; override the camera's image size, K scaled to match), quality 'draft' (default)
    or 'final', background [3] in [0, 1] (optional), gaussians (int, default avatar only).
    Quality: 'final' renders at the requested size; 'draft' renders at half of it (each side halved, at least
    1 pixel, K scaled by 0.5) and returns those half-size frames, for quick previews.
    Frames: RGBA uint8, straight alpha = accumulated opacity (colour un-premultiplied); with a background the
    colour is composited over it and alpha is 255. Meta {frame: timeline frame number, cached: bool}.
    Cache: `<workspace>/cache/render/<key>.png`, key = sha256 over the avatar's identity (file content hash,
    or 'default' + version + Gaussian count + head fingerprint), the frame's FLAME parameters, the camera,
    the output size, quality and background.
    Result {frames, width, height, cached (frames served from the cache), seconds}.

Job `export` spec:
    avatar; format 'ply' (one frame: `frame` row of `sequence`, or the neutral pose without one),
    'ply_sequence' (needs `sequence`), 'package' (the avatar package), 'mesh' (the avatar's posed FLAME head at
    row `frame`, `mesh_format` 'obj' (default) / 'ply' / 'glb'); written atomically under the job folder.
    Result {format, assets: [asset names for `fetch`]}.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import PIL.Image
import torch

from backend.atomic import atomic_path
from shared_proto import Camera, FlameParams, FlameSequence

from .config import AvatarConfig
from .default import DEFAULT_GAUSSIANS, DEFAULT_OPACITY, default_avatar
from .export import export_ply, export_ply_sequence
from .gaussians import StaticGaussians
from .model import FLAME_INPUTS, GaussianAvatar
from .package import head_fingerprint, load_package, save_package
from .ply import read_ply
from .render import render_avatar
from .sh import eval_sh

DEFAULT = "default"
DEFAULT_VERSION = 1
"""Bump when `default_avatar` changes what it builds (invalidates cached default renders)."""
CACHE_VERSION = 1
"""Bump when the render path changes its pixels (invalidates every cached render)."""
QUALITIES = ("draft", "final")
EXPORT_FORMATS = ("ply", "ply_sequence", "package", "mesh")
MESH_FORMATS = ("obj", "ply", "glb")
MAX_SIZE = 8192
"""Largest accepted output width / height in pixels."""
MAX_GAUSSIANS = 2_000_000
CHUNK = 8
"""Frames posed together."""


@dataclasses.dataclass(frozen=True)
class AvatarSource:
    """Where an avatar comes from: kind 'default', 'package' or 'ply', the file (None for default)."""

    kind: str
    path: Path | None = None
    gaussians: int = DEFAULT_GAUSSIANS


@dataclasses.dataclass(frozen=True)
class LoadedAvatar:
    """An avatar ready to render: a rigged `GaussianAvatar`, or static Gaussians from a PLY; `identity` keys
    the render cache."""

    identity: str
    avatar: GaussianAvatar | None = None
    static: StaticGaussians | None = None


# --- spec parsing ---------------------------------------------------------------------------------------------


def parse_avatar(value: Any, gaussians: Any = None) -> tuple[str, int]:
    """(avatar string, Gaussian count); raises ValueError. Files are checked when resolved (`resolve_avatar`)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"spec.avatar must be 'default', a .safetensors / .ply path or 'avatars/<id>', got "
                         f"{value!r:.200}")
    if gaussians is None:
        gaussians = DEFAULT_GAUSSIANS
    elif value != DEFAULT:
        raise ValueError("spec.gaussians only applies to the default avatar (spec.avatar = 'default')")
    if isinstance(gaussians, bool) or not isinstance(gaussians, int) or not 1 <= gaussians <= MAX_GAUSSIANS:
        raise ValueError(f"spec.gaussians must be an integer in [1, {MAX_GAUSSIANS}], got {gaussians!r}")
    return value, gaussians


def resolve_avatar(value: str, workspace_root: str | os.PathLike | None, gaussians: int = DEFAULT_GAUSSIANS
                   ) -> AvatarSource:
    """The avatar file `value` names (see the module docstring); raises FileNotFoundError / ValueError."""
    if value == DEFAULT:
        return AvatarSource(DEFAULT, None, gaussians)
    if value.startswith("avatars/"):
        if workspace_root is None:
            raise ValueError(f"{value!r} names a workspace avatar, but there is no workspace here")
        parts = value.split("/")
        if len(parts) != 2 or parts[1] in ("", ".", "..") or "\\" in value:
            raise ValueError(f"spec.avatar {value!r:.200} must be 'avatars/<id>' with a plain id")
        base = Path(workspace_root) / "avatars"
        candidates = [base / parts[1], base / f"{parts[1]}.safetensors", base / f"{parts[1]}.ply",
                      base / parts[1] / "avatar.safetensors", base / parts[1] / "avatar.ply"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"no avatar {value!r} in the workspace (looked for "
                                    f"{', '.join(p.relative_to(workspace_root).as_posix() for p in candidates)})")
        path = found
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"avatar file {value!r:.300} does not exist on the backend's machine")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return AvatarSource("ply", path.resolve())
    if suffix == ".safetensors":
        return AvatarSource("package", path.resolve())
    raise ValueError(f"avatar file {path.name!r} must be an avatar package (.safetensors) or a 3DGS PLY (.ply)")


def parse_cameras(spec: dict[str, Any], frames: int) -> list[Camera]:
    """One camera per frame from `spec.camera` or `spec.cameras`; raises ValueError."""
    if ("camera" in spec) == ("cameras" in spec):
        raise ValueError("give exactly one of spec.camera (all frames) or spec.cameras (one per frame)")
    if "camera" in spec:
        return [Camera.from_wire(spec["camera"])] * frames
    if not isinstance(spec["cameras"], list) or len(spec["cameras"]) != frames:
        raise ValueError(f"spec.cameras must list one camera per frame ({frames})")
    cameras = [Camera.from_wire(camera) for camera in spec["cameras"]]
    if len({(c.width, c.height) for c in cameras}) != 1:
        raise ValueError("every camera of spec.cameras must have the same width and height")
    return cameras


def output_size(camera: Camera, width: Any, height: Any, quality: str) -> tuple[int, int]:
    """(width, height) of the frames returned: the requested size (camera's by default), halved for draft."""
    size = []
    for name, value, fallback in (("width", width, camera.width), ("height", height, camera.height)):
        value = fallback if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"spec.{name} must be an integer in [1, {MAX_SIZE}], got {value!r}")
        size.append(value)
    if quality not in QUALITIES:
        raise ValueError(f"spec.quality must be one of {list(QUALITIES)}, got {quality!r}")
    if quality == "draft":
        size = [max(1, s // 2) for s in size]
    return size[0], size[1]


def resized(camera: Camera, width: int, height: int) -> Camera:
    """The camera with its image size changed to (width, height), K scaled per axis to keep the view."""
    if (width, height) == (camera.width, camera.height):
        return camera
    sx, sy = width / camera.width, height / camera.height
    K = np.array(camera.K, dtype=np.float64)
    K[0] *= sx  # fx, skew, cx
    K[1] *= sy  # fy, cy
    return dataclasses.replace(camera, K=K, width=width, height=height)


def parse_background(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64) if isinstance(value, (list, tuple)) else None
    if array is None or array.shape != (3,) or not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError(f"spec.background must be [r, g, b] in [0, 1], got {value!r:.200}")
    return array


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    avatar: str
    gaussians: int
    sequence: FlameSequence | None
    cameras: list[Camera]
    width: int
    height: int
    quality: str
    background: np.ndarray | None


def parse_render_spec(spec: dict[str, Any]) -> RenderSpec:
    """Validated render spec; raises ValueError naming the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("the render spec must be an object")
    unknown = sorted(set(spec) - {"avatar", "sequence", "camera", "cameras", "width", "height", "quality",
                                  "background", "gaussians"})
    if unknown:
        raise ValueError(f"render does not take {unknown}")
    avatar, gaussians = parse_avatar(spec.get("avatar", DEFAULT), spec.get("gaussians"))
    sequence = FlameSequence.from_wire(spec["sequence"]) if "sequence" in spec else None
    if sequence is None and not avatar.lower().endswith(".ply") and not avatar.startswith("avatars/"):
        raise ValueError("spec.sequence (a FlameSequence) is required, except for a static .ply avatar")
    cameras = parse_cameras(spec, 1 if sequence is None else len(sequence))
    quality = spec.get("quality", "draft")
    width, height = output_size(cameras[0], spec.get("width"), spec.get("height"), quality)
    return RenderSpec(avatar, gaussians, sequence, cameras, width, height, quality,
                      parse_background(spec.get("background")))


def validate_render(spec: dict[str, Any]) -> None:
    parse_render_spec(spec)


# --- loading (cached) -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """sha256 hex of a file's content (memoised per path, mtime and size)."""
    stat = path.stat()
    return _file_hash(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _default(device: str, gaussians: int) -> tuple[GaussianAvatar, str]:
    from backend.flame.heads import load_head

    head = load_head("builtin", "cpu")
    avatar = default_avatar(head, AvatarConfig(sh_degree=0, num_gaussians=gaussians)).to(device).eval()
    identity = f"default:v{DEFAULT_VERSION}:n{gaussians}:o{DEFAULT_OPACITY}:{head_fingerprint(head)}"
    return avatar, identity


@functools.lru_cache(maxsize=2)
def _package(path: str, content: str, device: str) -> GaussianAvatar:
    return load_package(path).to(device).eval()


@functools.lru_cache(maxsize=2)
def _ply(path: str, content: str) -> StaticGaussians:
    return read_ply(path)


def load_avatar(source: AvatarSource, device: str) -> LoadedAvatar:
    """The avatar `source` names, on `device`; built / read once per process (default per device and count,
    files per content)."""
    if source.kind == DEFAULT:
        avatar, identity = _default(str(device), source.gaussians)
        return LoadedAvatar(identity, avatar=avatar)
    content = file_hash(source.path)
    if source.kind == "package":
        return LoadedAvatar(f"package:{content}", avatar=_package(str(source.path), content, str(device)))
    return LoadedAvatar(f"ply:{content}", static=_ply(str(source.path), content))


# --- rendering ------------------------------------------------------------------------------------------------


def _params_bytes(sequence: FlameSequence | None, row: int) -> bytes:
    if sequence is None:
        return b"none"
    params = sequence.frame(row)
    parts = []
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        parts.append(f"{field.name}:".encode() + (b"-" if value is None else
                                                 np.ascontiguousarray(value, dtype="<f8").tobytes()))
    return b";".join(parts)


def cache_key(identity: str, sequence: FlameSequence | None, row: int, camera: Camera, width: int, height: int,
              quality: str, background: np.ndarray | None) -> str:
    """sha256 hex naming one rendered frame (see the module docstring)."""
    digest = hashlib.sha256(f"keyface-render:v{CACHE_VERSION};{identity};".encode())
    digest.update(_params_bytes(None if identity.startswith("ply:") else sequence, row))
    digest.update(np.ascontiguousarray(camera.K, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(camera.world_to_camera, dtype="<f8").tobytes())
    digest.update(f";{camera.near!r};{camera.far!r};{width}x{height};{quality};".encode())
    digest.update(b"-" if background is None else np.ascontiguousarray(background, dtype="<f8").tobytes())
    return digest.hexdigest()


def read_png(path: Path) -> np.ndarray | None:
    """[H, W, 4] uint8 from a cached PNG, or None when it is missing or unreadable."""
    try:
        with PIL.Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))
    except (OSError, ValueError, SyntaxError):
        return None


def write_png(path: Path, rgba: np.ndarray) -> None:
    """Write [H, W, 4] uint8 as a PNG, atomically."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    with atomic_path(path) as temp:
        temp.write_bytes(buffer.getvalue())


def straight_rgba(premultiplied: torch.Tensor, alpha: torch.Tensor, background: np.ndarray | None) -> np.ndarray:
    """[H, W, 3] colour over black + [H, W, 1] alpha -> [H, W, 4] uint8, straight alpha (or opaque over
    `background`)."""
    alpha = alpha.clamp(0, 1)
    if background is not None:
        colour = premultiplied + (1 - alpha) * premultiplied.new_tensor(background)
        alpha = torch.ones_like(alpha)
    else:
        colour = torch.where(alpha > 0.5 / 255, premultiplied / alpha.clamp_min(1e-8), torch.zeros_like(premultiplied))
    rgba = torch.cat([colour.clamp(0, 1), alpha], dim=-1)  # [H, W, 4]
    return (rgba.float().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _inputs(avatar: GaussianAvatar) -> tuple[str, ...]:
    """The FLAME inputs the avatar's head takes (eyelids only when it has eyelid blendshapes)."""
    return tuple(n for n in FLAME_INPUTS if n != "eyelids" or avatar.head.has_eyelids)


def _render_rows(loaded: LoadedAvatar, sequence: FlameSequence | None, rows: range, cameras: list[Camera],
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(premultiplied colour [H, W, 3], alpha [H, W, 1]) for each row, frame t through cameras[t]."""
    from backend.render import camera_tensors, rasterize_gaussians

    out = []
    with torch.no_grad():
        if loaded.avatar is not None:
            if sequence is None:
                params: Any = FlameParams.neutral()
            else:
                params = {name: torch.tensor(value[rows.start:rows.stop], dtype=torch.float32, device=device)
                          for name in _inputs(loaded.avatar) if (value := getattr(sequence, name)) is not None}
            gaussians = loaded.avatar.gaussians_at(params)
            views = camera_tensors([cameras[t] for t in rows], device=device)
            render = render_avatar(loaded.avatar, gaussians, views)  # rgb / alpha [B, H, W, 3 / 1]
            return [(render.rgb[b], render.alpha[b]) for b in range(len(rows))]
        static = loaded.static
        means = static.means.to(device)  # [N, 3]
        for t in rows:
            view = camera_tensors(cameras[t], device=device)
            rotation, translation = view.world_to_camera[:, :3, :3], view.world_to_camera[:, :3, 3]
            centre = -(rotation.transpose(1, 2) @ translation[..., None])[..., 0]  # [1, 3]
            colours = eval_sh(static.sh.to(device), means - centre)  # [N, 3]
            result = rasterize_gaussians(means, static.quats.to(device), static.scales.to(device),
                                         static.opacities.to(device), colours, view.K, view.world_to_camera,
                                         view.width, view.height, near=cameras[t].near, far=cameras[t].far)
            out.append((result.features[0], result.alpha[0]))
    return out


def render_frames(source: AvatarSource, sequence: FlameSequence | None, cameras: list[Camera], *, width: int,
                  height: int, quality: str, background: np.ndarray | None = None, device: str = "cpu",
                  cache_dir: Path | None = None, check: Callable[[], None] | None = None
                  ) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Render every frame: yields (row, [height, width, 4] uint8 straight-alpha RGBA, came from the cache).

    `width`/`height` are the output size (already halved for draft, see `output_size`); cameras are resized to
    it. `cache_dir` None disables the cache; `check` is called between chunks (cancellation).
    """
    frames = 1 if sequence is None else len(sequence)
    if len(cameras) != frames:
        raise ValueError(f"{len(cameras)} cameras for {frames} frames")
    cameras = [resized(camera, width, height) for camera in cameras]
    loaded = load_avatar(source, device)
    torch_device = torch.device(device)
    for start in range(0, frames, CHUNK):
        if check is not None:
            check()
        rows = range(start, min(start + CHUNK, frames))
        images: dict[int, np.ndarray] = {}
        keys: dict[int, str] = {}
        if cache_dir is not None:
            for t in rows:
                keys[t] = cache_key(loaded.identity, sequence, t, cameras[t], width, height, quality, background)
                cached = read_png(cache_dir / f"{keys[t]}.png")
                if cached is not None and cached.shape == (height, width, 4):
                    images[t] = cached
        missing = [t for t in rows if t not in images]
        fresh: dict[int, np.ndarray] = {}
        # contiguous runs of rows to render (a cached frame in the middle splits the batch)
        runs: list[range] = []
        for t in missing:
            if runs and runs[-1].stop == t:
                runs[-1] = range(runs[-1].start, t + 1)
            else:
                runs.append(range(t, t + 1))
        for run in runs:
            for t, (colour, alpha) in zip(run, _render_rows(loaded, sequence, run, cameras, torch_device)):
                fresh[t] = straight_rgba(colour, alpha, background)
                if cache_dir is not None:
                    write_png(cache_dir / f"{keys[t]}.png", fresh[t])
        for t in rows:
            yield (t, images[t], True) if t in images else (t, fresh[t], False)


def run_render(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    parsed = parse_render_spec(spec)
    started = time.monotonic()
    source = resolve_avatar(parsed.avatar, ctx.workspace.root, parsed.gaussians)
    sequence = parsed.sequence
    if sequence is None and source.kind != "ply":
        raise ValueError(f"spec.sequence (a FlameSequence) is required for the animatable avatar {parsed.avatar!r}")
    frames = 1 if sequence is None else len(sequence)
    frame_start = 0 if sequence is None else sequence.frame_start
    ctx.progress("load", 0, 1, f"avatar {parsed.avatar}")
    cache_dir = Path(ctx.workspace.root) / "cache" / "render"
    cached = 0
    for t, image, hit in render_frames(source, sequence, parsed.cameras, width=parsed.width, height=parsed.height,
                                       quality=parsed.quality, background=parsed.background, device=ctx.device,
                                       cache_dir=cache_dir, check=ctx.check_cancelled):
        cached += hit
        ctx.frame(t, image, frame=frame_start + t, cached=hit)
        ctx.progress("render", t + 1, frames)
    return {"frames": frames, "width": parsed.width, "height": parsed.height, "cached": cached,
            "seconds": round(time.monotonic() - started, 3)}


# --- export ---------------------------------------------------------------------------------------------------


def parse_export_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Validated export spec as a dict; raises ValueError naming the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("the export spec must be an object")
    unknown = sorted(set(spec) - {"avatar", "format", "sequence", "frame", "mesh_format", "gaussians"})
    if unknown:
        raise ValueError(f"export does not take {unknown}")
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
    inputs = {name: torch.tensor(np.atleast_2d(value), dtype=dtype, device=device) for name in _inputs(avatar)
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
