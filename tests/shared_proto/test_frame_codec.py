"""Parity: the frame reply's fast paths give exactly what the general paths give (bytes, messages, errors)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from shared_proto import FrameReply, ProtocolError, decode, encode
from shared_proto.codec import _decode_any, _decode_known_frame, _encode_any

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128)
"""Every id the protocol allows, quotes and backslashes (which JSON escapes) included."""


def frames_bytes(frames) -> list[bytes]:
    return [bytes(frame) for frame in frames]


@SETTINGS
@given(request_id=ids, job=st.none() | ids, index=st.integers(0, 2**63),
       dtype=st.sampled_from([np.uint8, np.float16]), height=st.integers(1, 9), width=st.integers(1, 9))
def test_fast_path_writes_the_general_paths_bytes(request_id, job, index, dtype, height, width) -> None:
    image = np.arange(height * width * 4).reshape(height, width, 4).astype(dtype)
    message = FrameReply(id=request_id, job=job, index=index, image=image)
    fast = encode(message)
    assert np.shares_memory(np.frombuffer(fast[1], np.uint8), image)  # sent without a copy
    assert frames_bytes(fast) == frames_bytes(_encode_any(message))
    decoded = decode(fast)
    assert (decoded.id, decoded.job, decoded.index, decoded.meta) == (request_id, job, index, {})
    np.testing.assert_array_equal(decoded.image, image)


def test_frames_the_fast_path_does_not_take_are_encoded_by_the_general_path() -> None:
    image = np.arange(2 * 6 * 4, dtype=np.uint8).reshape(2, 6, 4)
    for message in (FrameReply(id="r", job="j", index=3, image=image[:, ::2]),  # not contiguous
                    FrameReply(id="r", job="j", index=3, image=image, meta={"frame": 12, "depth": image[..., 0]})):
        assert frames_bytes(encode(message)) == frames_bytes(_encode_any(message))
        decoded = decode(encode(message))
        np.testing.assert_array_equal(decoded.image, message.image)
    assert decoded.meta["frame"] == 12
    np.testing.assert_array_equal(decoded.meta["depth"], image[..., 0])


def test_the_cached_header_follows_the_job_and_the_image_size() -> None:
    small, large = np.zeros((2, 3, 4), np.uint8), np.zeros((5, 7, 4), np.float16)
    for request_id, job, image in (("r1", "j1", small), ("r1", "j2", small), ("r2", "j1", small), ("r1", "j1", large)):
        decoded = decode(encode(FrameReply(id=request_id, job=job, index=1, image=image)))
        assert (decoded.id, decoded.job, decoded.image.shape, decoded.image.dtype) == (
            request_id, job, image.shape, image.dtype)


def general_decode(frames):
    """(message, None) or (None, error code) from the general path alone."""
    try:
        return _decode_any([memoryview(frame).cast("B") for frame in frames]), None
    except ProtocolError as error:
        return None, error.code


def assert_same_frame(a: FrameReply, b: FrameReply) -> None:
    assert (a.id, a.job, a.index, a.meta, a.image.dtype, a.image.shape) == (b.id, b.job, b.index, b.meta,
                                                                         b.image.dtype, b.image.shape)
    assert not a.image.flags.writeable and not b.image.flags.writeable
    np.testing.assert_array_equal(a.image, b.image)


@SETTINGS
@given(request_id=ids, job=st.none() | ids, dtype=st.sampled_from([np.uint8, np.float16]),
       index=st.one_of(st.integers(0, 10**20).map(str), st.text("0123456789-+.eE ", max_size=22)),
       size_change=st.sampled_from([0, 0, 0, -2, 2]), non_finite=st.booleans())
def test_decoding_a_remembered_header_again_gives_the_general_paths_answer(request_id, job, dtype, index,
                                                                          size_change, non_finite) -> None:
    image = np.ones((3, 2, 4), dtype)
    first = encode(FrameReply(id=request_id, job=job, index=0, image=image))
    decode(first)  # the general path decodes the stream's first frame and remembers its header
    header = bytes(first[0]).replace(b'"index":0,', b'"index":%s,' % index.encode(), 1)
    pixels = image.copy()
    if non_finite and dtype is np.float16:
        pixels[1, 1, 2] = np.inf
    frames = [header, pixels.tobytes()[: max(0, pixels.nbytes + size_change)] + b"\0" * max(0, size_change)]
    message, code = general_decode(frames)
    fast = _decode_known_frame(*(memoryview(frame).cast("B") for frame in frames))
    if message is None:
        assert fast is None
        with pytest.raises(ProtocolError) as error:
            decode(frames)
        assert error.value.code == code
    else:
        canonical = index.isdigit() and (index == "0" or index[0] != "0") and len(index) <= 18
        assert fast is not None or not canonical  # e.g. "1 " or a 19-digit index is left to the general path
        assert_same_frame(decode(frames), message)


def test_headers_written_otherwise_are_decoded_by_the_general_path() -> None:
    image = np.zeros((2, 2, 4), np.uint8)
    frames = encode(FrameReply(id="r", job="j", index=4, image=image))
    spaced = bytes(frames[0]).replace(b'"index":4,', b'"index": 4,')
    for header in (spaced, spaced):  # never remembered, so never fast
        assert _decode_known_frame(memoryview(header), memoryview(image).cast("B")) is None
        assert decode([header, frames[1]]).index == 4
