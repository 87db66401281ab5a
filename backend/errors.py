"""Exceptions a job raises to fail with a stable protocol code (capabilities import this, never `service`)."""

from __future__ import annotations

from pathlib import Path

from shared_proto import ErrorCode


class JobError(Exception):
    """A job failed in a way the user can act on: `code` travels in the `failed` reply with `hint`."""

    def __init__(self, code: ErrorCode, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.hint = hint


class ModelMissingError(JobError):
    """A model's weights are not where the configuration says."""

    def __init__(self, model: str, expected: Path | str, how: str) -> None:
        super().__init__(ErrorCode.MODEL_MISSING, f"{model} is not installed: {expected} does not exist", how)
        self.model = model
        self.expected = Path(expected)


class JobCancelled(Exception):
    """Raised inside a job by `ctx.check_cancelled()` once the job has been cancelled."""
