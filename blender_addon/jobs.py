"""Job book-keeping for the Jobs panel (bpy-free): states, progress, ETA text, retry specs.

A `JobRecord` exists from the moment the add-on asks for a job (state 'submitting', a local `key`) until
the user clears it; the backend's job id arrives with `accepted`. Records change only through
`apply_*` calls on the main thread (the connection thread hands replies over as events).
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from typing import Any, Callable

from shared_proto import ErrorCode, Failed, Progress, Result

TERMINAL_STATES = ("done", "failed", "cancelled", "interrupted")
"""States after which a job sends nothing more."""
LIVE_STATES = ("submitting", "queued", "running")
STATES = (*LIVE_STATES, *TERMINAL_STATES)
FAILED_STATES = {ErrorCode.CANCELLED: "cancelled", ErrorCode.INTERRUPTED: "interrupted"}


def eta_text(seconds: float | None) -> str:
    """'' when unknown, else a short human ETA: '8 s left', '2 min 05 s left', '1 h 03 min left'."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s left"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s left"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min left"


@dataclasses.dataclass
class JobRecord:
    """One job the add-on asked for."""

    kind: str
    """Backend job kind ('render', 'reconstruct', 'edit', ...)."""
    spec: dict[str, Any]
    """The spec as submitted (kept for retry; may hold numpy arrays)."""
    label: str = ""
    """What the Jobs panel calls it, e.g. 'render take_v002 1-48'."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Add-on side facts for when the job ends (take folder, frame range, channel, ...); JSON-safe."""
    key: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    """Local handle, known before the backend's job id."""
    job_id: str = ""
    state: str = "submitting"
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    error: str = ""
    hint: str = ""
    code: str = ""
    result: dict[str, Any] | None = None
    frames_written: int = 0
    created: float = dataclasses.field(default_factory=time.time)
    handled: bool = False
    """True once the add-on acted on the job's end (added the strip, stored the avatar)."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def fraction(self) -> float:
        """Progress of the current stage in [0, 1] (1 when done, 0 when unknown)."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0

    def progress_text(self) -> str:
        """One line: state, stage step/total, ETA."""
        if self.state != "running":
            return self.state
        parts = [self.stage or "running"]
        if self.total:
            parts.append(f"{self.step}/{self.total}")
        eta = eta_text(self.eta_s)
        if eta:
            parts.append(eta)
        return " ".join(parts)

    def apply_accepted(self, job_id: str) -> None:
        self.job_id = job_id
        if self.state == "submitting":
            self.state = "queued"

    def apply_request_error(self, code: str, message: str, hint: str = "") -> None:
        """The backend (or the connection) refused the submit itself."""
        self.state, self.code, self.error, self.hint = "failed", code, message, hint

    def apply_info(self, info: dict[str, Any]) -> None:
        """A `jobs` entry (status / attach)."""
        if self.terminal:
            return
        state = str(info.get("state", self.state))
        if state in STATES:
            self.state = state
        for name in ("stage", "message"):
            if isinstance(info.get(name), str):
                setattr(self, name, info[name])
        for name in ("step", "total"):
            if isinstance(info.get(name), int):
                setattr(self, name, info[name])
        error = info.get("error")
        if self.terminal and isinstance(error, dict):
            self.code, self.error, self.hint = (str(error.get(k, "")) for k in ("code", "message", "hint"))

    def apply_message(self, message: Any) -> None:
        """A Progress, Result or Failed reply of this job (frames are counted by `apply_frame`)."""
        if self.terminal:
            return
        if isinstance(message, Progress):
            self.state = "running"
            self.stage, self.step, self.total, self.eta_s = message.stage, message.step, message.total, message.eta_s
            self.message = message.message
        elif isinstance(message, Result):
            self.state, self.result, self.eta_s = "done", message.result, None
            self.error = self.hint = self.code = ""
        elif isinstance(message, Failed):
            self.state = FAILED_STATES.get(message.code, "failed")
            self.code, self.error, self.hint, self.eta_s = message.code.value, message.message, message.hint, None

    def apply_frame(self) -> None:
        if not self.terminal:
            self.state = "running"
        self.frames_written += 1

    def error_text(self) -> str:
        """'[code] message' for failed jobs ('' otherwise)."""
        if not self.error:
            return ""
        return f"[{self.code}] {self.error}" if self.code else self.error

    def retry(self) -> JobRecord:
        """A fresh record with the same kind, spec and options (the caller picks a new take folder)."""
        return JobRecord(kind=self.kind, spec=copy.deepcopy(self.spec), label=self.label,
                         options=copy.deepcopy(self.options))


class JobBook:
    """Every JobRecord of this Blender session, by local key and by backend job id."""

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}

    def add(self, record: JobRecord) -> JobRecord:
        self._records[record.key] = record
        return record

    def get(self, key: str) -> JobRecord | None:
        return self._records.get(key)

    def by_job_id(self, job_id: str) -> JobRecord | None:
        if not job_id:
            return None
        return next((r for r in self._records.values() if r.job_id == job_id), None)

    def records(self) -> list[JobRecord]:
        """Oldest first."""
        return sorted(self._records.values(), key=lambda r: r.created)

    def live(self) -> list[JobRecord]:
        return [r for r in self.records() if not r.terminal]

    def clear_finished(self, where: Callable[[JobRecord], bool] = lambda record: True) -> int:
        """Forget terminal records (those for which `where(record)` holds); returns how many."""
        finished = [key for key, record in self._records.items() if record.terminal and where(record)]
        for key in finished:
            del self._records[key]
        return len(finished)
