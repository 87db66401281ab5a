"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on error removed.

    Works for files and folders (a folder replaces an existing folder of the same name).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last, so writers that pick a format from the extension still work
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    temp.unlink()  # the caller creates a file or a folder here
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path for {target}")
        if temp.is_dir() and target.is_dir():
            # folders cannot be swapped in one step: move the old one aside under a unique name first
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, target)
        _fsync_folder(target.parent)
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write `data` to `path` atomically (fsync'd before the rename)."""
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
