"""Codec round trips and every rejection path of `decode`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared_proto import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    ErrorCode,
    Failed,
    Fetch,
    FlameSequence,
    FrameReply,
    Hello,
    Jobs,
    Progress,
    ProtocolError,
    Result,
    Status,
    Submit,
    Welcome,
    decode,
    encode,
    peek_id,
)


def sequence(frames: int = 3) -> FlameSequence:
    rng = np.random.default_rng(0)
    return FlameSequence(shape=rng.normal(size=20), expression=rng.normal(size=(frames, 10)),
                         rotation=rng.normal(size=(frames, 3)) * 0.1, neck=np.zeros((frames, 3)),
                         jaw=np.zeros((frames, 3)), eyes=np.zeros((frames, 6)), translation=np.zeros((frames, 3)),
                         fps=30.0, frame_start=10)


EXAMPLES = [
    Hello(id="h1", client="pytest"),
    Submit(id="s1", kind="render", spec={"sequence": sequence().to_wire(), "quality": "draft", "n": [1, 2.5, None]}),
    Cancel(id="c1", job="j1"),
    Status(id="st1"),
    Status(id="st2", job="j1", attach=True),
    Fetch(id="f1", asset="jobs/x/report.json", offset=10, length=100),
    Welcome(id="h1", capabilities=["render"], device="cpu", gpu={"name": "x", "memory_bytes": 1}, limits={"a": 1}),
    Accepted(id="s1", job="j1", kind="render", position=2),
    Progress(id="s1", job="j1", stage="fit", step=3, total=10, message="m", eta_s=1.5,
             preview=np.zeros((4, 5, 4), np.uint8)),
    FrameReply(id="s1", job="j1", index=7, image=np.full((6, 8, 4), 0.5, np.float16), meta={"frame": 12}),
    Result(id="s1", job="j1", result={"psnr": 30.1, "depth": np.arange(6, dtype="<f8").reshape(2, 3)}),
    Failed(id="s1", job="j1", code=ErrorCode.BAD_SPEC, message="bad", hint="fix it"),
    Jobs(id="st1", jobs=[{"job": "j1", "state": "running"}]),
]


def assert_same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.TYPE)
def test_round_trip(message) -> None:
    decoded = decode(encode(message))
    assert type(decoded) is type(message)
    assert decoded.id == message.id and decoded.job == message.job
    assert_same(message.body(), decoded.body())


def test_every_type_has_an_example() -> None:
    assert {m.TYPE for m in EXAMPLES} == set(MESSAGE_TYPES)


def test_header_is_one_json_object_with_the_required_keys() -> None:
    frames = encode(EXAMPLES[1])
    header = json.loads(bytes(frames[0]))
    assert header["v"] == PROTOCOL_VERSION and header["type"] == "submit" and header["id"] == "s1"
    assert {"v", "type", "id", "job", "body", "buffers"} <= set(header)
    assert len(frames) == 1 + len(header["buffers"])
    for spec in header["buffers"]:
        assert spec["dtype"].startswith(("<", "|"))


def test_arrays_are_decoded_read_only_without_copy() -> None:
    image = np.arange(6 * 8 * 4, dtype=np.uint8).reshape(6, 8, 4)
    frames = encode(FrameReply(id="a", job="j", image=image))
    decoded = decode(frames)
    assert not decoded.image.flags.writeable
    assert np.shares_memory(decoded.image, np.frombuffer(frames[1], np.uint8))


def test_big_endian_and_non_contiguous_arrays_are_sent_little_endian() -> None:
    data = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    decoded = decode(encode(Result(id="r", result={"x": data})))
    assert decoded.result["x"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(decoded.result["x"], data)


def test_json_look_alikes_travel_as_plain_json_values() -> None:
    """Enums, numpy scalars and str/int subclasses become the plain values they stand for."""
    import enum

    class Shade(str, enum.Enum):
        WARM = "warm"

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    sent = {"shade": Shade.WARM, "level": Level.HIGH, "flag": np.bool_(True), "count": np.int64(7),
            "gain": np.float32(0.5), "name": Name("kf"), "nested": [{"code": ErrorCode.CANCELLED}, (1, 2)]}
    header = json.loads(encode(Result(id="r", result=sent))[0])
    assert header["body"]["result"] == {"shade": "warm", "level": 3, "flag": True, "count": 7, "gain": 0.5,
                                        "name": "kf", "nested": [{"code": "cancelled"}, [1, 2]]}
    assert type(header["body"]["result"]["level"]) is int


@pytest.mark.parametrize("value, error", [
    (np.zeros(2, dtype=np.complex64), TypeError),
    (np.array(["a"]), TypeError),
    (float("nan"), ValueError),
    (object(), TypeError),
    ({1: 2}, TypeError),
    ({"$buffer": "x"}, ValueError),
])
def test_encode_refuses_unsendable_values(value, error) -> None:
    with pytest.raises(error):
        encode(Result(id="r", result={"v": value}))


def header_frames(**changes):
    header = {"v": PROTOCOL_VERSION, "type": "hello", "id": "x", "job": None, "body": {}, "buffers": []}
    header.update(changes)
    return [json.dumps(header).encode()]


@pytest.mark.parametrize("frames, code", [
    ([], ErrorCode.BAD_MESSAGE),
    ([b"\xff\xfe"], ErrorCode.BAD_MESSAGE),
    ([b"not json"], ErrorCode.BAD_MESSAGE),
    ([b"[1, 2]"], ErrorCode.BAD_MESSAGE),
    ([b'{"v": NaN}'], ErrorCode.BAD_VALUE),
    ([b"[" * 100000 + b"]" * 100000], ErrorCode.BAD_MESSAGE),
    (header_frames(v=2), ErrorCode.BAD_VERSION),
    (header_frames(v=True), ErrorCode.BAD_MESSAGE),
    (header_frames(type="launch_missiles"), ErrorCode.UNKNOWN_TYPE),
    (header_frames(extra=1), ErrorCode.BAD_MESSAGE),
    (header_frames(body=[]), ErrorCode.BAD_MESSAGE),
    (header_frames(body={"unknown": 1}), ErrorCode.BAD_MESSAGE),
    (header_frames(body={"client": 5}), ErrorCode.BAD_MESSAGE),
    (header_frames(body={"client": 1e999}), ErrorCode.BAD_VALUE),
    (header_frames(id=""), ErrorCode.BAD_MESSAGE),
    (header_frames(id="a" * 500), ErrorCode.BAD_MESSAGE),
    (header_frames(buffers=[{"name": "a", "dtype": "<f4", "shape": [1]}]), ErrorCode.BAD_BUFFER),
    (header_frames(type="cancel"), ErrorCode.BAD_MESSAGE),
    (header_frames(type="fetch", body={"asset": "a", "length": 10**12}), ErrorCode.BAD_VALUE),
])
def test_decode_rejects(frames, code) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code is code, info.value


def result_with_buffer(dtype: str, shape, payload: bytes, ref: object = None):
    body = {"result": {"x": ref if ref is not None else {"$buffer": "b"}}}
    return header_frames(type="result", body=body, buffers=[{"name": "b", "dtype": dtype, "shape": shape}]) + [payload]


@pytest.mark.parametrize("frames, code", [
    (result_with_buffer(">f4", [1], b"\0" * 4), ErrorCode.BAD_DTYPE),
    (result_with_buffer("object", [1], b"\0" * 8), ErrorCode.BAD_DTYPE),
    (result_with_buffer("<f4", [2], b"\0" * 4), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [-1], b""), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [2**39, 2**39], b"\0" * 4), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [1] * 9, b"\0" * 4), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [1.0], b"\0" * 4), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [1], np.array([np.nan], "<f4").tobytes()), ErrorCode.BAD_VALUE),
    (result_with_buffer("<f8", [1], np.array([np.inf], "<f8").tobytes()), ErrorCode.BAD_VALUE),
    (result_with_buffer("<f4", [1], b"\0" * 4, ref=1), ErrorCode.BAD_BUFFER),
    (result_with_buffer("<f4", [1], b"\0" * 4, ref={"$buffer": "other"}), ErrorCode.BAD_BUFFER),
    (header_frames(type="result", body={"result": {"a": {"$buffer": "b"}, "c": {"$buffer": "b"}}},
                   buffers=[{"name": "b", "dtype": "|u1", "shape": [1]}]) + [b"\0"], ErrorCode.BAD_BUFFER),
    (header_frames(type="frame", job="j", body={"image": {"$buffer": "b"}},
                   buffers=[{"name": "b", "dtype": "<f4", "shape": [2, 2, 4]}]) + [b"\0" * 64], ErrorCode.BAD_VALUE),
])
def test_decode_rejects_bad_buffers(frames, code) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code is code, info.value


def test_size_limits() -> None:
    frames = encode(Result(id="r", result={"x": np.zeros(4096, np.uint8)}))
    with pytest.raises(ProtocolError) as info:
        decode(frames, max_message_bytes=2048)
    assert info.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as info:
        decode([b" " * (1024 * 1024 + 1)])
    assert info.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as info:
        decode([b"{}"] + [b""] * 300)
    assert info.value.code is ErrorCode.TOO_LARGE


def test_peek_id_recovers_the_id_of_a_rejected_request() -> None:
    assert peek_id(header_frames(v=99, id="abc")) == "abc"
    assert peek_id([b"garbage"]) is None
    assert peek_id(header_frames(id="with space")) is None
    assert peek_id([]) is None


def test_encode_names_buffers_uniquely_and_enforces_the_decoders_limits() -> None:
    array = np.zeros(2, np.float32)
    decoded = decode(encode(Result(id="r", result={"a.b": array, "a": {"b": array + 1}, "k" * 300: array})))
    np.testing.assert_array_equal(decoded.result["a"]["b"], array + 1)
    np.testing.assert_array_equal(decoded.result["k" * 300], array)
    with pytest.raises(ValueError, match="at most 256 arrays"):
        encode(Result(id="r", result={"many": [array] * 257}))
    with pytest.raises(ValueError, match="header"):
        encode(Result(id="r", result={"paths": ["x" * 1000] * 2000}))


def test_peek_id_reads_oversized_and_broken_headers() -> None:
    big = header_frames(id="big-1", body={"client": "x" * (2 * 1024 * 1024)})
    assert peek_id(big) == "big-1"
    assert peek_id([big[0][:200]]) == "big-1"


def test_sent_arrays_are_released_as_soon_as_the_frames_are_dropped() -> None:
    """No reference cycle keeps an encoded frame alive until Python's cycle collector happens to run."""
    import gc
    import sys

    image = np.zeros((64, 64, 4), np.uint8)
    before = sys.getrefcount(image)
    gc.disable()
    try:
        frames = encode(FrameReply(id="r", job="j", index=0, image=image, meta={"nested": [{"a": np.ones(3)}]}))
        assert sys.getrefcount(image) > before
        del frames
        assert sys.getrefcount(image) == before
    finally:
        gc.enable()
