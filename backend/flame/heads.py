"""Heads by name for jobs: 'builtin' or a FLAME file on the backend's machine, loaded once and cached."""

from __future__ import annotations

import functools
from pathlib import Path


from .io import FlameFileMissingError
from .model import BUILTIN_HEAD_PATH, FlameModel

BUILTIN = "builtin"


def head_path(name: str) -> Path:
    """The model file a head name refers to ('builtin' or a path; '~' expanded)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"head must be 'builtin' or the path of a FLAME file, got {name!r}")
    return BUILTIN_HEAD_PATH if name == BUILTIN else Path(name).expanduser().resolve()


def load_head(name: str = BUILTIN, device: str = "cpu") -> FlameModel:
    """The FlameModel for `name` on `device` (cached per file version and device)."""
    path = head_path(name)
    if not path.is_file():
        if name == BUILTIN:
            return FlameModel.builtin()  # raises with the generator command
        raise FlameFileMissingError(path, "the FLAME model file does not exist")
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size, device)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int, device: str) -> FlameModel:
    return FlameModel.from_file(path).to(device).eval()
