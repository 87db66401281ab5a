"""Turning whatever a job raised into a stable protocol failure (code, message, hint)."""

from __future__ import annotations

import logging

from shared_proto import ErrorCode, ProtocolError

from ..errors import JobError
from ..flame import FlameFileError, FlameFileMissingError

log = logging.getLogger("keyface.backend")


def describe_failure(error: BaseException, job: str) -> tuple[ErrorCode, str, str]:
    """(code, message, hint) for an exception raised by job `job`; unexpected ones are logged with traceback."""
    if isinstance(error, JobError):
        return error.code, error.message, error.hint
    if isinstance(error, FlameFileMissingError):
        return ErrorCode.MODEL_MISSING, f"{error.path}: {error.problem}", error.hint
    if isinstance(error, FlameFileError):
        return ErrorCode.BAD_SPEC, f"{error.path}: {error.problem}", error.hint
    if isinstance(error, ProtocolError):
        return error.code, error.message, error.hint or "check the values sent with the job"
    if isinstance(error, (ValueError, TypeError)):
        return ErrorCode.BAD_SPEC, str(error), "check the job's settings; the message names the bad value"
    if isinstance(error, FileNotFoundError):
        return ErrorCode.NOT_FOUND, str(error), "check that the file exists on the backend's machine"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return (ErrorCode.OUT_OF_MEMORY, f"out of memory: {error}".strip(),
                "try draft quality, a lower resolution or fewer frames, or close other GPU programs")
    log.error("job %s crashed", job, exc_info=error)
    return (ErrorCode.INTERNAL, f"{type(error).__name__}: {error}",
            "this is a bug in the backend; its log has the traceback (please include it in a report)")
