"""Python cost of one frame message on each side of the protocol, without the transport.

`bench/ipc.py` measures the whole stream, but on a 2-core machine its figure moves by ±10 % from run to
run, so a change of a few microseconds per message is invisible there. This measures the two Python
paths a streamed frame takes, each on its own in one thread with warm caches:

  backend: the `test_pattern` job's `static` stream through a real JobContext, each frame built into a
      FrameReply and encoded (what a worker does per frame before handing it to the I/O thread);
  client: FrameReply messages already waiting on an inproc socket, received, decoded and dispatched
      through `Job.replies()` (what the add-on's connection does per frame). Its frames are 64x64: the
      decoded image is a view of the received bytes, so this path does not depend on the frame size,
      and all the messages are queued before the clock starts.

Both take the frame reply's fast paths in `shared_proto.codec` (a stream's headers differ only in the
index), as a real stream does; each stream's first frame goes the general way.

Figures are microseconds per message, the best of --repeats runs of --messages messages.

    python bench/message_cost.py [--messages 3000] [--repeats 7] [--size 512]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def backend_us(messages: int, repeats: int, size: int) -> float:
    """Microseconds per frame for test_pattern (static) -> FrameReply -> encode."""
    from backend.service import pattern_job
    from backend.service.context import JobContext
    from backend.service.registry import JobRegistry
    from backend.service.workspace import Workspace
    from shared_proto import encode

    sent: collections.deque = collections.deque(maxlen=8)  # the hand-off queue's depth: frames are released

    def emit(message) -> None:
        sent.append(encode(message))

    with tempfile.TemporaryDirectory(prefix="keyface-bench-message-") as folder:
        workspace = Workspace(Path(folder))
        registry = JobRegistry(workspace)
        best = float("inf")
        for run in range(repeats):
            record = registry.create("test_pattern", f"bench-{run}", {}, b"peer")
            ctx = JobContext(record, registry, workspace, "cpu", emit)
            start = time.perf_counter()
            pattern_job.run({"count": messages, "width": size, "height": size, "static": True}, ctx)
            best = min(best, time.perf_counter() - start)
    return best / messages * 1e6


CLIENT_FRAME_SIZE = 64


def client_us(messages: int, repeats: int, size: int = CLIENT_FRAME_SIZE) -> float:
    """Microseconds per frame for receive -> decode -> dispatch -> Job.replies()."""
    import numpy as np
    import zmq

    from shared_client import Client
    from shared_client.client import Job
    from shared_proto import FrameReply, Result, encode

    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, 0)  # every message is queued before the clock starts
    router.bind("inproc://keyface-bench-message-cost")
    client = Client("inproc://keyface-bench-message-cost")
    client.socket.setsockopt(zmq.RCVHWM, 0)
    client.socket.send(b"")
    peer = router.recv_multipart()[0]
    image = np.zeros((size, size, 4), np.uint8)
    best = float("inf")
    try:
        for run in range(repeats):
            job = Job(client, f"job-{run}", f"request-{run}", "test_pattern")
            client._jobs[job.id] = job
            for index in range(messages):
                router.send_multipart([peer, *encode(FrameReply(id=job.request_id, job=job.id, index=index,
                                                                image=image))])
            router.send_multipart([peer, *encode(Result(id=job.request_id, job=job.id, result={}))])
            start = time.perf_counter()
            received = sum(isinstance(reply, FrameReply) for reply in job.replies(timeout=60))
            best = min(best, time.perf_counter() - start)
            if received != messages:
                raise RuntimeError(f"received {received} of {messages} frames")
    finally:
        client.close()
        router.close(linger=0)
    return best / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(json.dumps({
        "bench": "message_cost", "backend_frame": f"{args.size}x{args.size} RGBA uint8", "messages": args.messages,
        "repeats": args.repeats, "unit": "microseconds per frame message, best run, one thread",
        "backend_us": round(backend_us(args.messages, args.repeats, args.size), 2),
        "client_us": round(client_us(args.messages, args.repeats), 2), "client_frame": f"{CLIENT_FRAME_SIZE}x{CLIENT_FRAME_SIZE}",
    }), flush=True)


if __name__ == "__main__":
    main()
