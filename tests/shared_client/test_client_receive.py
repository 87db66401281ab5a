"""How the client waits for replies: against a bare ROUTER that plays the backend, in this process."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from shared_client import Client
from shared_proto import Accepted, FrameReply, Result, Submit, decode, encode


@pytest.fixture()
def fake_backend():
    """(router, client): a ROUTER on a free loopback port and a Client connected to it."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    client = Client(f"tcp://127.0.0.1:{port}", timeout=2.0, retries=0)
    yield router, client
    client.close()
    router.close(linger=0)


def accept(router: zmq.Socket, job: str = "j1") -> bytes:
    """Answer the client's next submit with `accepted`; returns the client's identity."""
    assert router.poll(5000)
    peer, *frames = router.recv_multipart()
    request = decode(frames)
    assert isinstance(request, Submit)
    router.send_multipart([peer, *encode(Accepted(id=request.id, job=job, kind=request.kind))])
    return peer


def submit(router: zmq.Socket, client: Client, job: str = "j1"):
    """A job handle from `client` and the client's identity, the submit answered by `router`."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(accept(router, job)))
    thread.start()
    handle = client.submit("test_pattern")
    thread.join()
    return handle, result[0]


def test_poll_without_waiting_returns_at_once(fake_backend) -> None:
    _, client = fake_backend
    start = time.monotonic()
    assert client.poll(0) == 0
    assert time.monotonic() - start < 0.1


def test_a_reply_that_arrives_during_a_wait_ends_it_at_once(fake_backend) -> None:
    router, client = fake_backend
    job, peer = submit(router, client)
    image = np.zeros((2, 3, 4), np.uint8)
    sender = threading.Timer(0.2, lambda: router.send_multipart(
        [peer, *encode(FrameReply(id=job.request_id, job=job.id, index=0, image=image))]))
    sender.start()
    start = time.monotonic()
    reply = next(iter(job.replies(timeout=5)))
    sender.join()
    assert isinstance(reply, FrameReply) and 0.15 < time.monotonic() - start < 1.5  # not a whole `timeout`


def test_garbage_is_skipped_and_the_wait_keeps_its_deadline(fake_backend) -> None:
    router, client = fake_backend
    job, peer = submit(router, client)
    router.send_multipart([peer, b"not json"])
    router.send_multipart([peer, *encode(Result(id=job.request_id, job=job.id, result={"ok": 1}))])
    assert job.wait(timeout=5) == {"ok": 1}

    silent, _ = submit(router, client, job="j2")
    router.send_multipart([peer, b"{}"])  # garbage, then silence: the wait still ends at its deadline
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="still"):
        for _ in silent.replies(timeout=0.3):
            pass
    assert 0.25 < time.monotonic() - start < 1.5  # the job's deadline, not the client's 2 s
