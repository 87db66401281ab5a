"""Job book-keeping (blender_addon/jobs.py) and the threaded connection (connection.py), both bpy-free.

The connection tests run against real backend processes on loopback: frames land in a take folder,
an unreachable address is reported (never raised), and a backend killed mid-job turns into a warning,
then a reconnect that re-attaches the job (which the restarted backend reports as interrupted).
"""

from __future__ import annotations

import signal
import time

import numpy as np
import PIL.Image
import pytest

from shared_proto import ErrorCode, Failed, Progress, Result

from tests.blender_addon.pure_addon import load



jobs = load("jobs")
connection = load("connection")
takes = load("takes")


@pytest.mark.parametrize("seconds, text", [(None, ""), (-1.0, ""), (float("nan"), ""), (0.4, "0 s left"),
                                           (59.4, "59 s left"), (125, "2 min 05 s left"),
                                           (3 * 3600 + 7 * 60 + 9, "3 h 07 min left")])
def test_eta_text(seconds, text) -> None:
    assert jobs.eta_text(seconds) == text


def test_a_record_follows_its_replies_and_ignores_late_ones() -> None:
    record = jobs.JobRecord(kind="render", spec={"avatar": "default"})
    assert record.state == "submitting" and record.fraction == 0.0 and not record.terminal
    record.apply_accepted("j1")
    assert (record.job_id, record.state) == ("j1", "queued")
    record.apply_message(Progress(id="r", job="j1", stage="render", step=3, total=12, eta_s=65.0))
    assert record.state == "running" and record.fraction == 0.25
    assert record.progress_text() == "render 3/12 1 min 05 s left"
    record.apply_frame()
    assert record.frames_written == 1
    record.apply_message(Result(id="r", job="j1", result={"frames": 12}))
    assert record.terminal and record.state == "done" and record.fraction == 1.0 and record.result == {"frames": 12}
    record.apply_message(Failed(id="r", job="j1", code=ErrorCode.INTERNAL, message="late"))
    record.apply_info({"state": "running"})
    assert record.state == "done" and record.error == ""


@pytest.mark.parametrize("code, state", [(ErrorCode.CANCELLED, "cancelled"), (ErrorCode.INTERRUPTED, "interrupted"),
                                         (ErrorCode.OUT_OF_MEMORY, "failed")])
def test_failures_keep_code_message_and_hint(code, state) -> None:
    record = jobs.JobRecord(kind="render", spec={})
    record.apply_message(Failed(id="r", job="j", code=code, message="why", hint="what to do"))
    assert record.state == state and record.terminal and record.hint == "what to do"
    assert record.error_text() == f"[{code.value}] why"


def test_status_info_with_an_error_ends_the_record() -> None:
    record = jobs.JobRecord(kind="edit", spec={})
    record.apply_info({"state": "running", "stage": "edit", "step": 2, "total": 8, "message": "frame 2"})
    assert record.state == "running" and record.fraction == 0.25
    record.apply_info({"state": "interrupted", "error": {"code": "interrupted", "message": "backend stopped",
                                                          "hint": "resubmit"}})
    assert record.terminal and record.error_text() == "[interrupted] backend stopped" and record.hint == "resubmit"


def test_retry_copies_spec_and_options_into_a_fresh_record() -> None:
    spec = {"sequence": {"expression": np.zeros((2, 3))}, "cameras": [{"width": 8}]}
    record = jobs.JobRecord(kind="render", spec=spec, label="render take_v001", options={"take": "take"})
    record.apply_request_error("bad_spec", "nope")
    fresh = record.retry()
    assert fresh.key != record.key and fresh.state == "submitting" and fresh.job_id == "" and fresh.error == ""
    assert fresh.spec["cameras"] == [{"width": 8}] and fresh.spec is not spec
    fresh.spec["sequence"]["expression"][0, 0] = 5.0
    fresh.options["take_dir"] = "elsewhere"
    assert spec["sequence"]["expression"][0, 0] == 0.0 and "take_dir" not in record.options


def test_book_finds_records_and_forgets_finished_ones() -> None:
    book = jobs.JobBook()
    first = book.add(jobs.JobRecord(kind="render", spec={}))
    second = book.add(jobs.JobRecord(kind="edit", spec={}))
    first.apply_accepted("j-1")
    second.apply_message(Result(id="r", job="j-2", result={}))
    assert book.by_job_id("j-1") is first and book.by_job_id("") is None and book.live() == [first]
    assert book.clear_finished() == 1 and book.records() == [first]


# --- the connection thread against real backends ------------------------------------------------------------


def events_until(conn, predicate, timeout: float = 60.0) -> list:
    """Collect events until `predicate(event)` holds for one of them."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = conn.next_event(0.2)
        if event is not None:
            seen.append(event)
            if predicate(event):
                return seen
    raise AssertionError(f"timed out; saw {[type(e).__name__ for e in seen][-20:]}")


def test_frames_are_written_by_the_connection_thread(shared_backend, tmp_path) -> None:
    conn = connection.Connection(shared_backend.endpoint, timeout=5.0)
    try:
        events_until(conn, lambda e: isinstance(e, connection.StatusChanged) and e.status.connected)
        assert "test_pattern" in conn.status.capabilities and conn.status.device == "cpu"
        folder = takes.new_take(tmp_path, "card")
        conn.submit("k1", "test_pattern", {"count": 5, "width": 32, "height": 16}, str(folder))
        seen = events_until(conn, lambda e: isinstance(e, connection.JobReply) and isinstance(e.message, Result))
        accepted = [e for e in seen if isinstance(e, connection.SubmitAccepted)]
        assert [e.key for e in accepted] == ["k1"]
        written = [e for e in seen if isinstance(e, connection.FrameWritten)]
        assert [e.frame for e in written] == [0, 1, 2, 3, 4] and {e.job_id for e in written} == {accepted[0].job_id}
        with PIL.Image.open(takes.frame_path(folder, 4)) as image:
            assert image.size == (32, 16) and image.mode == "RGBA"
        conn.submit("k2", "no_such_job", {})
        refused = events_until(conn, lambda e: isinstance(e, connection.JobRefused))[-1]
        assert refused.key == "k2" and refused.code == "unknown_job_kind"
    finally:
        conn.close()
    assert not conn.alive


def test_an_unreachable_backend_is_a_status_not_an_exception() -> None:
    conn = connection.Connection("tcp://127.0.0.1:9", timeout=0.3, retry_every=0.2)
    try:
        status = events_until(conn, lambda e: isinstance(e, connection.StatusChanged), 10)[-1].status
        assert not status.connected and "no reply" in status.text and not status.warning
        conn.submit("k", "render", {})
        refused = events_until(conn, lambda e: isinstance(e, connection.JobRefused), 10)[-1]
        assert (refused.key, refused.code) == ("k", "not_connected") and "backend" in refused.hint
    finally:
        conn.close()
    with pytest.raises(ValueError, match="localhost:5555"):
        connection.Connection("localhost:5555")


def test_an_address_zeromq_rejects_is_reported_and_the_thread_lives_on() -> None:
    conn = connection.Connection("ipc://", timeout=0.3, retry_every=0.2)
    try:
        status = events_until(conn, lambda e: isinstance(e, connection.StatusChanged), 10)[-1].status
        assert not status.connected and status.text.startswith("cannot reach ipc://")
        time.sleep(0.5)
        assert conn.alive
    finally:
        conn.close()


def test_a_killed_backend_warns_then_reconnects_and_reattaches(make_backend, tmp_path) -> None:
    first = make_backend(folder=tmp_path / "b")
    endpoint = first.start()
    conn = connection.Connection(endpoint, timeout=1.0, heartbeat=0.5, retry_every=0.3)
    try:
        events_until(conn, lambda e: isinstance(e, connection.StatusChanged) and e.status.connected)
        (tmp_path / "frames").mkdir()
        conn.submit("slow", "test_pattern", {"count": 4000, "width": 256, "height": 256, "write": True},
                    str(tmp_path / "frames"))
        seen = events_until(conn, lambda e: isinstance(e, connection.FrameWritten))
        job_id = next(e.job_id for e in seen if isinstance(e, connection.SubmitAccepted))
        first.stop(signal.SIGKILL)
        lost = events_until(conn, lambda e: isinstance(e, connection.StatusChanged))[-1].status
        assert not lost.connected and lost.warning and "reconnecting" in lost.text
        second = make_backend(bind=endpoint, folder=tmp_path / "b")  # same port, same workspace
        second.start()
        seen = events_until(conn, lambda e: isinstance(e, connection.JobReply) and isinstance(e.message, Failed))
        assert any(isinstance(e, connection.StatusChanged) and e.status.connected for e in seen)
        failed = seen[-1]
        assert failed.job_id == job_id and failed.message.code is ErrorCode.INTERRUPTED
    finally:
        conn.close()
