"""Pure encode/decode between messages and multipart frames. No sockets here.

Wire format: frame 0 is a UTF-8 JSON object

    {"v": 1, "type": "submit", "id": "...", "job": null | "...", "body": {...},
     "buffers": [{"name": "spec.sequence.expression", "dtype": "<f4", "shape": [120, 100]}, ...]}

and frames 1..n are the raw bytes of those buffers, in order. Inside `body`, an array is replaced by
`{"$buffer": "<name>"}`. Only explicit little-endian dtypes from `ALLOWED_DTYPES` travel; `decode`
checks every size before touching the bytes, enforces limits, and never unpickles anything.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ErrorCode, ProtocolError
from .messages import MESSAGE_TYPES, PROTOCOL_VERSION, FrameReply, Message

ALLOWED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
}
"""Wire dtype string -> numpy dtype. Everything little-endian and explicit."""

DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""Default cap on the total size of one message (header + buffers)."""
MAX_HEADER_BYTES = 1024 * 1024
MAX_BUFFERS = 256
MAX_NDIM = 8
MAX_BUFFER_NAME = 256
BUFFER_REF = "$buffer"
_HEADER_KEYS = frozenset({"v", "type", "id", "job", "body", "buffers"})
_REQUIRED_HEADER_KEYS = frozenset({"v", "type", "id", "body", "buffers"})
_BUFFER_KEYS = frozenset({"name", "dtype", "shape"})
_HEADER_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_JSON_AS_IS = frozenset({str, int, bool, type(None)})
"""Exact types that are already JSON (subclasses, such as enums, are converted)."""
_CONTAINERS = frozenset({dict, list})


def _bad(code: ErrorCode, message: str, hint: str = "") -> ProtocolError:
    return ProtocolError(code, message, hint)


# --- encode ---------------------------------------------------------------------------------------


def encode(message: Message) -> list[bytes | memoryview]:
    """Message -> [header, buffer0, buffer1, ...]. Arrays are sent without copying when already contiguous LE."""
    if type(message) is FrameReply and not message.meta:
        frames = _encode_frame(message)
        if frames is not None:
            return frames
    return _encode_any(message)


def _encode_any(message: Message) -> list[bytes | memoryview]:
    """The general path of `encode`, for every message."""
    buffers: list[dict[str, Any]] = []
    payloads: list[bytes | memoryview] = []
    body = _to_json(message.body(), "body", buffers, payloads)
    header = {"v": PROTOCOL_VERSION, "type": message.TYPE, "id": message.id, "job": message.job,
              "body": body, "buffers": buffers}
    encoded = _HEADER_ENCODER.encode(header).encode("utf-8")
    if len(encoded) > MAX_HEADER_BYTES:
        raise ValueError(f"the {message.TYPE} header is {len(encoded)} bytes (limit {MAX_HEADER_BYTES}); send "
                         "bulky values as arrays or as an asset")
    return [encoded, *payloads]


def _encode_frame(message: FrameReply) -> list[bytes | memoryview] | None:
    """The streamed message's fast path: the bytes `encode` writes, from a header cached per job and image size.

    None when the general path is needed (an image that is not C-contiguous little-endian).
    """
    image = message.image  # [H, W, 4] uint8 or float16, checked by FrameReply
    if not image.flags.c_contiguous or image.dtype.str not in _FRAME_WIRE_DTYPES:
        return None
    before, after = _frame_header(message.id, message.job, image.dtype.str, image.shape)
    return [b"%s%d%s" % (before, message.index, after), memoryview(image).cast("B")]


_FRAME_WIRE_DTYPES = frozenset({"|u1", "<f2"})


@functools.lru_cache(maxsize=64)
def _frame_header(request_id: str, job: str | None, dtype: str, shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    """A frame reply's header (empty meta) as the general path writes it: the bytes before and after the index."""
    image = "0:body.image"  # the name the general path gives the first buffer at body.image
    start = {"v": PROTOCOL_VERSION, "type": FrameReply.TYPE, "id": request_id, "job": job}
    end = [{"name": image, "dtype": dtype, "shape": list(shape)}]
    return (_HEADER_ENCODER.encode(start)[:-1].encode() + b',"body":{"index":',
            b',"image":{"%s":"%s"},"meta":{}},"buffers":%s}' % (BUFFER_REF.encode(), image.encode(),
                                                             _HEADER_ENCODER.encode(end).encode()))


_INDEX_AT = b',"body":{"index":'
_AFTER_INDEX = b',"image":'
_MAX_FRAME_HEADER = 2048
"""Longer headers are not frame headers `_frame_header` writes (ids are at most 128 characters)."""
_KNOWN_FRAME_HEADERS_LIMIT = 64
_known_frame_headers: dict[tuple[bytes, bytes], tuple[str, str | None, np.dtype, tuple[int, ...], int]] = {}
"""(bytes before, bytes after the index) of frame headers the general path decoded -> what they say:
(id, job, dtype, shape, image bytes)."""


def _remember_frame_header(message: FrameReply, header: memoryview) -> None:
    """Let `_decode_known_frame` take the next frames of this stream, if `header` is the one encode writes."""
    image = message.image
    if message.meta or len(header) > _MAX_FRAME_HEADER:
        return
    before, after = _frame_header(message.id, message.job, image.dtype.str, image.shape)
    if bytes(header) != b"%s%d%s" % (before, message.index, after):  # written by something else: never fast
        return
    if len(_known_frame_headers) >= _KNOWN_FRAME_HEADERS_LIMIT:
        _known_frame_headers.clear()
    _known_frame_headers[before, after] = (message.id, message.job, image.dtype, image.shape, image.nbytes)


def _decode_known_frame(header: memoryview, image: memoryview) -> FrameReply | None:
    """The streamed message's fast path: a frame reply whose header is a remembered one but for its index.

    Gives what the general path gives such a header, without parsing it again; None for any other
    message, or anything the general path would reject (it then decodes, or rejects, it itself).
    """
    if len(header) > _MAX_FRAME_HEADER:
        return None
    raw = bytes(header)
    start = raw.find(_INDEX_AT) + len(_INDEX_AT)
    end = raw.find(_AFTER_INDEX, start)
    known = _known_frame_headers.get((raw[:start], raw[end:])) if start >= len(_INDEX_AT) and end >= 0 else None
    if known is None:
        return None
    digits = raw[start:end]  # a JSON integer >= 0: ASCII digits, no leading zero
    if not digits.isdigit() or len(digits) > 18 or (digits[0] == 0x30 and len(digits) > 1):
        return None
    request_id, job, dtype, shape, nbytes = known
    if len(image) != nbytes:
        return None
    try:  # FrameReply checks the pixels (a float16 image must be finite)
        return FrameReply(id=request_id, job=job, index=int(digits),
                          image=np.ndarray(shape, dtype, buffer=image.toreadonly()))
    except ProtocolError:
        return None


def _to_json(value: Any, path: str, buffers: list[dict[str, Any]], payloads: list[bytes | memoryview]) -> Any:
    """`value` as JSON, its arrays moved to `payloads` (described in `buffers`) and replaced by references.

    A plain function, not a closure: a recursive closure is a reference cycle that would keep every
    sent array alive until Python's cycle collector runs.
    """
    if type(value) in _JSON_AS_IS:
        return value
    if isinstance(value, np.ndarray):
        array = _wire_array(value, path)
        if len(buffers) == MAX_BUFFERS:
            raise ValueError(f"{path}: a message carries at most {MAX_BUFFERS} arrays; stack them")
        name = f"{len(buffers)}:{path}"[:MAX_BUFFER_NAME]  # unique by its index, readable by its path
        buffers.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        payloads.append(memoryview(array).cast("B") if array.size else b"")
        return {BUFFER_REF: name}
    if isinstance(value, enum.Enum):
        return _to_json(value.value, path, buffers, payloads)
    if isinstance(value, dict):
        if BUFFER_REF in value:
            raise ValueError(f"{path}: the key {BUFFER_REF!r} is reserved by the protocol")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings, got {key!r}")
            out[key] = item if type(item) in _JSON_AS_IS else _to_json(item, f"{path}.{key}", buffers, payloads)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{path}[{i}]", buffers, payloads) for i, item in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{path}: non-finite number {value} cannot be sent")
        return float(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{path}: cannot send a {type(value).__name__} (use JSON values or numpy arrays)")


def _wire_array(value: np.ndarray, path: str) -> np.ndarray:
    """A C-contiguous little-endian view or copy of `value` with an allowed dtype."""
    dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
    if dtype.str not in ALLOWED_DTYPES:
        raise TypeError(f"{path}: dtype {value.dtype} is not sendable; allowed: {sorted(ALLOWED_DTYPES)}")
    if value.ndim > MAX_NDIM:
        raise ValueError(f"{path}: arrays may have at most {MAX_NDIM} dimensions, got {value.ndim}")
    return np.asarray(value, dtype=dtype, order="C")


# --- decode ---------------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise _bad(ErrorCode.BAD_VALUE, f"header contains the non-finite JSON constant {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _bad(ErrorCode.BAD_VALUE, f"header contains the out-of-range number {text[:40]}")
    return number


_HEADER_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)

_ID_FIELD = re.compile(rb'"id"\s*:\s*"([\x21\x23-\x5b\x5d-\x7e]{1,128})"')


def peek_id(frames: Sequence[Any]) -> str | None:
    """Best-effort request id of a message that failed to decode, so the failure can be correlated.

    Reads the `"id": "..."` field from the first 64 KiB of the header bytes without parsing them, so it works
    for headers that are too large, truncated or otherwise not valid JSON.
    """
    try:
        head = bytes(memoryview(frames[0])[:65536])
    except (IndexError, TypeError):
        return None
    match = _ID_FIELD.search(head)
    return match.group(1).decode("ascii") if match else None


def decode(frames: Sequence[Any], *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """[header, buffer0, ...] (bytes, memoryview or zmq.Frame) -> Message; raises ProtocolError.

    Buffers become read-only numpy arrays over the received bytes (no copy).
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise _bad(ErrorCode.BAD_MESSAGE, "a message needs at least a header frame")
    if len(frames) > MAX_BUFFERS + 1:
        raise _bad(ErrorCode.TOO_LARGE, f"{len(frames) - 1} buffers exceed the limit of {MAX_BUFFERS}")
    views = [memoryview(frame).cast("B") for frame in frames]
    total = sum(map(len, views))  # bytes: the views are flat
    if total > max_message_bytes:
        raise _bad(ErrorCode.TOO_LARGE, f"message of {total} bytes exceeds the limit of {max_message_bytes}",
                   "send large data in several messages or fetch it as an asset")
    if len(views) == 2:
        message = _decode_known_frame(views[0], views[1])
        if message is not None:
            return message
    return _decode_any(views)


def _decode_any(views: list[memoryview]) -> Message:
    """The general path of `decode`, for every message (its size already checked)."""
    header = _parse_header(views[0])
    arrays = _decode_buffers(header["buffers"], views[1:])
    used: set[str] = set()
    body = _resolve_refs(header["body"], arrays, used)
    if len(used) < len(arrays):
        unused = sorted(set(arrays) - used)
        raise _bad(ErrorCode.BAD_BUFFER, f"buffers {unused[:5]} are not referenced by the body")
    cls = MESSAGE_TYPES[header["type"]]
    try:
        message = cls(id=header["id"], job=header["job"], **body)
    except TypeError as error:  # unknown or missing fields
        raise _bad(ErrorCode.BAD_MESSAGE, f"bad body for {header['type']!r}: {error}") from None
    if cls is FrameReply and len(views) == 2:
        _remember_frame_header(message, views[0])
    return message


def _parse_header(view: memoryview) -> dict[str, Any]:
    if view.nbytes > MAX_HEADER_BYTES:
        raise _bad(ErrorCode.TOO_LARGE, f"header of {view.nbytes} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    try:
        header = _HEADER_DECODER.decode(str(view, "utf-8"))
    except UnicodeDecodeError as error:
        raise _bad(ErrorCode.BAD_MESSAGE, f"header is not UTF-8: {error}") from None
    except RecursionError:
        raise _bad(ErrorCode.BAD_MESSAGE, "header JSON is nested too deeply") from None
    except ValueError as error:
        if isinstance(error, ProtocolError):
            raise
        raise _bad(ErrorCode.BAD_MESSAGE, f"header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise _bad(ErrorCode.BAD_MESSAGE, f"header must be a JSON object, got {type(header).__name__}")
    if not _REQUIRED_HEADER_KEYS <= header.keys():
        raise _bad(ErrorCode.BAD_MESSAGE, f"header is missing {sorted(_REQUIRED_HEADER_KEYS - header.keys())}")
    if not header.keys() <= _HEADER_KEYS:
        raise _bad(ErrorCode.BAD_MESSAGE, f"header has unknown keys {sorted(header.keys() - _HEADER_KEYS)[:10]}")
    version = header["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad(ErrorCode.BAD_MESSAGE, f"header 'v' must be an integer, got {version!r:.50}")
    if version != PROTOCOL_VERSION:
        raise _bad(ErrorCode.BAD_VERSION, f"protocol version {version} is not supported (this side speaks "
                   f"{PROTOCOL_VERSION})", "update the Blender add-on and the backend to the same Keyface release")
    if not isinstance(header["type"], str) or header["type"] not in MESSAGE_TYPES:
        raise _bad(ErrorCode.UNKNOWN_TYPE, f"unknown message type {header['type']!r:.50}; known: "
                   f"{sorted(MESSAGE_TYPES)}")
    header.setdefault("job", None)
    if not isinstance(header["body"], dict):
        raise _bad(ErrorCode.BAD_MESSAGE, f"header 'body' must be an object, got {type(header['body']).__name__}")
    if not isinstance(header["buffers"], list):
        raise _bad(ErrorCode.BAD_MESSAGE, "header 'buffers' must be a list")
    return header


def _decode_buffers(specs: list[Any], views: list[memoryview]) -> dict[str, np.ndarray]:
    if len(specs) != len(views):
        raise _bad(ErrorCode.BAD_BUFFER, f"header describes {len(specs)} buffers but {len(views)} were sent")
    arrays: dict[str, np.ndarray] = {}
    for index, (spec, view) in enumerate(zip(specs, views)):
        if not isinstance(spec, dict) or spec.keys() != _BUFFER_KEYS:
            raise _bad(ErrorCode.BAD_BUFFER, f"buffer {index} must be {{name, dtype, shape}}, got {spec!r:.200}")
        name, dtype_name, shape = spec["name"], spec["dtype"], spec["shape"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_BUFFER_NAME or name in arrays:
            raise _bad(ErrorCode.BAD_BUFFER, f"buffer {index} has an invalid or duplicate name {name!r:.100}")
        if not isinstance(dtype_name, str) or dtype_name not in ALLOWED_DTYPES:
            raise _bad(ErrorCode.BAD_DTYPE, f"buffer {name!r} has dtype {dtype_name!r:.50}; allowed: "
                       f"{sorted(ALLOWED_DTYPES)}", "send explicit little-endian dtypes")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape)):
            raise _bad(ErrorCode.BAD_BUFFER, f"buffer {name!r} has an invalid shape {shape!r:.200} "
                       f"(a list of at most {MAX_NDIM} non-negative integers)")
        dtype = ALLOWED_DTYPES[dtype_name]
        expected = math.prod(shape) * dtype.itemsize
        if expected != view.nbytes:
            raise _bad(ErrorCode.BAD_BUFFER, f"buffer {name!r} claims {dtype_name} {shape} = {expected} bytes "
                       f"but {view.nbytes} bytes arrived")
        array = np.ndarray(shape, dtype, buffer=view.toreadonly())  # read-only, over the received bytes
        if dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise _bad(ErrorCode.BAD_VALUE, f"buffer {name!r} contains NaN or infinity")
        arrays[name] = array
    return arrays


def _resolve_refs(value: Any, arrays: dict[str, np.ndarray], used: set[str], depth: int = 0) -> Any:
    """`value` (freshly parsed JSON, changed in place) with its buffer references replaced by the arrays."""
    if depth > 64:
        raise _bad(ErrorCode.BAD_MESSAGE, "body is nested too deeply")
    if isinstance(value, dict):
        if BUFFER_REF in value:
            name = value[BUFFER_REF]
            if len(value) != 1 or not isinstance(name, str) or name not in arrays or name in used:
                raise _bad(ErrorCode.BAD_BUFFER, f"invalid buffer reference {value!r:.200}")
            used.add(name)
            return arrays[name]
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                value[key] = _resolve_refs(item, arrays, used, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) in _CONTAINERS:
                value[index] = _resolve_refs(item, arrays, used, depth + 1)
    return value


def total_bytes(frames: Iterable[bytes | memoryview]) -> int:
    """Size of an encoded message on the wire (without transport overhead)."""
    return sum(memoryview(frame).nbytes for frame in frames)
