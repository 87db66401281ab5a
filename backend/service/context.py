"""What a running job sees: progress reporting, frame streaming, cancellation and atomic files."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from shared_proto import FrameReply, Message, Progress

from ..atomic import atomic_path
from ..errors import JobCancelled
from .registry import JobRecord, JobRegistry
from .workspace import Workspace

MAX_ETA_S = 1e8
"""ETAs are capped (the protocol refuses absurd values)."""
PROGRESS_INTERVAL_S = 0.1
"""Progress replies are sent at most this often (stage changes and the last step always go out)."""


class JobContext:
    """Handed to `run(spec, ctx)`. Methods may be called from the job's thread or threads it starts."""

    def __init__(self, record: JobRecord, registry: JobRegistry, workspace: Workspace, device: str,
                 emit: Callable[[Message], None]) -> None:
        self._record = record
        self._registry = registry
        self._emit = emit
        self._last_sent = 0.0
        self._stage_started = time.monotonic()
        self.workspace = workspace
        self.device = device
        """Torch device string for this job ('cpu', 'cuda:0', 'mps')."""
        self.job_id = record.job
        self.workdir: Path = workspace.job_dir(record.job)
        """This job's folder: outputs and checkpoints (survives restarts, so a resubmitted job can resume)."""

    # --- cancellation ---

    @property
    def cancelled(self) -> bool:
        return self._record.cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled; call it between steps of long work."""
        if self._record.cancel.is_set():
            raise JobCancelled(self.job_id)

    # --- streaming ---

    def progress(self, stage: str, step: int = 0, total: int = 0, message: str = "",
                 preview: np.ndarray | None = None) -> None:
        """Report `step` of `total` in `stage` (throttled), optionally with an [H, W, 4] preview; checks cancel."""
        self.check_cancelled()
        record = self._record
        now = time.monotonic()
        if stage != record.stage:
            self._stage_started = now
        eta = None
        if total and 0 < step < total:
            eta = min((now - self._stage_started) / step * (total - step), MAX_ETA_S)
        important = stage != record.stage or (total and step >= total) or preview is not None
        self._registry.update(record, stage=stage, step=step, total=total, message=message, eta_s=eta)
        if not important and now - self._last_sent < PROGRESS_INTERVAL_S:
            return
        self._last_sent = now
        self._emit(Progress(id=record.request_id, job=record.job, stage=stage, step=step, total=total,
                            message=message, eta_s=eta, preview=preview))

    def frame(self, index: int, image: np.ndarray, **meta: Any) -> None:
        """Stream one output frame ([H, W, 4] uint8 or float16, straight alpha) to the client."""
        self.check_cancelled()
        self._emit(FrameReply(id=self._record.request_id, job=self.job_id, index=index, image=image, meta=meta))

    # --- files ---

    @contextlib.contextmanager
    def atomic_path(self, relative: str | os.PathLike) -> Iterator[Path]:
        """A temporary path that becomes `workdir / relative` only if the block succeeds."""
        with atomic_path(self.workdir / relative) as temp:
            yield temp

    def asset_name(self, path: str | os.PathLike) -> str:
        """The name a client passes to `fetch` for a file this job wrote."""
        return self.workspace.asset_name(path)
