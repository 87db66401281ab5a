"""Frame streaming throughput: Keyface backend -> client vs raw pyzmq, over loopback TCP.

Two like-for-like pairs, each measured in the same run with the runs interleaved (K, R, K, R, ...), because
this machine's speed drifts over seconds:

  one_buffer (the headline `ratio`): the backend's `test_pattern` job with `static` (every frame the same
      W x H RGBA uint8 card, sent from one buffer) streamed to a Client, vs a raw pyzmq PUSH -> PULL
      sender sending one buffer of the same size N times (copy=False);
  distinct: the moving test pattern (every frame different, drawn into recycled buffers while earlier
      ones are still in flight) vs raw pyzmq sending from a pool of 64 distinct buffers, so that neither
      side's frames are in the CPU cache the way a single buffer is.

Timed at the receiver from the first frame's arrival to the last (job start-up excluded). Frames/s and MB/s
are the medians of --repeats runs; a pair's `ratio` is the median of the per-repeat ratios (Keyface over raw,
the two runs back to back, so the machine's drift over seconds cancels), and `pair_ratios` lists them. Both
receivers run in this process with the same malloc settings as the
backend (`backend.service.allocator`), so 1 MiB message buffers are reused rather than re-faulted.

    python bench/ipc.py [--frames 2000] [--size 512] [--repeats 7]
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

RAW_POOL = 64
"""Distinct buffers the raw sender cycles through in the `distinct` pair (64 MiB at 512x512)."""


def keyface_run(client, frames: int, size: int, static: bool) -> float:
    """Seconds from the first to the last frame of a test_pattern job."""
    from shared_proto import FrameReply

    job = client.submit("test_pattern", {"count": frames, "width": size, "height": size, "static": static})
    first = last = None
    received = 0
    for reply in job.replies(timeout=600):
        if isinstance(reply, FrameReply):
            last = time.perf_counter()
            first = first or last
            received += 1
    if received != frames or job.result is None:
        raise RuntimeError(f"received {received} of {frames} frames ({job.failure})")
    return last - first


def raw_sender(endpoint: str, frames: int, nbytes: int, pool: int) -> None:
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.connect(endpoint)
    payloads = [bytearray(os.urandom(nbytes)) for _ in range(pool)]
    for index in range(frames):
        socket.send(payloads[index % pool], copy=False)
    socket.close(linger=-1)
    context.term()  # returns once every message has left, while `payloads` are still alive


def raw_run(frames: int, nbytes: int, pool: int) -> float:
    import zmq

    pull = zmq.Context.instance().socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sender = subprocess.Popen([sys.executable, __file__, "--raw-sender", f"tcp://127.0.0.1:{port}",
                               str(frames), str(nbytes), str(pool)])
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
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--raw-sender", nargs=4, metavar=("ENDPOINT", "FRAMES", "BYTES", "POOL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_sender:
        raw_sender(args.raw_sender[0], *map(int, args.raw_sender[1:]))
        return
    from backend.service.allocator import keep_large_buffers_in_heap
    from shared_client import Client

    keep_large_buffers_in_heap()
    nbytes = args.size * args.size * 4
    seconds: dict[str, list[float]] = {name: [] for name in ("keyface_one", "raw_one", "keyface_distinct",
                                                            "raw_distinct")}
    with tempfile.TemporaryDirectory(prefix="keyface-bench-ipc-") as folder:
        from backend.demo import start_backend

        backend, endpoint = start_backend(Path(folder) / "ws", Path(folder) / "backend.log", "--device", "cpu")
        try:
            with Client(endpoint, timeout=30) as client:
                keyface_run(client, 10, args.size, static=False)  # warm-up
                for _ in range(args.repeats):
                    seconds["keyface_one"].append(keyface_run(client, args.frames, args.size, static=True))
                    seconds["raw_one"].append(raw_run(args.frames, nbytes, pool=1))
                    seconds["keyface_distinct"].append(keyface_run(client, args.frames, args.size, static=False))
                    seconds["raw_distinct"].append(raw_run(args.frames, nbytes, pool=RAW_POOL))
        finally:
            backend.terminate()
            backend.wait(30)
    intervals = args.frames - 1  # first-to-last spans frames - 1 intervals

    def figures(name: str) -> dict[str, float]:
        fps = intervals / statistics.median(seconds[name])
        return {"fps": round(fps, 1), "mb_s": round(fps * nbytes / 1e6, 1)}

    def pair_ratios(pair: str) -> list[float]:  # fps ratio = inverse ratio of the seconds
        return [round(raw / keyface, 3) for keyface, raw in zip(seconds[f"keyface_{pair}"], seconds[f"raw_{pair}"])]

    result = {name: figures(name) for name in seconds}
    ratios = {pair: pair_ratios(pair) for pair in ("one", "distinct")}
    print(json.dumps({
        "bench": "ipc", "frame": f"{args.size}x{args.size} RGBA uint8 ({nbytes} bytes)", "frames": args.frames,
        "repeats": args.repeats, "transport": "tcp loopback",
        "keyface": result["keyface_one"], "raw_pyzmq": result["raw_one"],
        "ratio": statistics.median(ratios["one"]), "pair_ratios": ratios["one"],
        "distinct": {"keyface": result["keyface_distinct"], "raw_pyzmq": result["raw_distinct"],
                     "raw_pool": RAW_POOL, "ratio": statistics.median(ratios["distinct"]),
                     "pair_ratios": ratios["distinct"]},
    }), flush=True)


if __name__ == "__main__":
    main()
