"""Where the `render` and `export` jobs get an avatar, loaded once per process and keyed by content.

Avatar sources (`spec.avatar`):
    'default'            `default_avatar()` on the built-in head (`gaussians` sets its count, default 100k).
    '/path/x.safetensors' an avatar package (`load_package`), on the backend's machine.
    '/path/x.ply'        a static 3DGS PLY, rendered as is (the FLAME sequence only sets the frame count).
    'avatars/<id>'       inside the workspace: `avatars/<id>.safetensors|.ply`, or a folder `avatars/<id>/`
                         holding `avatar.safetensors` (or `avatar.ply`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from .config import AvatarConfig
from .default import DEFAULT_GAUSSIANS, DEFAULT_OPACITY, default_avatar
from .gaussians import StaticGaussians
from .model import FLAME_INPUTS, GaussianAvatar
from .package import head_fingerprint, load_package
from .ply import read_ply

DEFAULT = "default"
DEFAULT_VERSION = 1
"""Bump when `default_avatar` changes what it builds (invalidates cached default renders)."""
MAX_GAUSSIANS = 2_000_000
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


def flame_inputs(avatar: GaussianAvatar) -> tuple[str, ...]:
    """The FLAME inputs the avatar's head takes (eyelids only when it has eyelid blendshapes)."""
    return tuple(n for n in FLAME_INPUTS if n != "eyelids" or avatar.head.has_eyelids)
