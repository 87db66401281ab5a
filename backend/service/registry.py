"""Job records: state, progress, subscriber and result of every job, shared by the I/O and worker threads."""

from __future__ import annotations

import dataclasses
import enum
import json
import secrets
import threading
import time
from typing import Any

import numpy as np

from .workspace import Workspace


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclasses.dataclass
class JobRecord:
    """One job. Mutated only under `JobRegistry.lock`."""

    job: str
    kind: str
    request_id: str
    spec: dict[str, Any]
    peer: bytes | None
    """ZeroMQ identity of the client that receives this job's replies (None: nobody listening)."""
    state: JobState = JobState.QUEUED
    stage: str = ""
    step: int = 0
    total: int = 0
    message: str = ""
    eta_s: float | None = None
    created: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)

    def info(self) -> dict[str, Any]:
        """Public summary (the entries of a `jobs` reply and of job.json)."""
        return {
            "job": self.job, "kind": self.kind, "request_id": self.request_id, "state": self.state.value,
            "stage": self.stage, "step": self.step, "total": self.total, "message": self.message,
            "eta_s": self.eta_s, "created": self.created, "started": self.started, "finished": self.finished,
            "error": self.error,
        }


def new_job_id() -> str:
    """Sortable, readable and unique: j<UTC date>-<time>-<random>."""
    return time.strftime("j%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def json_safe(value: Any) -> Any:
    """`value` with numpy arrays replaced by a description (for job.json)."""
    if isinstance(value, np.ndarray):
        return {"array": {"dtype": value.dtype.str, "shape": list(value.shape)}}
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


class JobRegistry:
    """All jobs of this backend; persisted to the workspace on every state change."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._by_request: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        """Previous runs' jobs; those that were queued or running when the backend stopped become interrupted."""
        for saved in self.workspace.load_records():
            try:
                record = JobRecord(job=saved["job"], kind=saved["kind"], request_id=saved["request_id"], spec={},
                                   peer=None, state=JobState(saved["state"]), stage=saved.get("stage", ""),
                                   created=saved.get("created") or 0.0, started=saved.get("started"),
                                   finished=saved.get("finished"), error=saved.get("error"),
                                   result=saved.get("result"), message=saved.get("message", ""))
            except (KeyError, ValueError, TypeError):
                continue
            if not record.state.finished:
                record.state = JobState.INTERRUPTED
                record.error = {"code": "interrupted", "message": "the backend stopped while this job was "
                                f"{saved['state']}", "hint": "submit it again"}
                self._persist(record)
            self._jobs[record.job] = record
            self._by_request[record.request_id] = record.job

    def _persist(self, record: JobRecord) -> None:
        saved = record.info()
        if record.result is not None:
            saved["result"] = json_safe(record.result)
        try:
            json.dumps(saved)
        except (TypeError, ValueError):
            saved.pop("result", None)
        self.workspace.save_record(record.job, saved)

    def create(self, kind: str, request_id: str, spec: dict[str, Any], peer: bytes) -> JobRecord:
        with self.lock:
            record = JobRecord(job=new_job_id(), kind=kind, request_id=request_id, spec=spec, peer=peer)
            while record.job in self._jobs:
                record.job = new_job_id()
            self._jobs[record.job] = record
            self._by_request[request_id] = record.job
            self._persist(record)
            return record

    def get(self, job_id: str) -> JobRecord | None:
        with self.lock:
            return self._jobs.get(job_id)

    def by_request(self, request_id: str) -> JobRecord | None:
        with self.lock:
            job_id = self._by_request.get(request_id)
            return self._jobs.get(job_id) if job_id else None

    def all(self) -> list[JobRecord]:
        with self.lock:
            return sorted(self._jobs.values(), key=lambda r: r.created)

    def count(self, state: JobState) -> int:
        """How many jobs are in `state`."""
        with self.lock:
            return sum(1 for r in self._jobs.values() if r.state is state)

    def queued_before(self, record: JobRecord) -> int:
        """Jobs queued or running ahead of `record`."""
        with self.lock:
            return sum(1 for r in self._jobs.values()
                       if r is not record and not r.state.finished and r.created <= record.created)

    def update(self, record: JobRecord, *, persist: bool = False, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(record, name, value)
            if persist:
                self._persist(record)

    def detach_peer(self, peer: bytes) -> None:
        """A client went away: stop addressing its jobs' replies to it (the jobs keep running)."""
        with self.lock:
            for record in self._jobs.values():
                if record.peer == peer:
                    record.peer = None
