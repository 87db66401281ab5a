"""Frame streaming throughput: Keyface backend -> client vs raw pyzmq, over loopback TCP.

Prints one JSON line:
  keyface: a `test_pattern` job streaming N frames of W x H RGBA uint8 from a backend process to a Client
           (timed from the first frame's arrival to the last, so job start-up is excluded);
  raw_pyzmq: a separate process sending N buffers of the same size with PUSH -> PULL, copy=False
           (timed the same way);
  ratio = keyface fps / raw fps (goal >= 0.8). Each figure is the median of --repeats runs.

    python bench/ipc.py [--frames 300] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def keyface_run(endpoint: str, frames: int, size: int) -> float:
    """Seconds from the first to the last frame of a test_pattern job."""
    from shared_client import Client
    from shared_proto import FrameReply

    with Client(endpoint, timeout=30) as client:
        job = client.submit("test_pattern", {"count": frames, "width": size, "height": size})
        first = last = None
        received = 0
        for reply in job.replies(timeout=600):
            if isinstance(reply, FrameReply):
                last = time.perf_counter()
                first = first or last
                received += 1
        if received != frames:
            raise RuntimeError(f"received {received} of {frames} frames")
    return last - first


def raw_sender(endpoint: str, frames: int, nbytes: int) -> None:
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.connect(endpoint)
    payload = bytearray(os.urandom(nbytes))
    for _ in range(frames):
        socket.send(payload, copy=False)
    socket.close(linger=-1)
    context.term()  # returns once every message has left, while `payload` is still alive


def raw_run(frames: int, nbytes: int) -> float:
    import zmq

    pull = zmq.Context.instance().socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sender = subprocess.Popen([sys.executable, __file__, "--raw-sender", f"tcp://127.0.0.1:{port}",
                               str(frames), str(nbytes)])
    first = None
    for _ in range(frames):
        message = pull.recv(copy=False)
        assert len(message) == nbytes
        first = first or time.perf_counter()
    last = time.perf_counter()
    sender.wait()
    pull.close()
    return last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw-sender", nargs=3, metavar=("ENDPOINT", "FRAMES", "BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_sender:
        raw_sender(args.raw_sender[0], int(args.raw_sender[1]), int(args.raw_sender[2]))
        return
    nbytes = args.size * args.size * 4
    with tempfile.TemporaryDirectory(prefix="keyface-bench-ipc-") as folder:
        from backend.demo import start_backend

        backend, endpoint = start_backend(Path(folder) / "ws", Path(folder) / "backend.log", "--device", "cpu")
        try:
            keyface_run(endpoint, 10, args.size)  # warm-up
            keyface = [keyface_run(endpoint, args.frames, args.size) for _ in range(args.repeats)]
        finally:
            backend.terminate()
            backend.wait(30)
    raw = [raw_run(args.frames, nbytes) for _ in range(args.repeats)]
    intervals = args.frames - 1  # first-to-last spans frames - 1 intervals

    def figures(seconds: list[float]) -> dict[str, float]:
        fps = intervals / statistics.median(seconds)
        return {"fps": round(fps, 1), "mb_s": round(fps * nbytes / 1e6, 1)}

    keyface_figures, raw_figures = figures(keyface), figures(raw)
    print(json.dumps({
        "bench": "ipc", "frame": f"{args.size}x{args.size} RGBA uint8 ({nbytes} bytes)", "frames": args.frames,
        "repeats": args.repeats, "transport": "tcp loopback", "keyface": keyface_figures, "raw_pyzmq": raw_figures,
        "ratio": round(keyface_figures["fps"] / raw_figures["fps"], 3),
    }), flush=True)


if __name__ == "__main__":
    main()
