"""Property tests: `decode` never raises anything but ProtocolError, and encode/decode round-trips."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared_proto import ALLOWED_DTYPES, PROTOCOL_VERSION, ProtocolError, Result, decode, encode
from shared_proto.codec import BUFFER_REF

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def json_trees(keys: st.SearchStrategy[str]) -> st.SearchStrategy:
    """JSON values: scalars, and lists and objects (with keys drawn from `keys`) of them."""
    return st.recursive(
        st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=20,
    )


json_values = json_trees(st.text(max_size=8))
sendable_json_values = json_trees(st.text(max_size=8).filter(lambda key: key != BUFFER_REF))
"""JSON that `encode` sends (it refuses the key the protocol reserves for buffer references)."""


def decode_or_protocol_error(frames) -> None:
    try:
        decode(frames)
    except ProtocolError as error:
        assert error.code and error.message
    # any other exception type propagates and fails the test


@SETTINGS
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_random_bytes(frames) -> None:
    decode_or_protocol_error(frames)


@SETTINGS
@given(
    v=st.one_of(st.just(PROTOCOL_VERSION), json_values),
    type_=st.one_of(st.sampled_from(["hello", "submit", "cancel", "status", "fetch", "welcome", "accepted",
                                     "progress", "frame", "result", "failed", "jobs"]), json_values),
    id_=st.one_of(st.text(min_size=1, max_size=10), json_values),
    job=st.one_of(st.none(), st.text(max_size=10), json_values),
    body=st.one_of(st.dictionaries(st.sampled_from(["client", "kind", "spec", "attach", "asset", "offset",
                                                    "length", "image", "index", "result", "code", "message",
                                                    "stage", "step", "total", "eta_s", "preview", "jobs",
                                                    "capabilities", "gpu", "meta"]),
                                   json_values, max_size=5), json_values),
    buffers=st.lists(st.fixed_dictionaries({
        "name": st.text(max_size=5),
        "dtype": st.sampled_from([*ALLOWED_DTYPES, ">f4", "O", "<c8", "", "u1"]),
        "shape": st.lists(st.integers(-3, 2**41), max_size=4),
    }), max_size=3),
    payloads=st.lists(st.binary(max_size=64), max_size=3),
)
def test_structured_headers(v, type_, id_, job, body, buffers, payloads) -> None:
    header = {"v": v, "type": type_, "id": id_, "job": job, "body": body, "buffers": buffers}
    decode_or_protocol_error([json.dumps(header).encode(), *payloads])


@SETTINGS
@given(st.data())
def test_mutated_valid_messages(data) -> None:
    frames = [bytes(f) for f in encode(Result(id="r", job="j", result={
        "a": np.arange(6, dtype="<f4").reshape(2, 3), "b": [1, "x"], "c": np.zeros(3, np.uint8)}))]
    index = data.draw(st.integers(0, len(frames) - 1))
    raw = bytearray(frames[index])
    for _ in range(data.draw(st.integers(1, 4))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            cut = data.draw(st.integers(0, len(raw)))
            raw = raw[:cut] + data.draw(st.binary(max_size=4))
    frames[index] = bytes(raw)
    decode_or_protocol_error(frames)


@SETTINGS
@given(hnp.arrays(dtype=st.sampled_from([np.dtype(d) for d in ALLOWED_DTYPES]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
                  elements={"allow_nan": False, "allow_infinity": False}),
       sendable_json_values)
def test_round_trip_any_array(array, extra) -> None:
    decoded = decode(encode(Result(id="r", result={"array": array, "extra": extra})))
    out = decoded.result["array"]
    assert out.dtype == array.dtype.newbyteorder("<") and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert decoded.result["extra"] == json.loads(json.dumps(extra))
