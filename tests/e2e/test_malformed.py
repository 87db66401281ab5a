"""Throw over a thousand malformed messages at a running backend; it answers each and keeps serving."""

from __future__ import annotations

import json
import random

import numpy as np
import zmq

from shared_client import Client
from shared_proto import PROTOCOL_VERSION, ErrorCode, Failed, Result, Submit, Welcome, decode, encode

MAX_MESSAGE_MB = 1


def header(**changes) -> bytes:
    values = {"v": PROTOCOL_VERSION, "type": "submit", "id": "m", "job": None,
              "body": {"kind": "test_pattern", "spec": {}}, "buffers": []}
    values.update(changes)
    return json.dumps(values).encode()


def malformed_messages(rng: random.Random) -> list[tuple[str, list[bytes]]]:
    """(label, frames) covering every class of bad input, with random variations."""
    valid = [bytes(f) for f in encode(Submit(id="v", kind="test_pattern", spec={
        "count": 1, "tensor": np.arange(12, dtype="<f4").reshape(3, 4)}))]
    makers = {
        "random bytes": lambda: [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))],
        "not utf-8": lambda: [b"\xff\xfe" + rng.randbytes(20)],
        "not json": lambda: [b"{" + rng.randbytes(10)],
        "json not object": lambda: [json.dumps(rng.choice([[1, 2], "x", 3, None, True])).encode()],
        "unknown version": lambda: [header(v=rng.choice([0, 2, 99, -1]))],
        "unknown type": lambda: [header(type=rng.choice(["launch", "", "HELLO", "welcome_back"]))],
        "reply type sent as request": lambda: [bytes(f) for f in encode(Welcome(id=f"w{rng.random()}"))],
        "bad dtype": lambda: [header(buffers=[{"name": "b", "dtype": rng.choice([">f4", "O", "<c8", "V8"]),
                                               "shape": [1]}], body={"kind": "test_pattern",
                                                                     "spec": {"x": {"$buffer": "b"}}}), b"\0" * 8],
        "size mismatch": lambda: [header(buffers=[{"name": "b", "dtype": "<f4", "shape": [rng.randint(2, 50)]}],
                                         body={"kind": "test_pattern", "spec": {"x": {"$buffer": "b"}}}), b"\0" * 4],
        "huge shape claim": lambda: [header(buffers=[{"name": "b", "dtype": "<f8", "shape": [2**39, 2**39, 2**39]}],
                                            body={"kind": "test_pattern", "spec": {"x": {"$buffer": "b"}}}), b""],
        "negative shape": lambda: [header(buffers=[{"name": "b", "dtype": "<f4", "shape": [-4]}],
                                          body={"kind": "test_pattern", "spec": {"x": {"$buffer": "b"}}}), b""],
        "nan in parameters": lambda: [header(buffers=[{"name": "b", "dtype": "<f4", "shape": [3]}],
                    body={"kind": "test_pattern", "spec": {"jaw": {"$buffer": "b"}}}),
             np.array([0, np.nan, np.inf], "<f4").tobytes()],
        "nan in json": lambda: [header(body={"kind": "test_pattern", "spec": {"x": float("nan")}}).replace(
            b"NaN", rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))],
        "oversized": lambda: [header(), b"\0" * (600 * 1024), b"\0" * (600 * 1024)],
        "mutated valid": lambda: mutate(valid, rng),
        "truncated header": lambda: [valid[0][: rng.randint(0, len(valid[0]) - 1)], *valid[1:]],
        "missing buffer frame": lambda: valid[:1],
        "extra frame": lambda: [*valid, b"\0" * 4],
        "deep nesting": lambda: [b'{"v":1,"type":"submit","id":"d","body":' + b"[" * 50000 + b"]" * 50000 + b"}"],
        "bad id": lambda: [header(id=rng.choice(["", " ", "x" * 300, 5, None]))],
        "unknown job kind": lambda: [header(body={"kind": rng.choice(["nope", "make_coffee", "render_v2"]), "spec": {}})],
        "bad spec": lambda: [header(body={"kind": "test_pattern", "spec": {"count": rng.choice([-1, 0, "ten",
                                                                                               10**9])}})],
        "cancel unknown job": lambda: [header(type="cancel", job=f"j{rng.random()}", body={})],
    }
    messages = []
    for index in range(1100):
        label = list(makers)[index % len(makers)]
        messages.append((label, makers[label]()))
    return messages


def mutate(frames: list[bytes], rng: random.Random) -> list[bytes]:
    frames = list(frames)
    index = rng.randrange(len(frames))
    raw = bytearray(frames[index])
    for _ in range(rng.randint(1, 5)):
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    frames[index] = bytes(raw)
    return frames


def test_a_thousand_malformed_messages_then_a_real_job(make_backend) -> None:
    backend = make_backend("--max-message-mb", str(MAX_MESSAGE_MB))
    backend.start()
    rng = random.Random(1234)
    messages = malformed_messages(rng)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(backend.endpoint)
    codes: dict[str, set[str]] = {}
    unanswered, accepted = [], 0
    for label, frames in messages:
        dealer.send_multipart(frames)
        replies = []
        while dealer.poll(5000):
            replies.append(decode(dealer.recv_multipart()))
            if replies[-1].TYPE in ("failed", "accepted") or not dealer.poll(0):
                break
        if not replies:
            unanswered.append(label)
            continue
        reply = replies[0]
        if reply.TYPE == "accepted":  # a mutation that happened to stay valid
            accepted += 1
            continue
        assert isinstance(reply, Failed), (label, reply)
        assert reply.message, label
        codes.setdefault(label, set()).add(reply.code.value)
    dealer.close()
    assert len(messages) >= 1000
    assert not unanswered, f"no reply to {len(unanswered)} messages: {sorted(set(unanswered))}"
    assert accepted < 20
    assert codes["bad dtype"] == {ErrorCode.BAD_DTYPE.value}
    assert codes["size mismatch"] == {ErrorCode.BAD_BUFFER.value}
    assert codes["huge shape claim"] == {ErrorCode.BAD_BUFFER.value}
    assert codes["nan in parameters"] == {ErrorCode.BAD_VALUE.value}
    assert codes["oversized"] == {ErrorCode.TOO_LARGE.value}
    assert codes["unknown version"] == {ErrorCode.BAD_VERSION.value}
    assert codes["unknown type"] == codes["reply type sent as request"] == {ErrorCode.UNKNOWN_TYPE.value}
    assert codes["unknown job kind"] == {ErrorCode.UNKNOWN_JOB_KIND.value}
    assert codes["bad spec"] == {ErrorCode.BAD_SPEC.value}
    assert codes["cancel unknown job"] == {ErrorCode.UNKNOWN_JOB.value}
    assert backend.alive()
    with Client(backend.endpoint, timeout=20) as fresh:
        assert fresh.hello().protocol == PROTOCOL_VERSION
        job = fresh.submit("test_pattern", {"count": 4, "width": 64, "height": 64})
        replies = list(job.replies(timeout=120))
        assert isinstance(replies[-1], Result) and replies[-1].result["frames"] == 4
