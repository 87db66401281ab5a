"""Parity: the frame reply's encode fast path writes exactly the bytes of the general path."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_proto import FrameReply, decode, encode
from shared_proto.codec import _encode_any

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
