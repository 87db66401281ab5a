"""Versioned take folders for returned frames (bpy-free).

    <blend folder>/keyface_takes/<take>_v003/frame_000123.png     (timeline frame number, 6 digits)
                                            take.json            {take, version, job, state, frames, ...}
                                            INCOMPLETE           present until every frame arrived
                                            request.kfmsg        the job request (so a reopened .blend can
                                                                 retry or refill the take)

A new render always gets a new version (the highest existing version + 1, folder created exclusively), so a
previous take is never overwritten. Frames are written atomically (temp file + rename); a failed, cancelled
or interrupted render leaves its folder with `INCOMPLETE` and take.json saying why. PNGs are encoded here
with zlib (Blender's Python has no PIL): 8-bit RGBA, straight alpha, row 0 at the top.
"""

from __future__ import annotations

import json
import os
import re
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from shared_proto import ProtocolError, Submit, decode, encode

TAKES_FOLDER = "keyface_takes"
"""Folder beside the .blend that holds every take."""
INCOMPLETE = "INCOMPLETE"
"""Marker file of a take whose frames have not all arrived."""
FRAME_DIGITS = 6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^(?P<take>.+)_v(?P<version>\d{3,})$")
_FRAME = re.compile(r"^frame_(-?\d+)\.png$")
REQUEST = "request.kfmsg"
_REQUEST_MAGIC = b"KFRQ"
MAX_REQUEST_BYTES = 1 << 30
"""Largest request file read back (a 100k-frame render spec is far below it)."""


def check_take_name(name: str) -> str:
    """`name` when it is a safe folder name (letters, digits, _ . -; at most 64); ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"take name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
                         f"digit), got {name!r}")
    return name


def versions(root: Path, take: str) -> list[int]:
    """Existing versions of `take` under `root`, ascending."""
    if not Path(root).is_dir():
        return []
    found = []
    for entry in Path(root).iterdir():
        match = _VERSION.match(entry.name)
        if entry.is_dir() and match and match["take"] == take:
            found.append(int(match["version"]))
    return sorted(found)


def new_take(root: str | os.PathLike, take: str, job: str = "", meta: dict[str, Any] | None = None) -> Path:
    """Create the next version folder of `take` under `root`, marked INCOMPLETE, and return it."""
    root = Path(root)
    check_take_name(take)
    root.mkdir(parents=True, exist_ok=True)
    version = (versions(root, take) or [0])[-1] + 1
    while True:
        folder = root / f"{take}_v{version:03d}"
        try:
            folder.mkdir()  # exclusive: a concurrent render of the same take gets the next version
            break
        except FileExistsError:
            version += 1
    (folder / INCOMPLETE).write_text("frames are still arriving (or the render stopped before the end)\n")
    write_info(folder, {"take": take, "version": version, "job": job, "state": "rendering", **(meta or {})})
    return folder


def frame_path(folder: str | os.PathLike, frame: int) -> Path:
    """The PNG of timeline frame `frame` in a take folder."""
    return Path(folder) / f"frame_{int(frame):0{FRAME_DIGITS}d}.png"


def frames_in(folder: str | os.PathLike) -> list[int]:
    """Timeline frame numbers with a PNG in the take folder, ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for entry in folder.iterdir() if (m := _FRAME.match(entry.name)))


def write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_info(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "take.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_info(folder: str | os.PathLike, info: dict[str, Any]) -> None:
    write_atomic(Path(folder) / "take.json", json.dumps(info, indent=1, sort_keys=True).encode())


def finish_take(folder: str | os.PathLike, state: str, expected: list[int] | None = None,
                message: str = "") -> list[int]:
    """Record how the render ended; returns the expected frames that are missing.

    The take is complete (INCOMPLETE removed) only when `state` is 'done' and no expected frame is missing.
    """
    folder = Path(folder)
    present = set(frames_in(folder))
    missing = [frame for frame in (expected or []) if frame not in present]
    complete = state == "done" and not missing
    info = read_info(folder)
    info.update(state="complete" if complete else state, frames=len(present), missing=missing[:1000],
                message=message)
    write_info(folder, info)
    marker = folder / INCOMPLETE
    if complete:
        marker.unlink(missing_ok=True)
    else:
        write_atomic(marker, (f"this take is incomplete: {state}"
                              + (f"; {len(missing)} frames missing" if missing else "")
                              + (f"; {message}" if message else "") + "\n").encode())
    return missing


def encode_png(rgba: np.ndarray, level: int = 6) -> bytes:
    """[H, W, 4] (or [H, W, 3]) uint8 -> PNG bytes (8-bit RGBA / RGB, no filtering)."""
    if not isinstance(rgba, np.ndarray) or rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"encode_png needs an [H, W, 3|4] uint8 array, got "
                         f"{getattr(rgba, 'dtype', type(rgba).__name__)} {list(getattr(rgba, 'shape', []))}")
    height, width, channels = rgba.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # [H, 1 + W·C], filter byte 0 per row
    rows[:, 1:] = rgba.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + chunk(b"IEND", b""))


def write_frame(folder: str | os.PathLike, frame: int, rgba: np.ndarray) -> Path:
    """Write one returned frame into a take folder as a PNG, atomically; returns its path."""
    path = frame_path(folder, frame)
    write_atomic(path, encode_png(np.ascontiguousarray(rgba)))
    return path


def save_request(folder: str | os.PathLike, kind: str, spec: dict[str, Any]) -> Path:
    """Store a job request in the take folder: the protocol's own encoding (no pickle), framed as
    b'KFRQ' + u32 frame count + (u64 length + bytes) per frame, little-endian."""
    frames = [bytes(frame) for frame in encode(Submit(id="take-request", kind=kind, spec=spec))]
    data = _REQUEST_MAGIC + struct.pack("<I", len(frames))
    data += b"".join(struct.pack("<Q", len(frame)) + frame for frame in frames)
    path = Path(folder) / REQUEST
    write_atomic(path, data)
    return path


def load_request(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(kind, spec) from a request file; ValueError naming the file when it is damaged."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) > MAX_REQUEST_BYTES or data[:4] != _REQUEST_MAGIC or len(data) < 8:
        raise ValueError(f"{path} is not a Keyface request file (bad magic or size {len(data)})")
    (count,), offset, frames = struct.unpack_from("<I", data, 4), 8, []
    for _ in range(min(count, 1 << 16)):
        if offset + 8 > len(data):
            break
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        if offset + length > len(data):
            break
        frames.append(data[offset:offset + length])
        offset += length
    if len(frames) != count or offset != len(data):
        raise ValueError(f"{path} is truncated or damaged ({count} frames announced, {len(frames)} readable, "
                         f"{len(data) - offset} bytes left over)")
    try:
        message = decode(frames, max_message_bytes=MAX_REQUEST_BYTES)
    except ProtocolError as error:
        raise ValueError(f"{path} does not decode: {error}") from None
    if not isinstance(message, Submit):
        raise ValueError(f"{path} holds a {message.TYPE!r} message, not a job request")
    return message.kind, message.spec
