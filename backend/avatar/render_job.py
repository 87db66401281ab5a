"""Job `render`: an avatar posed by a FlameSequence, rendered to RGBA frames (cached).
`render_frames` is the core the CLI (`python -m backend render`) also runs.

Spec:
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
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import PIL.Image
import torch

from backend.atomic import atomic_path
from backend.job_spec import cameras_from_spec, check_keys
from shared_proto import Camera, FlameParams, FlameSequence

from .render import render_avatar
from .sh import eval_sh
from .sources import DEFAULT, AvatarSource, LoadedAvatar, flame_inputs, load_avatar, parse_avatar, resolve_avatar

CACHE_VERSION = 1
"""Bump when the render path changes its pixels (invalidates every cached render)."""
QUALITIES = ("draft", "final")
MAX_SIZE = 8192
"""Largest accepted output width / height in pixels."""
CHUNK = 8
"""Frames posed together."""



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
    check_keys(spec, {"avatar", "sequence", "camera", "cameras", "width", "height", "quality", "background",
                      "gaussians"}, "render")
    avatar, gaussians = parse_avatar(spec.get("avatar", DEFAULT), spec.get("gaussians"))
    sequence = FlameSequence.from_wire(spec["sequence"]) if "sequence" in spec else None
    if sequence is None and not avatar.lower().endswith(".ply") and not avatar.startswith("avatars/"):
        raise ValueError("spec.sequence (a FlameSequence) is required, except for a static .ply avatar")
    cameras = cameras_from_spec(spec, 1 if sequence is None else len(sequence))
    quality = spec.get("quality", "draft")
    width, height = output_size(cameras[0], spec.get("width"), spec.get("height"), quality)
    return RenderSpec(avatar, gaussians, sequence, cameras, width, height, quality,
                      parse_background(spec.get("background")))


def validate_render(spec: dict[str, Any]) -> None:
    parse_render_spec(spec)


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
                          for name in flame_inputs(loaded.avatar) if (value := getattr(sequence, name)) is not None}
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
