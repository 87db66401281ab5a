"""Keyface wire protocol: messages, codec and data types shared by the add-on and the backend.

Standard library + numpy only; no sockets (see `shared_client` for the ZeroMQ client).
"""

from .codec import ALLOWED_DTYPES, DEFAULT_MAX_MESSAGE_BYTES, decode, encode, peek_id
from .errors import ErrorCode, ProtocolError
from .messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    TERMINAL_TYPES,
    Accepted,
    Cancel,
    Failed,
    Fetch,
    FrameReply,
    Hello,
    Jobs,
    Message,
    Progress,
    Result,
    Status,
    Submit,
    Welcome,
)
from .types import Camera, FlameParams, FlameSequence, Frame

__all__ = [
    "ALLOWED_DTYPES", "DEFAULT_MAX_MESSAGE_BYTES", "MESSAGE_TYPES", "PROTOCOL_VERSION", "TERMINAL_TYPES",
    "Accepted", "Camera", "Cancel", "ErrorCode", "Failed", "Fetch", "FlameParams", "FlameSequence", "Frame",
    "FrameReply", "Hello", "Jobs", "Message", "Progress", "ProtocolError", "Result", "Status", "Submit",
    "Welcome", "decode", "encode", "peek_id",
]
