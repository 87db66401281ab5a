"""An in-process server keeps working when its own bookkeeping fails."""

from __future__ import annotations

import pytest

from backend.service.config import ServerConfig
from backend.service.server import Server
from backend.service.workspace import Workspace
from shared_client import Client, JobFailed, RequestFailed
from shared_proto import ErrorCode


@pytest.fixture
def server(tmp_path):
    running = Server(ServerConfig(bind="tcp://127.0.0.1:*", workspace=tmp_path / "ws", device="cpu"))
    running.start()
    yield running
    running.stop()


def test_a_job_whose_record_cannot_be_written_fails_and_the_worker_lives_on(server, monkeypatch) -> None:
    original = Workspace.save_record
    failures = []

    def disk_full_once(self, job_id, record):
        if record["state"] == "running" and not failures:
            failures.append(job_id)
            raise OSError(28, "No space left on device")
        return original(self, job_id, record)

    monkeypatch.setattr(Workspace, "save_record", disk_full_once)
    with Client(server.endpoint, timeout=10) as client:
        with pytest.raises(JobFailed) as info:
            client.submit("test_pattern", {"count": 2, "width": 32, "height": 32}).wait(timeout=60)
        assert info.value.code is ErrorCode.INTERNAL and "No space left" in info.value.message
        assert client.submit("test_pattern", {"count": 2, "width": 32, "height": 32}).wait(timeout=60)["frames"] == 2
    assert server.alive() and failures


def test_huge_error_texts_are_clipped_not_fatal(server) -> None:
    with Client(server.endpoint, timeout=10) as client:
        with pytest.raises(Exception) as info:
            client.fetch("a" * 65536, "/tmp/never")
        assert getattr(info.value, "code", None) is ErrorCode.NOT_FOUND
        assert client.hello().device == "cpu"
    assert server.alive()


def test_cancelling_queued_jobs_frees_queue_places(tmp_path) -> None:
    server = Server(ServerConfig(bind="tcp://127.0.0.1:*", workspace=tmp_path / "ws", device="cpu", max_queue=2))
    server.start()
    try:
        with Client(server.endpoint, timeout=10) as client:
            spec = {"count": 100_000, "width": 32, "height": 32}
            running = client.submit("test_pattern", spec)
            next(iter(running.replies(timeout=30)))
            waiting = [client.submit("test_pattern", spec) for _ in range(2)]
            with pytest.raises(RequestFailed) as info:
                client.submit("test_pattern", spec)
            assert info.value.code is ErrorCode.QUEUE_FULL
            for job in waiting:
                client.cancel(job.id)
            again = client.submit("test_pattern", {"count": 1, "width": 32, "height": 32})
            client.cancel(running.id)
            assert again.wait(timeout=60)["frames"] == 1
    finally:
        server.stop()


def test_the_all_jobs_listing_fits_one_header_even_with_long_errors() -> None:
    from backend.service.registry import JobRecord
    from backend.service.server import MAX_STATUS_JOBS, brief
    from shared_proto import Jobs, encode

    records = [JobRecord(job=f"j{i}", kind="render", request_id=f"r{i}", spec={}, peer=None, message="m" * 60000,
                         error={"code": "internal", "message": "e" * 60000, "hint": "h" * 60000})
               for i in range(MAX_STATUS_JOBS)]
    frames = encode(Jobs(id="s", jobs=[brief(r.info()) for r in records]))
    assert len(frames[0]) < 1024 * 1024


def test_a_client_that_stops_reading_neither_spins_the_server_nor_loses_frames(server) -> None:
    """Replies for a full client wait in the outbox; another client's free room must not busy-loop the I/O thread."""
    import time

    import zmq

    from backend.service.server import OUTBOX_LIMIT
    from shared_proto import FrameReply, Result, Submit, decode, encode

    context = zmq.Context.instance()
    stalled = context.socket(zmq.DEALER)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.connect(server.endpoint)
    count = 4000
    stalled.send_multipart(encode(Submit(id="stall", kind="test_pattern",
                                         spec={"count": count, "width": 64, "height": 64})))
    deadline = time.monotonic() + 60
    while server._pending < OUTBOX_LIMIT:  # the client's pipe and socket buffers are full
        assert time.monotonic() < deadline, "the stream never backed up"
        time.sleep(0.05)
    with Client(server.endpoint, timeout=10) as idle:
        idle.hello()  # a second client, with room, while the first one is full
        cpu = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - cpu < 0.5  # a spinning I/O thread would burn the whole second
    frames = []
    while True:
        assert stalled.poll(30_000), "the stream did not resume"
        reply = decode(stalled.recv_multipart())
        if isinstance(reply, FrameReply):
            frames.append(reply.index)
        elif isinstance(reply, Result):
            break
    stalled.close()
    assert frames == list(range(count))
