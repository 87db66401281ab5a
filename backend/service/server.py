"""The ZeroMQ service: one I/O thread owns the ROUTER socket, worker threads run jobs from a queue.

    client DEALER ──tcp──> ROUTER (I/O thread) ──queue──> worker threads ──reply queue──> I/O thread

Workers never touch the ROUTER: they encode their replies into a bounded queue and, when it was empty,
wake the I/O thread over inproc; the I/O thread routes each reply to the client currently attached to
that job. Replies to a client that stopped reading wait in a bounded outbox (back-pressure reaches the
job); a client that vanished is detached and its jobs keep running, so a reconnecting client can
`status --attach` and get the stream and result back.
"""

from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from shared_proto import (
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    ErrorCode,
    Failed,
    Fetch,
    Hello,
    Jobs,
    Message,
    ProtocolError,
    Result,
    Status,
    Submit,
    Welcome,
    decode,
    encode,
    peek_id,
)
from shared_proto.codec import MAX_HEADER_BYTES
from shared_proto.messages import clip_text

from .. import __version__
from ..errors import JobCancelled
from . import security
from .config import ServerConfig
from .context import JobContext
from .device import gpu_info, resolve_device
from .failures import describe_failure
from .jobs import JobKind, job_table
from .registry import JobRecord, JobRegistry, JobState
from .workspace import Workspace

log = logging.getLogger("keyface.backend")

_POLLIN, _POLLOUT, _EVENTS = int(zmq.POLLIN), int(zmq.POLLOUT), int(zmq.EVENTS)  # plain ints: enum flag
_NOBLOCK, _SEND_PART = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)  # arithmetic is slow per frame

OUTBOX_LIMIT = 16
"""Replies waiting for slow clients before the I/O thread stops taking more from the workers."""
REPLY_QUEUE_LIMIT = 8
"""Encoded replies waiting for the I/O thread before a worker blocks."""
REPLY_QUEUE_RESUME = REPLY_QUEUE_LIMIT // 2
"""A blocked worker resumes once the queue is down to this many (not at the first free slot: fewer wake-ups)."""
RETRY_MS = 5
"""How long the I/O thread sleeps before retrying replies to a client that had no room."""
MAX_STATUS_JOBS = 200


def brief(info: dict[str, Any]) -> dict[str, Any]:
    """A job summary for the all-jobs listing, texts shortened so 200 of them fit in one header."""
    error = info["error"]
    return {**info, "message": clip_text(info["message"], 500),
            "error": None if error is None else {k: clip_text(str(v), 500) for k, v in error.items()}}


def failure(request_id: str, job: str | None, code: ErrorCode, message: str, hint: str = "") -> Failed:
    """A `failed` reply whose texts (often built from arbitrary exceptions) fit the protocol's limits."""
    return Failed(id=request_id, job=job, code=code, message=clip_text(message), hint=clip_text(hint))


class Server:
    """A running backend. `start()` binds and returns the endpoint; `stop()` shuts down cleanly."""

    def __init__(self, config: ServerConfig, jobs: dict[str, JobKind] | None = None) -> None:
        security.check_bind(config.bind, config.curve_keys)
        self.config = config
        self.jobs = jobs if jobs is not None else job_table()
        self.device = resolve_device(config.device)
        self.workspace = Workspace(config.workspace)
        self.registry = JobRegistry(self.workspace)
        self.endpoint = ""
        self._context = zmq.Context()
        self._queue: queue.Queue[str] = queue.Queue()  # capacity is counted in the registry (cancels free it)
        self._inproc = f"inproc://keyface-wake-{id(self)}"
        self._replies: collections.deque[tuple[str, list[Any]]] = collections.deque()  # (job, encoded reply)
        self._replies_room = threading.Condition()
        self._waiting_workers = 0  # workers blocked on a full reply queue (changed under _replies_room)
        self._stopping = threading.Event()  # workers take no new jobs
        self._io_stop = threading.Event()  # the I/O thread exits after flushing
        self._threads: list[threading.Thread] = []
        self._authenticator: Any = None
        self._router: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self._outbox: dict[bytes, collections.deque] = {}
        self._blocked_since: dict[bytes, float] = {}
        self._pending = 0
        self._flush_deadline = 0.0  # after stop(): how long the I/O thread may still flush replies

    # --- lifecycle ---

    def start(self) -> str:
        """Bind, start the I/O thread and workers; return the bound endpoint."""
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, OUTBOX_LIMIT)
        # frames over the whole-message limit drop the connection (memory safety); anything smaller is
        # received and, if the message as a whole is too large, answered with `too_large`
        router.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes + MAX_HEADER_BYTES)
        router.setsockopt(zmq.HEARTBEAT_IVL, int(self.config.heartbeat_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.config.heartbeat_s * 5000))
        if self.config.curve_keys is not None:
            self._enable_curve(router, self.config.curve_keys)
        try:
            router.bind(self.config.bind)
        except zmq.ZMQError as error:
            router.close()
            self._shutdown_context()
            raise OSError(f"cannot bind {self.config.bind}: {error}") from None
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        wake = self._context.socket(zmq.PULL)
        wake.bind(self._inproc)
        self._router, self._wake = router, wake
        self._threads.append(threading.Thread(target=self._io_loop, name="keyface-io", daemon=True))
        for index in range(self.config.workers):
            self._threads.append(threading.Thread(target=self._worker_loop, name=f"keyface-worker-{index}",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        log.info("listening on %s (device %s, workspace %s)", self.endpoint, self.device, self.workspace.root)
        return self.endpoint

    def _enable_curve(self, router: zmq.Socket, keys: Path) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        self._authenticator = ThreadAuthenticator(self._context)
        self._authenticator.start()
        self._authenticator.configure_curve(domain="*", location=str(security.authorized_clients_dir(keys)))
        public, secret = zmq.auth.load_certificate(security.server_secret_key_path(keys))
        router.curve_secretkey = secret
        router.curve_publickey = public
        router.curve_server = True

    def alive(self) -> bool:
        """False once the I/O thread has died (the backend can no longer answer anyone)."""
        return any(t.name == "keyface-io" and t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, interrupt running ones (they checkpoint), flush replies, close sockets."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for record in self.registry.all():
            if record.state is JobState.RUNNING:
                record.cancel.set()
        deadline = time.monotonic() + timeout
        workers = [t for t in self._threads if t.name.startswith("keyface-worker")]
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._flush_deadline = time.monotonic() + 2.0
        self._io_stop.set()
        for thread in self._threads:
            if thread not in workers:
                thread.join(max(0.5, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            log.warning("a job did not stop within %.0f s; exiting without waiting for it", timeout)
            return
        self._shutdown_context()

    def _shutdown_context(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    # --- I/O thread ---

    def _io_loop(self) -> None:
        router, wake = self._router, self._wake
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        trust_room = True  # POLLOUT on the ROUTER means room for the replies waiting (see below)
        router_events = _POLLIN
        try:
            while not self._io_stop.is_set() or (time.monotonic() < self._flush_deadline
                                                  and (self._pending or self._replies)):
                wake_on_room = bool(self._pending) and trust_room
                if router_events != (wanted := _POLLIN | (_POLLOUT if wake_on_room else 0)):
                    poller.modify(router, wanted)
                    router_events = wanted
                # replies queued by workers are taken at once, unless slow clients already hold OUTBOX_LIMIT
                # of them (then the queue fills and the workers wait: back-pressure)
                ready = self._replies and self._pending < OUTBOX_LIMIT
                events = dict(poller.poll(0 if ready else 100 if wake_on_room or not self._pending else RETRY_MS))
                if events.get(router, 0) & _POLLIN:
                    self._receive_requests(router)
                if events.get(wake):
                    self._drain_wake_ups(wake)
                self._forward_replies()
                # with ROUTER_MANDATORY, POLLOUT means *some* client has room; asked for and not set, no client
                # has any, and a send would only fail
                room = events.get(router, 0) & _POLLOUT
                if self._pending and (room or not wake_on_room):
                    sent = self._flush(router)
                    # when POLLOUT woke us and nothing could be sent, the room is another client's: retry on a
                    # timer instead of spinning until something is sent again
                    trust_room = sent or not room
        finally:
            router.close(linger=1000)  # let what ZeroMQ already holds reach the clients
            wake.close(linger=0)

    def _receive_requests(self, router: zmq.Socket) -> None:
        for _ in range(64):  # bounded, so replies keep flowing under a request flood
            try:
                frames = router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            peer, payload = frames[0].bytes, frames[1:]
            try:
                self._handle(peer, payload)
            except Exception as error:  # the server never dies on one request
                log.exception("internal error handling a request")
                self._reply(peer, failure(peek_id(payload) or "-", None, ErrorCode.INTERNAL,
                                          f"{type(error).__name__}: {error}",
                                          "this is a bug in the backend; its log has the traceback"))

    def _handle(self, peer: bytes, payload: list[Any]) -> None:
        try:
            message = decode(payload, max_message_bytes=self.config.max_message_bytes)
            if not message.REQUEST:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"{message.TYPE!r} is a reply, not a request",
                                    "send hello, submit, cancel, status or fetch")
        except ProtocolError as error:
            log.debug("rejected a message from %s: %s", peer.hex(), error)
            self._reply(peer, failure(peek_id(payload) or "-", None, error.code, error.message,
                                      error.hint or "the client sent a malformed message; update it"))
            return
        handler = {Hello: self._on_hello, Submit: self._on_submit, Cancel: self._on_cancel,
                   Status: self._on_status, Fetch: self._on_fetch}[type(message)]
        try:
            handler(peer, message)
        except ProtocolError as error:
            self._reply(peer, failure(message.id, message.job, error.code, error.message, error.hint))

    def _on_hello(self, peer: bytes, message: Hello) -> None:
        self._reply(peer, Welcome(
            id=message.id, protocol=PROTOCOL_VERSION, server=f"keyface-backend {__version__}",
            capabilities=sorted(self.jobs), device=self.device, gpu=gpu_info(self.device),
            limits={"max_message_bytes": self.config.max_message_bytes, "max_queue": self.config.max_queue,
                    "workers": self.config.workers},
        ))

    def _on_submit(self, peer: bytes, message: Submit) -> None:
        existing = self.registry.by_request(message.id)
        if existing is not None:  # a retried submit: same job, now streaming to this peer
            with self.registry.lock:
                existing.peer = peer
                terminal = self._terminal_message(existing) if existing.state.finished else None
            self._reply(peer, Accepted(id=message.id, job=existing.job, kind=existing.kind,
                                       position=self.registry.queued_before(existing)))
            if terminal is not None:
                self._reply(peer, terminal)
            return
        kind = self.jobs.get(message.kind)
        if kind is None:
            raise ProtocolError(ErrorCode.UNKNOWN_JOB_KIND, f"unknown job kind {message.kind!r}",
                                f"this backend runs: {', '.join(sorted(self.jobs))}")
        if kind.validate is not None:
            try:
                kind.validate(message.spec)
            except (ValueError, TypeError) as error:
                code = error.code if isinstance(error, ProtocolError) else ErrorCode.BAD_SPEC
                raise ProtocolError(code, str(error), f"fix the {kind.name} settings and submit again") from None
        if self._stopping.is_set():
            raise ProtocolError(ErrorCode.QUEUE_FULL, "the backend is shutting down", "start it again")
        if self.registry.count(JobState.QUEUED) >= self.config.max_queue:
            raise ProtocolError(ErrorCode.QUEUE_FULL, f"{self.config.max_queue} jobs are already waiting",
                                "wait for running jobs to finish, or cancel some")
        record = self.registry.create(kind.name, message.id, message.spec, peer)
        self._queue.put(record.job)
        self._reply(peer, Accepted(id=message.id, job=record.job, kind=record.kind,
                                   position=self.registry.queued_before(record)))

    def _on_cancel(self, peer: bytes, message: Cancel) -> None:
        record = self._known_job(message.job)
        record.cancel.set()
        with self.registry.lock:
            was_queued = record.state is JobState.QUEUED
            if was_queued:
                self.registry.update(record, state=JobState.CANCELLED, finished=time.time(), persist=True,
                                     error={"code": ErrorCode.CANCELLED.value, "message": "cancelled while queued",
                                            "hint": ""})
        self._reply(peer, Jobs(id=message.id, job=record.job, jobs=[record.info()]))
        if was_queued and record.peer is not None:
            self._reply(record.peer, Failed(id=record.request_id, job=record.job, code=ErrorCode.CANCELLED,
                                            message="cancelled while queued"))

    def _on_status(self, peer: bytes, message: Status) -> None:
        if message.job is None:
            infos = [brief(record.info()) for record in self.registry.all()[-MAX_STATUS_JOBS:]]
            self._reply(peer, Jobs(id=message.id, jobs=infos))
            return
        record = self._known_job(message.job)
        with self.registry.lock:  # a consistent snapshot: never "done" without its result
            if message.attach:
                record.peer = peer
            info = record.info()
            terminal = self._terminal_message(record) if message.attach and record.state.finished else None
        self._reply(peer, Jobs(id=message.id, job=record.job, jobs=[info]))
        if terminal is not None:
            self._reply(peer, terminal)

    def _on_fetch(self, peer: bytes, message: Fetch) -> None:
        path = self.workspace.resolve(message.asset)
        total = path.stat().st_size
        if message.offset > total:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"offset {message.offset} is past the end of "
                                f"{message.asset!r} ({total} bytes)")
        with open(path, "rb") as handle:
            handle.seek(message.offset)
            data = handle.read(message.length)
        self._reply(peer, Result(id=message.id, result={
            "asset": message.asset, "offset": message.offset, "size": len(data), "total": total,
            "data": np.frombuffer(data, dtype=np.uint8)}))

    def _known_job(self, job: str | None) -> JobRecord:
        record = self.registry.get(job) if job else None
        if record is None:
            raise ProtocolError(ErrorCode.UNKNOWN_JOB, f"no job {job!r} on this backend",
                                "the job may belong to another backend or workspace")
        return record

    @staticmethod
    def _terminal_message(record: JobRecord) -> Message:
        if record.state is JobState.DONE:
            return Result(id=record.request_id, job=record.job, result=record.result or {})
        error = record.error or {}
        try:
            code = ErrorCode(error.get("code", "internal"))
        except ValueError:
            code = ErrorCode.INTERNAL
        return failure(record.request_id, record.job, code, error.get("message", ""), error.get("hint", ""))

    def _reply(self, peer: bytes, message: Message) -> None:
        self._enqueue(peer, encode(message))

    @staticmethod
    def _drain_wake_ups(wake: zmq.Socket) -> None:
        while wake.getsockopt(_EVENTS) & _POLLIN:  # not recv until zmq.Again: exceptions cost per frame
            wake.recv(_NOBLOCK, copy=False)

    def _forward_replies(self) -> None:
        """Move the workers' queued replies to the outbox, up to OUTBOX_LIMIT waiting in it."""
        taken = False
        while self._replies and self._pending < OUTBOX_LIMIT:
            job, frames = self._replies.popleft()
            taken = True
            record = self.registry.get(job)
            if record is not None and record.peer is not None:
                self._enqueue(record.peer, frames)
        if taken and self._waiting_workers:
            with self._replies_room:
                if len(self._replies) <= REPLY_QUEUE_RESUME:
                    self._replies_room.notify_all()

    def _enqueue(self, peer: bytes, frames: list[Any]) -> None:
        """Queue a reply for `peer`; the I/O loop sends it on its next turn."""
        self._outbox.setdefault(peer, collections.deque()).append(frames)
        self._pending += 1

    def _flush(self, router: zmq.Socket) -> bool:
        """Send what the clients have room for; True if anything was sent."""
        now = time.monotonic()
        pending = self._pending
        for peer in list(self._outbox):
            box = self._outbox[peer]
            while box:
                try:
                    self._send(router, peer, box[0])
                except zmq.Again:  # the client is not reading: keep its replies, up to send_timeout_s
                    since = self._blocked_since.setdefault(peer, now)
                    if now - since > self.config.send_timeout_s:
                        log.warning("client %s stopped reading; dropping its replies", peer.hex())
                        self._drop_peer(peer)
                    break
                except zmq.ZMQError as error:
                    if error.errno != zmq.EHOSTUNREACH:
                        raise
                    self._drop_peer(peer)  # the client is gone; its jobs keep running
                    break
                box.popleft()
                self._pending -= 1
                self._blocked_since.pop(peer, None)
            if not box:
                self._outbox.pop(peer, None)
        return self._pending < pending

    @staticmethod
    def _send(router: zmq.Socket, peer: bytes, frames: list[Any]) -> None:
        """Send one encoded reply to `peer` without blocking (raises zmq.Again when it has no room).

        ROUTER_MANDATORY checks for room on the first part, so a multipart message is never cut short.
        """
        router.send(peer, _SEND_PART)
        for frame in frames[:-1]:
            router.send(frame, _SEND_PART, copy=False)
        router.send(frames[-1], _NOBLOCK, copy=False)

    def _drop_peer(self, peer: bytes) -> None:
        self._pending -= len(self._outbox.pop(peer, ()))
        self._blocked_since.pop(peer, None)
        self.registry.detach_peer(peer)

    # --- workers ---

    def _worker_loop(self) -> None:
        wake = self._context.socket(zmq.PUSH)
        wake.setsockopt(zmq.SNDHWM, 1)  # one pending wake-up is enough
        wake.setsockopt(zmq.LINGER, 0)
        wake.connect(self._inproc)
        try:
            while not self._stopping.is_set():
                try:
                    job_id = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                record = self.registry.get(job_id)
                with self.registry.lock:
                    if record is None or record.state is not JobState.QUEUED:
                        continue
                    record.state = JobState.RUNNING  # claimed: a cancel from now on goes through record.cancel
                    if self._stopping.is_set():
                        record.cancel.set()
                emit = functools.partial(self._push, wake, record.job)
                try:
                    self.registry.update(record, started=time.time(), persist=True)
                    self._run_job(record, emit)
                except Exception as error:  # e.g. the disk is full: fail this job, keep the worker alive
                    log.exception("job %s could not be run or recorded", record.job)
                    self._fail_unrecorded(record, emit, error)
        finally:
            wake.close()

    def _push(self, wake: zmq.Socket, job: str, message: Message) -> None:
        """Queue `message` for the I/O thread (waits while REPLY_QUEUE_LIMIT replies are queued)."""
        frames = encode(message)
        with self._replies_room:
            if len(self._replies) >= REPLY_QUEUE_LIMIT:
                self._waiting_workers += 1
                try:
                    while len(self._replies) > REPLY_QUEUE_RESUME:
                        if self._io_stop.is_set():
                            return
                        self._replies_room.wait(0.1)
                finally:
                    self._waiting_workers -= 1
            self._replies.append((job, frames))
            was_empty = len(self._replies) == 1
        if was_empty:  # the I/O thread may be asleep in poll: wake it (an undelivered wake-up is one pending)
            try:
                wake.send(b"", flags=zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _run_job(self, record: JobRecord, emit: Any) -> None:
        kind = self.jobs[record.kind]
        ctx = JobContext(record, self.registry, self.workspace, self.device, emit)
        log.info("job %s (%s) started", record.job, record.kind)
        try:
            result = kind.run(record.spec, ctx)
            if not isinstance(result, dict):
                raise TypeError(f"job {record.kind} returned {type(result).__name__}, not a dict")
        except JobCancelled:
            state = JobState.INTERRUPTED if self._stopping.is_set() else JobState.CANCELLED
            code = ErrorCode.INTERRUPTED if state is JobState.INTERRUPTED else ErrorCode.CANCELLED
            hint = "the backend was stopping; submit the job again" if state is JobState.INTERRUPTED else ""
            self._finish(record, emit, state, error=(code, f"{record.kind} job {state.value}", hint))
        except Exception as error:  # every failure becomes a `failed` reply
            self._finish(record, emit, JobState.FAILED, error=describe_failure(error, record.job))
        else:
            self._finish(record, emit, JobState.DONE, result=result)

    def _finish(self, record: JobRecord, emit: Any, state: JobState, result: dict | None = None,
                error: tuple[ErrorCode, str, str] | None = None) -> None:
        if state is JobState.DONE:
            try:  # a result that cannot be sent fails the job instead of reaching nobody
                encode(Result(id=record.request_id, job=record.job, result=result or {}))
            except (TypeError, ValueError) as bad_result:
                state, result = JobState.FAILED, None
                error = (ErrorCode.INTERNAL, f"the job's result cannot be sent: {bad_result}",
                         "this is a bug in the job")
        error_info = None if error is None else {"code": error[0].value, "message": clip_text(error[1]),
                                                 "hint": clip_text(error[2])}
        self.registry.update(record, state=state, finished=time.time(), result=result, error=error_info,
                             eta_s=None, spec={}, persist=True)  # spec: its arrays pin the request's buffers
        log.info("job %s (%s) %s%s", record.job, record.kind, state.value, f": {error[1]}" if error else "")
        with self.registry.lock:
            message = self._terminal_message(record)
        emit(message)

    def _fail_unrecorded(self, record: JobRecord, emit: Any, error: Exception) -> None:
        """Fail a job whose bookkeeping itself failed (its record may not reach the disk)."""
        details = (ErrorCode.INTERNAL, f"the backend could not run or record this job: {error}",
                   "check the backend's disk space and workspace permissions; its log has the details")
        try:
            self._finish(record, emit, JobState.FAILED, error=details)
        except Exception:  # still failing: keep the state right in memory and tell the client
            log.exception("job %s could not be recorded as failed", record.job)
            with self.registry.lock:
                record.state, record.finished = JobState.FAILED, time.time()
                record.error = {"code": details[0].value, "message": clip_text(details[1]), "hint": details[2]}
            emit(failure(record.request_id, record.job, *details))
