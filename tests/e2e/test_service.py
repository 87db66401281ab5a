"""The backend as a real process, driven through the client over loopback."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from backend.service.pattern_job import read_counter
from shared_client import BackendUnavailable, Client, JobFailed, RequestFailed
from shared_proto import PROTOCOL_VERSION, Accepted, ErrorCode, FrameReply, Progress, Result, Submit, decode, encode


def client_for(backend, **options) -> Client:
    return Client(backend.endpoint, timeout=options.pop("timeout", 10.0), **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hello_reports_version_capabilities_and_device(shared_backend) -> None:
    with client_for(shared_backend, name="pytest") as client:
        welcome = client.hello()
    assert welcome.protocol == PROTOCOL_VERSION
    assert {"diagnose", "test_pattern"} <= set(welcome.capabilities)
    assert welcome.device == "cpu" and welcome.gpu is None
    assert welcome.server.startswith("keyface-backend")
    assert welcome.limits["max_message_bytes"] > 0


def test_frames_stream_in_order_with_progress(shared_backend) -> None:
    with client_for(shared_backend) as client:
        job = client.submit("test_pattern", {"count": 12, "width": 64, "height": 48})
        frames, progress = [], []
        for reply in job.replies(timeout=60):
            if isinstance(reply, FrameReply):
                frames.append(reply)
            elif isinstance(reply, Progress):
                progress.append(reply)
        assert isinstance(reply, Result) and reply.result["frames"] == 12
    assert [f.index for f in frames] == list(range(12))
    assert [read_counter(f.image) for f in frames] == list(range(12))
    assert all(f.image.shape == (48, 64, 4) and f.image.dtype == np.uint8 for f in frames)
    assert progress and progress[-1].step == progress[-1].total == 12
    assert job.state == "done" and job.frames_received == 12


def test_diagnose_report_is_fetchable(shared_backend, tmp_path) -> None:
    with client_for(shared_backend) as client:
        result = client.submit("diagnose", {"size": 64, "repeats": 2}).wait(timeout=60)
        assert result["memory_roundtrip_ok"] and result["matmul_gflops"] > 0
        assert result["matmul_relative_error"] < 1e-4
        path = client.fetch(result["report"], tmp_path / "report.json", chunk=100)  # several chunks
    report = json.loads(path.read_text())
    assert report["matmul_gflops"] == result["matmul_gflops"]
    assert not list(tmp_path.glob(".*part"))


@pytest.mark.parametrize("asset", ["../secret", "/etc/passwd", "jobs/../../x", "C:/x", "nope/missing.txt",
                                   "a" * 65536, "x\x00y", "\ud800", "jobs/" + "b" * 300])
def test_fetch_stays_inside_the_workspace(shared_backend, asset) -> None:
    with client_for(shared_backend) as client, pytest.raises(RequestFailed) as info:
        client.fetch(asset, "/tmp/never-written")
    assert info.value.code is ErrorCode.NOT_FOUND


def test_unknown_kind_and_bad_spec_fail_with_stable_codes(shared_backend) -> None:
    with client_for(shared_backend) as client:
        with pytest.raises(RequestFailed) as info:
            client.submit("make_coffee")
        assert info.value.code is ErrorCode.UNKNOWN_JOB_KIND and "test_pattern" in info.value.hint
        with pytest.raises(RequestFailed) as info:
            client.submit("test_pattern", {"count": -3})
        assert info.value.code is ErrorCode.BAD_SPEC and "-3" in info.value.message
        with pytest.raises(RequestFailed) as info:
            client.cancel("j-no-such-job")
        assert info.value.code is ErrorCode.UNKNOWN_JOB


def test_cancel_running_and_queued_jobs(shared_backend) -> None:
    with client_for(shared_backend) as client:
        running = client.submit("test_pattern", {"count": 100_000, "width": 64, "height": 64})
        queued = client.submit("test_pattern", {"count": 5, "width": 32, "height": 32})
        assert next(iter(running.replies(timeout=30))).TYPE in ("frame", "progress")
        assert client.cancel(queued.id)["state"] == "cancelled"
        with pytest.raises(JobFailed) as info:
            queued.wait(timeout=30)
        assert info.value.code is ErrorCode.CANCELLED
        client.cancel(running.id)
        with pytest.raises(JobFailed) as info:
            running.wait(timeout=30)
        assert info.value.code is ErrorCode.CANCELLED
        assert client.status(running.id)[0]["state"] == "cancelled"
        assert client.submit("test_pattern", {"count": 2, "width": 32, "height": 32}).wait(timeout=30)["frames"] == 2


def test_a_retried_submit_returns_the_same_job_and_its_result(shared_backend) -> None:
    with client_for(shared_backend) as client:
        message = Submit(id="fixed-request-id-1", kind="test_pattern", spec={"count": 1, "width": 32, "height": 32})
        first = client.request(message, (Accepted,))
        second = client.request(message, (Accepted,))
        assert first.job == second.job
        job = client.attach(first.job)
        job.wait(timeout=30)
    with client_for(shared_backend) as late:  # a retry after the job finished gets the result again
        dealer = late.socket
        dealer.send_multipart(encode(message))
        types = []
        while "result" not in types:
            assert dealer.poll(30_000)
            types.append(decode(dealer.recv_multipart()).TYPE)
        assert types == ["accepted", "result"]


def test_another_client_can_attach_to_a_job(shared_backend) -> None:
    with client_for(shared_backend) as owner, client_for(shared_backend) as other:
        long_job = owner.submit("test_pattern", {"count": 100_000, "width": 32, "height": 32})
        next(iter(long_job.replies(timeout=30)))
        owner.close()  # the owner goes away without cancelling
        handle = other.attach(long_job.id)
        replies = handle.replies(timeout=30)
        assert isinstance(next(r for r in replies if isinstance(r, FrameReply)), FrameReply)
        other.cancel(long_job.id)
        with pytest.raises(JobFailed):
            handle.wait(timeout=30)
        finished = other.submit("test_pattern", {"count": 1, "width": 32, "height": 32})
        finished.wait(timeout=30)
    with client_for(shared_backend) as late:  # a finished job re-sends its result on attach
        handle = late.attach(finished.id)
        assert handle.wait(timeout=30)["frames"] == 1


def test_clients_that_vanish_or_stop_reading_do_not_wedge_the_server(make_backend) -> None:
    backend = make_backend("--send-timeout-s", "1")
    backend.start()
    context = zmq.Context.instance()
    spec = {"count": 400, "width": 256, "height": 256}
    vanished = context.socket(zmq.DEALER)
    vanished.connect(backend.endpoint)
    vanished.send_multipart(encode(Submit(id="vanishing", kind="test_pattern", spec=spec)))
    time.sleep(0.3)
    vanished.close(linger=0)
    stalled = context.socket(zmq.DEALER)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.connect(backend.endpoint)
    stalled.send_multipart(encode(Submit(id="stalled", kind="test_pattern", spec=spec)))
    with client_for(backend, timeout=20) as client:
        client.hello()
        assert client.submit("test_pattern", {"count": 3, "width": 32, "height": 32}).wait(timeout=120)["frames"] == 3
        states = {info["request_id"]: info["state"] for info in client.status()}
    assert states["vanishing"] == states["stalled"] == "done"
    stalled.close(linger=0)
    assert backend.alive()


def tcp_buffer_frames(frame_bytes: int) -> int:
    """Frames a loopback TCP connection's send and receive buffers can hold at most (Linux; 16 MiB elsewhere)."""
    try:
        buffers = sum(int(Path(f"/proc/sys/net/ipv4/tcp_{kind}").read_text().split()[2]) for kind in ("rmem", "wmem"))
    except (OSError, ValueError, IndexError):
        buffers = 16 * 1024 * 1024
    return buffers // frame_bytes + 1


def test_a_client_that_stops_reading_holds_its_job_back(shared_backend) -> None:
    """The client keeps a bounded number of replies (not ~1 GiB of frames); past it the job waits for it."""
    from backend.service.server import OUTBOX_LIMIT, REPLY_QUEUE_LIMIT
    from shared_client.client import RECEIVE_QUEUE_LIMIT

    with client_for(shared_backend) as reader, client_for(shared_backend) as watcher:
        job = reader.submit("test_pattern", {"count": 2000, "width": 512, "height": 512})
        time.sleep(2.0)  # unthrottled, the backend streams these 2,000 MiB in well under a second
        held = RECEIVE_QUEUE_LIMIT + OUTBOX_LIMIT + REPLY_QUEUE_LIMIT + tcp_buffer_frames(512 * 512 * 4) + 4
        assert watcher.status(job.id)[0]["step"] <= held  # + 4: frames inside ZeroMQ's I/O threads
        assert sum(isinstance(reply, FrameReply) for reply in job.replies(timeout=120)) == 2000


def test_lazy_pirate_survives_a_backend_that_starts_late(make_backend) -> None:
    port = free_port()
    backend = make_backend(bind=f"tcp://127.0.0.1:{port}")
    client = Client(f"tcp://127.0.0.1:{port}", timeout=1.0, retries=60)
    starter = threading.Timer(1.5, backend.start)
    starter.start()
    try:
        assert client.hello().protocol == PROTOCOL_VERSION
    finally:
        starter.join()
        client.close()


def test_no_backend_raises_backend_unavailable_in_bounded_time() -> None:
    client = Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.3, retries=2)
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="python -m backend serve"):
        client.hello()
    assert time.monotonic() - start < 5
    client.close()


def test_stopped_and_crashed_backends_report_interrupted_jobs(make_backend, tmp_path) -> None:
    port = free_port()
    folder = tmp_path / "persistent"
    backend = make_backend(bind=f"tcp://127.0.0.1:{port}", folder=folder)
    backend.start()
    client = Client(backend.endpoint, timeout=2.0, retries=30)
    job = client.submit("test_pattern", {"count": 100_000, "width": 32, "height": 32})
    next(iter(job.replies(timeout=30)))
    assert backend.stop(signal.SIGTERM) == 0  # graceful: the job is interrupted and told so
    with pytest.raises(JobFailed) as info:
        job.wait(timeout=30)
    assert info.value.code is ErrorCode.INTERRUPTED

    backend.start()  # same port and workspace
    job = client.submit("test_pattern", {"count": 100_000, "width": 32, "height": 32})
    next(iter(job.replies(timeout=30)))
    backend.stop(signal.SIGKILL)  # a crash: nobody tells the client
    backend.start()
    with pytest.raises(JobFailed) as info:
        job.wait(timeout=60)  # the client re-attaches; the new process knows the job was interrupted
    assert info.value.code is ErrorCode.INTERRUPTED
    assert client.status(job.id)[0]["state"] == "interrupted"
    client.close()


def test_replies_are_correlated_by_request_id(shared_backend) -> None:
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(shared_backend.endpoint)
    dealer.send_multipart(encode(Submit(id="corr-1", kind="test_pattern", spec={"count": 2, "width": 32,
                                                                                 "height": 32})))
    types = []
    while not types or types[-1] not in ("result", "failed"):
        assert dealer.poll(30_000)
        message = decode(dealer.recv_multipart())
        assert message.id == "corr-1"
        types.append(message.TYPE)
    assert types[0] == "accepted" and types.count("frame") == 2 and types[-1] == "result"
    dealer.close(linger=0)
