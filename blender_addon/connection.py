"""The add-on's one backend connection (bpy-free): a background thread owns the socket, Blender never waits.

    main thread (operators, bpy.app.timers)          connection thread (never touches bpy)
      Connection.submit/attach/cancel  ──commands──>   shared_client.Client (Lazy Pirate, one attempt)
      Connection.drain()/next_event()  <──events────   replies, frames written to the take folder, status

Only the connection thread uses the Client (it is not thread-safe); the main thread only puts commands on
a queue and takes events off another, so a dead or slow backend can never freeze Blender. Returned
frames of a job submitted with a `frames_dir` are written there by the connection thread (atomic PNGs,
see takes.py) and reported as `FrameWritten`. A backend that stops answering is reported as
`StatusChanged(connected=False, warning=...)`; the thread keeps trying to reconnect and re-attaches
every unfinished job when it is back.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Union

import zmq

from shared_client import BackendUnavailable, Client, RequestFailed
from shared_proto import FrameReply, Jobs

from .takes import write_frame

POLL_S = 0.05
"""How long the connection thread waits on the socket between looks at its command queue."""


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """What the Connection panel shows."""

    connected: bool
    text: str
    device: str = ""
    capabilities: tuple[str, ...] = ()
    warning: bool = False
    """True when a backend that was connected stopped answering (the panel shows a warning)."""


@dataclasses.dataclass(frozen=True)
class StatusChanged:
    status: BackendStatus


@dataclasses.dataclass(frozen=True)
class SubmitAccepted:
    key: str
    job_id: str


@dataclasses.dataclass(frozen=True)
class JobRefused:
    """A submit, attach or cancel the backend (or a missing connection) refused."""

    key: str
    job_id: str
    code: str
    message: str
    hint: str = ""


@dataclasses.dataclass(frozen=True)
class JobReply:
    """A Progress, Result or Failed reply, or a FrameReply of a job that has no frames_dir."""

    job_id: str
    message: Any


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """A `jobs` entry for one job (after attach or a heartbeat)."""

    job_id: str
    info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FrameWritten:
    job_id: str
    frame: int
    path: str


Event = Union[StatusChanged, SubmitAccepted, JobRefused, JobReply, JobInfo, FrameWritten]


class Connection:
    """One backend address, served by a daemon thread. See the module docstring."""

    def __init__(self, address: str, *, timeout: float = 3.0, heartbeat: float = 2.0, retry_every: float = 1.0,
                 name: str = "blender keyface add-on") -> None:
        """
        Args:
            address: the backend endpoint, e.g. tcp://127.0.0.1:5555.
            timeout: seconds each request waits for its reply before the backend counts as gone.
            heartbeat: seconds between liveness checks of a quiet backend.
            retry_every: seconds between reconnect attempts while the backend is gone.
        """
        if not isinstance(address, str) or "://" not in address:
            raise ValueError(f"address must look like tcp://host:port, got {address!r}")
        if timeout <= 0 or heartbeat <= 0 or retry_every <= 0:
            raise ValueError(f"timeout, heartbeat and retry_every must be > 0, got {timeout}, {heartbeat}, "
                             f"{retry_every}")
        self.address = address
        self.timeout, self.heartbeat, self.retry_every, self.name = timeout, heartbeat, retry_every, name
        self.status = BackendStatus(False, f"connecting to {address}")
        """The latest status (replaced, never mutated, by the connection thread)."""
        self._commands: queue.Queue = queue.Queue()
        self._events: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._client: Client | None = None
        self._jobs: dict[str, tuple[Any, str | None]] = {}  # job id -> (shared_client.Job, frames_dir)
        self._last_beat = time.monotonic()
        self._ever_connected = False
        self._thread = threading.Thread(target=self._run, name="keyface-connection", daemon=True)
        self._thread.start()

    # --- main-thread API (never blocks, except next_event's explicit timeout) ---

    def submit(self, key: str, kind: str, spec: dict[str, Any], frames_dir: str | None = None) -> None:
        """Ask for a job; `SubmitAccepted(key, job_id)` or `JobRefused(key, ...)` follows."""
        self._commands.put(("submit", key, kind, spec, frames_dir))

    def attach(self, job_id: str, frames_dir: str | None = None) -> None:
        """Follow a job submitted earlier (before a file reload or a restart)."""
        self._commands.put(("attach", job_id, frames_dir))

    def cancel(self, job_id: str) -> None:
        self._commands.put(("cancel", job_id))

    def drain(self, limit: int | None = None) -> list[Event]:
        """Events that have arrived, oldest first (at most `limit`); never blocks."""
        events = []
        while limit is None or len(events) < limit:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events

    def next_event(self, timeout: float) -> Event | None:
        """The next event, waiting up to `timeout` s (for blocking operators under `blender -b`)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, wait: float = 2.0) -> None:
        """Stop the thread (jobs keep running on the backend; a new Connection can attach to them)."""
        self._closing.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(wait)

    # --- connection thread ---

    def _emit(self, event: Event) -> None:
        self._events.put(event)

    def _set_status(self, status: BackendStatus) -> None:
        if status != self.status:
            self.status = status
            self._emit(StatusChanged(status))

    def _run(self) -> None:
        next_try = 0.0
        while not self._closing.is_set():
            try:
                if self._client is None:
                    if time.monotonic() >= next_try and not self._connect():
                        next_try = time.monotonic() + self.retry_every
                    self._handle_commands(wait=POLL_S)
                    continue
                self._client.poll(POLL_S)
                self._forward_replies()
                self._handle_commands(wait=0.0)
                if time.monotonic() - self._last_beat >= self.heartbeat:
                    self._beat()
            except (BackendUnavailable, zmq.ZMQError) as error:  # the thread must outlive any socket trouble
                self._lost(str(error))
                next_try = time.monotonic() + self.retry_every
                self._closing.wait(POLL_S)
        if self._client is not None:
            self._client.close()

    def _connect(self) -> bool:
        client = Client(self.address, timeout=self.timeout, retries=0, name=self.name)
        try:
            welcome = client.hello()
        except BackendUnavailable as error:
            client.close()
            if self._ever_connected:
                self._set_status(BackendStatus(False, f"backend at {self.address} is not answering; reconnecting",
                                               warning=True))
            else:
                self._set_status(BackendStatus(False, str(error)))
            return False
        except RequestFailed as error:
            client.close()
            self._set_status(BackendStatus(False, str(error), warning=True))
            return False
        self._client, self._ever_connected, self._last_beat = client, True, time.monotonic()
        gpu = f" ({welcome.gpu['name']})" if welcome.gpu else ""
        self._set_status(BackendStatus(True, f"{welcome.server}: {len(welcome.capabilities)} job kinds",
                                       f"{welcome.device}{gpu}", tuple(welcome.capabilities)))
        for job_id, (_, frames_dir) in list(self._jobs.items()):
            self._attach(job_id, frames_dir)
        return True

    def _lost(self, text: str) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._ever_connected:
            self._set_status(BackendStatus(False, f"lost the backend at {self.address}; reconnecting ({text})",
                                           warning=True))
        else:
            self._set_status(BackendStatus(False, f"cannot reach {self.address}: {text}"))

    def _handle_commands(self, wait: float) -> None:
        try:
            command = self._commands.get(timeout=wait) if wait > 0 else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _handle(self, command: tuple) -> None:
        name, rest = command[0], command[1:]
        if self._client is None:
            if name == "attach":  # remembered: attached as soon as the backend answers
                self._jobs.setdefault(rest[0], (None, rest[1]))
                return
            key, job_id = (rest[0], "") if name == "submit" else ("", rest[0])
            self._emit(JobRefused(key, job_id, "not_connected", self.status.text,
                                  f"start the backend ('python -m backend serve') and connect to {self.address}"))
            return
        try:
            if name == "submit":
                key, kind, spec, frames_dir = rest
                job = self._client.submit(kind, spec)
                self._jobs[job.id] = (job, frames_dir)
                self._emit(SubmitAccepted(key, job.id))
            elif name == "attach":
                self._attach(*rest)
            elif name == "cancel":
                info = self._client.cancel(rest[0])
                self._emit(JobInfo(rest[0], info))
        except RequestFailed as error:
            key, job_id = (rest[0], "") if name == "submit" else ("", rest[0])
            self._emit(JobRefused(key, job_id, error.code.value, error.message, error.hint))
        except BackendUnavailable as error:
            if name != "attach":  # an attach is remembered and retried after the reconnect
                key, job_id = (rest[0], "") if name == "submit" else ("", rest[0])
                self._emit(JobRefused(key, job_id, "unavailable", str(error), "the add-on reconnects by itself; "
                                      "retry when the Connection panel says connected"))
            raise

    def _attach(self, job_id: str, frames_dir: str | None) -> None:
        self._jobs.setdefault(job_id, (None, frames_dir))  # retried after a reconnect if this attempt fails
        try:
            job = self._client.attach(job_id)
        except RequestFailed as error:
            self._jobs.pop(job_id, None)
            self._emit(JobRefused("", job_id, error.code.value, error.message, error.hint))
            return
        self._jobs[job_id] = (job, frames_dir)
        self._emit(JobInfo(job_id, {"state": job.state}))
        self._forward_replies()

    def _forward_replies(self) -> None:
        for job_id, (job, frames_dir) in list(self._jobs.items()):
            if job is None:
                continue
            for message in job.pop_replies():
                if isinstance(message, FrameReply) and frames_dir:
                    frame = message.meta.get("frame", message.index)
                    try:
                        path = write_frame(frames_dir, int(frame), message.image)
                    except OSError as error:  # disk full, folder removed: stop the job, say why
                        self._emit(JobRefused("", job_id, "write_failed", f"could not write frame {frame} into "
                                              f"{frames_dir}: {error}", "free disk space or check the take folder"))
                        self._client.cancel(job_id)
                        continue
                    self._emit(FrameWritten(job_id, int(frame), str(path)))
                elif not isinstance(message, Jobs):
                    self._emit(JobReply(job_id, message))
            if job.done:
                del self._jobs[job_id]

    def _beat(self) -> None:
        """Liveness check: re-attach quiet unfinished jobs, or a plain status request when none runs."""
        self._last_beat = now = time.monotonic()
        live = [job for job, _ in self._jobs.values() if job is not None and not job.done]
        if not live:
            self._client.status()
            return
        for job in live:
            if now - job.last_heard >= self.heartbeat:
                self._client.attach(job.id)
                self._emit(JobInfo(job.id, {"state": job.state}))
