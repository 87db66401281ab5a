"""Protocol messages: one frozen dataclass per message type.

Every message carries `id` (the request it belongs to: replies reuse their request's id) and `job`
(the job it concerns, if any). The remaining fields form the JSON `body`; numpy arrays anywhere in the
body travel as binary buffers (see `codec`). Construction validates and raises `ProtocolError`.

Requests (client -> backend): hello, submit, cancel, status, fetch.
Replies (backend -> client): welcome, accepted, progress, frame, result, failed, jobs.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, ClassVar

import numpy as np

from .errors import ErrorCode, ProtocolError
from .types import check_frame_pixels

PROTOCOL_VERSION = 1
"""Bumped on any change to the wire format or to a message's fields."""

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 65536
MAX_FETCH_CHUNK = 64 * 1024 * 1024
"""Largest byte range one `fetch` may ask for."""
DEFAULT_FETCH_CHUNK = 8 * 1024 * 1024

ID_PATTERN = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_ID_LENGTH)
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _bad(message: str, code: ErrorCode = ErrorCode.BAD_MESSAGE) -> ProtocolError:
    return ProtocolError(code, message)


def clip_text(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """`text` cut to `limit` characters (with a marker), for messages built from arbitrary errors."""
    return text if len(text) <= limit else text[: limit - 20] + " ... (truncated)"


def _check_text(name: str, value: Any, *, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_LENGTH or (not allow_empty and not value):
        raise _bad(f"{name} must be {'1' if not allow_empty else '0'}..{MAX_TEXT_LENGTH} characters, got {len(value)}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise _bad(f"{name} must be in {low}..{'' if high is None else high}, got {value}", ErrorCode.BAD_VALUE)


def _check_dict(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _bad(f"{name} must be an object, got {type(value).__name__}")


@functools.cache
def _body_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("id", "job"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every message. `TYPE` is the wire name; `REQUEST` says which side sends it."""

    TYPE: ClassVar[str] = ""
    REQUEST: ClassVar[bool] = False

    id: str
    job: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            raise _bad(f"id must be 1..{MAX_ID_LENGTH} printable ASCII characters, got {self.id!r:.160}")
        if self.job is not None and (not isinstance(self.job, str) or not ID_PATTERN.fullmatch(self.job)):
            raise _bad(f"job must be null or 1..{MAX_ID_LENGTH} printable ASCII characters, got {self.job!r:.160}")

    def body(self) -> dict[str, Any]:
        """The fields that travel in the header's `body` (arrays still in place)."""
        return {name: getattr(self, name) for name in _body_fields(type(self))}


# --- requests -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """Opens a session: the backend answers `welcome` with its version and capabilities."""

    TYPE: ClassVar[str] = "hello"
    REQUEST: ClassVar[bool] = True
    client: str = ""
    """Free text naming the client (e.g. 'blender 5.0.1 / keyface 0.1.0')."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_text("client", self.client)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Submit(Message):
    """Queues a job. Submitting the same request id twice returns the first job (safe to retry)."""

    TYPE: ClassVar[str] = "submit"
    REQUEST: ClassVar[bool] = True
    kind: str
    """The job kind, one of the backend's capabilities (e.g. 'render')."""
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The job's parameters: JSON values and numpy arrays."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise _bad(f"kind must match {_KIND.pattern}, got {self.kind!r:.100}")
        _check_dict("spec", self.spec)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    """Asks the backend to cancel `job` (queued jobs stop at once, running jobs at their next check)."""

    TYPE: ClassVar[str] = "cancel"
    REQUEST: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.job is None:
            raise _bad("cancel needs a job id")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Status(Message):
    """Asks for the state of `job` (or of every job when `job` is null); answered by `jobs`.

    With `attach`, the backend also sends that job's further replies to this client: a client that
    reconnected (new socket) or reloaded gets its job's stream back, including a finished job's result.
    """

    TYPE: ClassVar[str] = "status"
    REQUEST: ClassVar[bool] = True
    attach: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.attach, bool):
            raise _bad(f"attach must be true or false, got {self.attach!r}")
        if self.attach and self.job is None:
            raise _bad("attach needs a job id")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fetch(Message):
    """Asks for bytes [offset, offset+length) of a workspace asset; answered by `result` with buffer 'data'."""

    TYPE: ClassVar[str] = "fetch"
    REQUEST: ClassVar[bool] = True
    asset: str
    """Path of the asset relative to the backend's workspace, '/'-separated (as results name them)."""
    offset: int = 0
    length: int = DEFAULT_FETCH_CHUNK

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_text("asset", self.asset, allow_empty=False)
        _check_int("offset", self.offset, 0)
        _check_int("length", self.length, 1, MAX_FETCH_CHUNK)


# --- replies --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    """Answer to `hello`."""

    TYPE: ClassVar[str] = "welcome"
    protocol: int = PROTOCOL_VERSION
    server: str = ""
    """Backend name and version."""
    capabilities: list[str] = dataclasses.field(default_factory=list)
    """Job kinds this backend runs."""
    device: str = "cpu"
    """Torch device jobs run on ('cpu', 'cuda:0', 'mps')."""
    gpu: dict[str, Any] | None = None
    """{'name': str, 'memory_bytes': int} when a GPU is in use."""
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Limits the backend enforces, e.g. {'max_message_bytes': int}."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("protocol", self.protocol, 1)
        _check_text("server", self.server)
        _check_text("device", self.device)
        if not isinstance(self.capabilities, list) or not all(isinstance(c, str) for c in self.capabilities):
            raise _bad(f"capabilities must be a list of strings, got {self.capabilities!r:.200}")
        if self.gpu is not None:
            _check_dict("gpu", self.gpu)
        _check_dict("limits", self.limits)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Accepted(Message):
    """A job was queued (`position` jobs are ahead of it; 0 = it starts now)."""

    TYPE: ClassVar[str] = "accepted"
    kind: str = ""
    position: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.job is None:
            raise _bad("accepted needs a job id")
        _check_text("kind", self.kind)
        _check_int("position", self.position, 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progress(Message):
    """A running job's progress: step of total in stage, an ETA, optionally a preview image."""

    TYPE: ClassVar[str] = "progress"
    stage: str = ""
    step: int = 0
    total: int = 0
    """0 when the total is unknown."""
    message: str = ""
    eta_s: float | None = None
    """Estimated seconds left in this stage, when the backend can tell."""
    preview: np.ndarray | None = None
    """[H, W, 4] uint8 or float16 preview frame."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_text("stage", self.stage)
        _check_text("message", self.message)
        _check_int("step", self.step, 0)
        _check_int("total", self.total, 0)
        if self.eta_s is not None and (isinstance(self.eta_s, bool) or not isinstance(self.eta_s, (int, float))
                                       or not 0 <= self.eta_s < 1e9):
            raise _bad(f"eta_s must be null or a number in [0, 1e9), got {self.eta_s!r}", ErrorCode.BAD_VALUE)
        if self.preview is not None:
            check_frame_pixels(self.preview)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FrameReply(Message):
    """One output frame of a job (type 'frame'); `index` counts the job's frames from 0."""

    TYPE: ClassVar[str] = "frame"
    index: int = 0
    image: np.ndarray
    """[H, W, 4] uint8 (sRGB) or float16 (linear), straight alpha, row 0 at the top."""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra facts about the frame (e.g. the timeline frame number)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("index", self.index, 0)
        check_frame_pixels(self.image)
        _check_dict("meta", self.meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result(Message):
    """A job's final result, or the answer to `fetch`."""

    TYPE: ClassVar[str] = "result"
    result: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_dict("result", self.result)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failed(Message):
    """A request or a job failed: a stable `code`, a message with the bad values, a hint for the human."""

    TYPE: ClassVar[str] = "failed"
    code: ErrorCode = ErrorCode.INTERNAL
    message: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            object.__setattr__(self, "code", ErrorCode(self.code))
        except ValueError:
            raise _bad(f"unknown error code {self.code!r:.100}") from None
        _check_text("message", self.message)
        _check_text("hint", self.hint)

    def body(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, "hint": self.hint}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Jobs(Message):
    """Answer to `status`: one entry per job (see `backend.service.registry.JobRecord.info`)."""

    TYPE: ClassVar[str] = "jobs"
    jobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.jobs, list) or not all(isinstance(j, dict) for j in self.jobs):
            raise _bad(f"jobs must be a list of objects, got {self.jobs!r:.200}")


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Submit, Cancel, Status, Fetch, Welcome, Accepted, Progress, FrameReply, Result, Failed, Jobs)
}
"""Wire type name -> message class."""

TERMINAL_TYPES = frozenset({"result", "failed"})
"""Reply types that end a job's stream."""
