"""ZeroMQ client for the Keyface backend (stdlib + numpy + pyzmq; runs inside Blender too).

    client = Client("tcp://127.0.0.1:5555")
    print(client.hello().capabilities)
    job = client.submit("test_pattern", {"count": 10})
    for reply in job.replies():          # Progress / FrameReply, then Result or Failed
        ...
    result = job.wait()                  # the result body; raises JobFailed

Reliability follows ZeroMQ's Lazy Pirate pattern: every request expects one reply within `timeout`;
on silence the socket is closed and reopened, the request re-sent (submits are idempotent on the
server: the same request id returns the same job) and unfinished jobs re-attached, up to `retries`
times before `BackendUnavailable`. While waiting on a job, a silent backend is pinged the same way.

Not thread-safe: use one Client from one thread (in Blender, the main thread via bpy.app.timers).
"""

from __future__ import annotations

import collections
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import zmq
import zmq.auth

from shared_proto import (
    DEFAULT_MAX_MESSAGE_BYTES,
    TERMINAL_TYPES,
    Accepted,
    Cancel,
    ErrorCode,
    Failed,
    Fetch,
    FrameReply,
    Hello,
    Jobs,
    Message,
    Progress,
    ProtocolError,
    Result,
    Status,
    Submit,
    Welcome,
    decode,
    encode,
)


# plain ints: pyzmq's enum flags are slow in per-message arithmetic
_EVENTS, _POLLIN, _NOBLOCK, _RCVTIMEO = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.RCVTIMEO)


RECEIVE_QUEUE_LIMIT = 64
"""Replies ZeroMQ keeps for a client that is not reading (each may be a whole frame: 64 MiB at 512x512 RGBA);
past that the backend holds the rest and the job waits, instead of the client's memory growing (ZeroMQ's
default of 1000 would let a busy Blender buffer ~1 GiB)."""


class BackendUnavailable(ConnectionError):
    """No reply from the backend after every retry."""


class RequestFailed(Exception):
    """The backend answered a request (or a job) with `failed`."""

    def __init__(self, failed: Failed) -> None:
        hint = f" ({failed.hint})" if failed.hint else ""
        super().__init__(f"[{failed.code.value}] {failed.message}{hint}")
        self.code: ErrorCode = failed.code
        self.message = failed.message
        self.hint = failed.hint


class JobFailed(RequestFailed):
    """A job ended with `failed` (including `cancelled` and `interrupted`)."""


def new_request_id() -> str:
    return uuid.uuid4().hex


class Job:
    """Handle of one submitted job; updated as the client receives its replies."""

    def __init__(self, client: Client, job_id: str, request_id: str, kind: str) -> None:
        self.client = client
        self.id = job_id
        self.request_id = request_id
        self.kind = kind
        self.state = "queued"
        self.progress: Progress | None = None
        """The latest progress reply."""
        self.result: dict[str, Any] | None = None
        self.failure: Failed | None = None
        self.frames_received = 0
        self.last_heard = time.monotonic()
        self._inbox: collections.deque[Message] = collections.deque()

    @property
    def done(self) -> bool:
        return self.result is not None or self.failure is not None

    def _receive(self, message: Message) -> None:
        self.last_heard = time.monotonic()
        if type(message) is FrameReply and not self.done:  # the common case, first
            self.state = "running"
            self.frames_received += 1
            self._inbox.append(message)
            return
        if isinstance(message, Jobs):
            for info in message.jobs:
                if info.get("job") == self.id and not self.done:
                    self.state = str(info.get("state", self.state))
            return
        if isinstance(message, Accepted) or self.done:
            return  # a duplicate from a retried request, or a re-sent terminal reply
        if isinstance(message, Progress):
            self.state, self.progress = "running", message
        elif isinstance(message, FrameReply):
            self.state = "running"
            self.frames_received += 1
        elif isinstance(message, Result):
            self.state, self.result = "done", message.result
        elif isinstance(message, Failed):
            self.state = "cancelled" if message.code is ErrorCode.CANCELLED else "failed"
            self.failure = message
        self._inbox.append(message)

    def pop_replies(self) -> list[Message]:
        """Replies received so far and not yet taken (non-blocking; call `client.poll()` first)."""
        replies = list(self._inbox)
        self._inbox.clear()
        return replies

    def replies(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield Progress / FrameReply replies as they arrive, then the final Result or Failed.

        `timeout` bounds the whole wait (None: as long as the backend is alive); raises TimeoutError.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                yield message
                if message.TYPE in TERMINAL_TYPES:
                    return
            if self.done:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {self.id} ({self.kind}) still {self.state} after {timeout} s")
            self.client._wait_for_job(self, remaining)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends; return its result body or raise JobFailed."""
        for _ in self.replies(timeout):
            pass
        if self.failure is not None:
            raise JobFailed(self.failure)
        assert self.result is not None
        return self.result

    def cancel(self) -> dict[str, Any]:
        return self.client.cancel(self.id)


class Client:
    """A DEALER connection to one backend. See the module docstring."""

    def __init__(self, address: str, *, timeout: float = 10.0, retries: int = 3, name: str = "",
                 curve_server_key: str | os.PathLike | None = None,
                 curve_client_key: str | os.PathLike | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        """
        Args:
            address: the backend endpoint, e.g. tcp://127.0.0.1:5555.
            timeout: seconds to wait for each reply before retrying.
            retries: reconnect-and-resend attempts before BackendUnavailable.
            name: free text sent in `hello` (shown in the backend's log).
            curve_server_key: the backend's public key file (server.key) when it uses CurveZMQ.
            curve_client_key: this client's secret key file (client.key_secret), authorised on the backend.
        """
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0, got {timeout}, {retries}")
        if (curve_server_key is None) != (curve_client_key is None):
            raise ValueError("CurveZMQ needs both curve_server_key (server.key) and curve_client_key "
                             "(client.key_secret)")
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self.name = name
        self.max_message_bytes = max_message_bytes
        self._curve = None
        if curve_server_key is not None:
            server_public, _ = zmq.auth.load_certificate(os.fspath(curve_server_key))
            client_public, client_secret = zmq.auth.load_certificate(os.fspath(curve_client_key))
            if client_secret is None:
                raise ValueError(f"{curve_client_key} holds no secret key (use the .key_secret file)")
            self._curve = (server_public, client_public, client_secret)
        self._context = zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._receive_timeout_ms = -1  # the socket's RCVTIMEO
        self._jobs: dict[str, Job] = {}
        self.welcome: Welcome | None = None
        self.reconnects = 0

    # --- connection ---

    def _open(self) -> zmq.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE_LIMIT)
        if self._curve is not None:
            socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = self._curve
        socket.connect(self.address)
        return socket

    @property
    def socket(self) -> zmq.Socket:
        if self._socket is None:
            self._socket = self._open()
            self._receive_timeout_ms = -1
        return self._socket

    def _reconnect(self) -> None:
        """Lazy Pirate: drop the socket (and anything queued on it), open a new one, re-attach live jobs."""
        self.close()
        _ = self.socket
        self.reconnects += 1
        for job in self._jobs.values():
            if not job.done:
                self._send(Status(id=new_request_id(), job=job.id, attach=True))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- low level ---

    def _send(self, message: Message) -> None:
        self.socket.send_multipart(encode(message), copy=False)

    def _receive(self, timeout: float) -> Message | None:
        """The next decodable message within `timeout` seconds (None on silence)."""
        socket = self.socket
        deadline = time.monotonic() + timeout
        while True:
            if timeout <= 0:  # a look without waiting: cheaper than a recv that raises zmq.Again
                if not socket.getsockopt(_EVENTS) & _POLLIN:
                    return None
                flags = _NOBLOCK
            else:  # one blocking recv: it returns at once when a message is there
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    return None
                if wait_ms != self._receive_timeout_ms:
                    socket.setsockopt(_RCVTIMEO, wait_ms)
                    self._receive_timeout_ms = wait_ms
                flags = 0
            try:
                frames = [socket.recv(flags, copy=False)]
            except zmq.Again:
                return None
            while frames[-1].more:  # the rest of a multipart message is always there with its first part
                frames.append(socket.recv(_NOBLOCK, copy=False))
            try:
                return decode(frames, max_message_bytes=self.max_message_bytes)
            except ProtocolError:
                continue  # ignore garbage; keep waiting for a real reply

    def _dispatch(self, message: Message) -> None:
        job = self._jobs.get(message.job) if message.job else None
        if job is not None:
            job._receive(message)

    def poll(self, timeout: float = 0.0) -> int:
        """Receive and dispatch whatever arrives within `timeout` s (0 = non-blocking). Returns the count."""
        count = 0
        message = self._receive(timeout)
        while message is not None:
            self._dispatch(message)
            count += 1
            message = self._receive(0.0)
        return count

    def request(self, message: Message, expect: tuple[type[Message], ...]) -> Message:
        """Send `message`; return its direct reply (one of `expect`), with Lazy Pirate retries.

        Raises RequestFailed on a `failed` reply and BackendUnavailable when retries run out.
        """
        for attempt in range(self.retries + 1):
            if attempt:
                self._reconnect()
            self._send(message)
            deadline = time.monotonic() + self.timeout
            while (remaining := deadline - time.monotonic()) > 0:
                reply = self._receive(remaining)
                if reply is None:
                    break
                if reply.id == message.id and isinstance(reply, (*expect, Failed)):
                    if isinstance(reply, Failed):
                        raise RequestFailed(reply)
                    return reply
                self._dispatch(reply)
        raise BackendUnavailable(f"no reply from the Keyface backend at {self.address} after "
                                 f"{self.retries + 1} attempts of {self.timeout:g} s; is it running "
                                 "('python -m backend serve')?")

    # --- requests ---

    def hello(self) -> Welcome:
        reply = self.request(Hello(id=new_request_id(), client=self.name), (Welcome,))
        self.welcome = reply  # type: ignore[assignment]
        return reply  # type: ignore[return-value]

    def submit(self, kind: str, spec: dict[str, Any] | None = None) -> Job:
        """Queue a job and return its handle (replies stream into it)."""
        message = Submit(id=new_request_id(), kind=kind, spec=spec or {})
        accepted = self.request(message, (Accepted,))
        job = self._jobs.get(accepted.job)  # type: ignore[arg-type]
        if job is None:
            job = Job(self, accepted.job, message.id, kind)  # type: ignore[arg-type]
            self._jobs[job.id] = job
        return job

    def attach(self, job_id: str) -> Job:
        """A handle for a job submitted earlier (e.g. before a reload); its further replies come here."""
        reply = self.request(Status(id=new_request_id(), job=job_id, attach=True), (Jobs,))
        info = reply.jobs[0]  # type: ignore[attr-defined]
        job = self._jobs.get(job_id) or Job(self, job_id, str(info.get("request_id", "")), str(info["kind"]))
        self._jobs[job_id] = job
        job._receive(reply)
        return job

    def status(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """State of one job, or of every job the backend knows."""
        reply = self.request(Status(id=new_request_id(), job=job_id), (Jobs,))
        for info in reply.jobs:  # type: ignore[attr-defined]
            if info.get("job") in self._jobs:
                self._jobs[info["job"]]._receive(reply)
        return list(reply.jobs)  # type: ignore[attr-defined]

    def cancel(self, job_id: str) -> dict[str, Any]:
        reply = self.request(Cancel(id=new_request_id(), job=job_id), (Jobs,))
        return reply.jobs[0]  # type: ignore[attr-defined]

    def fetch(self, asset: str, destination: str | os.PathLike, chunk: int = 8 * 1024 * 1024) -> Path:
        """Download a workspace asset to `destination` (written atomically)."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
        offset, total = 0, None
        try:
            with open(temp, "wb") as handle:
                while total is None or offset < total:
                    reply = self.request(Fetch(id=new_request_id(), asset=asset, offset=offset, length=chunk),
                                         (Result,))
                    body = reply.result  # type: ignore[attr-defined]
                    total = int(body["total"])
                    handle.write(body["data"].tobytes())
                    offset += int(body["size"])
                    if body["size"] == 0 and offset < total:
                        raise BackendUnavailable(f"{asset} shrank while it was being fetched")
            os.replace(temp, destination)
        finally:
            temp.unlink(missing_ok=True)
        return destination

    def _wait_for_job(self, job: Job, remaining: float | None) -> None:
        """Wait up to one `timeout` for the next reply; ping (and re-attach) a silent backend."""
        message = self._receive(self.timeout if remaining is None else min(self.timeout, remaining))
        if message is not None:
            self._dispatch(message)
        if not job.done and time.monotonic() - job.last_heard >= self.timeout:
            reply = self.request(Status(id=new_request_id(), job=job.id, attach=True), (Jobs,))
            job._receive(reply)
