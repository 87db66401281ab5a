"""Stable error codes and the exception that carries them.

Codes are part of the protocol: a client may branch on them, so existing values never change meaning.
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """Why a request failed. The string value is what travels in a `failed` reply."""

    BAD_MESSAGE = "bad_message"
    """The frames are not a well-formed message (header not UTF-8 JSON, not an object, missing fields)."""
    BAD_VERSION = "bad_version"
    """The header's protocol version is not the one this peer speaks."""
    UNKNOWN_TYPE = "unknown_type"
    """The message type is unknown, or not one this peer accepts."""
    BAD_DTYPE = "bad_dtype"
    """A buffer's dtype is not on the little-endian allow-list."""
    BAD_BUFFER = "bad_buffer"
    """A buffer's byte size disagrees with dtype x shape, or buffers and references do not match."""
    TOO_LARGE = "too_large"
    """The message, the header or a buffer exceeds a size limit."""
    BAD_VALUE = "bad_value"
    """A value is invalid: NaN/inf, out of its sane range, or of the wrong shape."""
    UNKNOWN_JOB_KIND = "unknown_job_kind"
    """`submit` named a job kind this backend does not offer."""
    UNKNOWN_JOB = "unknown_job"
    """`cancel`/`status` named a job id this backend does not know."""
    BAD_SPEC = "bad_spec"
    """The job spec was rejected by the job (missing or invalid fields)."""
    QUEUE_FULL = "queue_full"
    """The backend's job queue is full; try again later."""
    NOT_FOUND = "not_found"
    """A requested asset does not exist."""
    MODEL_MISSING = "model_missing"
    """A model's weights are not installed where the configuration says."""
    OUT_OF_MEMORY = "out_of_memory"
    """The job ran out of (GPU) memory; a lower resolution, draft quality or fewer frames may fit."""
    CANCELLED = "cancelled"
    """The job was cancelled."""
    INTERRUPTED = "interrupted"
    """The job was running when the backend stopped; resubmit to resume from its checkpoint."""
    INTERNAL = "internal"
    """A bug or an unexpected failure inside the backend; the message says what, the log says where."""


class ProtocolError(ValueError):
    """A message or value was rejected. Carries a stable `code` and a human `hint`."""

    def __init__(self, code: ErrorCode, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.hint = hint

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, hint={self.hint!r})"
