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

With --cpu (Linux), `cpu_us_per_frame` also says where the CPU time goes in each pair: microseconds of CPU per
frame in the sending and the receiving process, ZeroMQ's I/O threads apart from the Python threads, summed
over the repeats from the first frame's arrival to the last (from /proc, in 10 ms clock ticks).

    python bench/ipc.py [--frames 2000] [--size 512] [--repeats 7] [--cpu]
"""

from __future__ import annotations

import argparse
import collections
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


class ThreadCpu:
    """CPU seconds the threads of a sending process and of this (receiving) one use between `start()` and `stop()`."""

    def __init__(self, sender: int = 0) -> None:
        self.sender = sender
        """The sending process (raw runs set it per run)."""
        self.used: collections.Counter[str] = collections.Counter()
        self._started: collections.Counter[str] = collections.Counter()

    def _sample(self) -> collections.Counter[str]:
        """{'sender_zmq_io' | 'sender_python' | 'receiver_...': CPU seconds so far} (Linux /proc)."""
        totals: collections.Counter[str] = collections.Counter()
        tick = os.sysconf("SC_CLK_TCK")
        for role, pid in (("sender", self.sender), ("receiver", os.getpid())):
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                        stat = handle.read()
                except FileNotFoundError:  # a thread that just ended
                    continue
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                ticks = stat[stat.rindex(")") + 2 :].split()[11:13]  # utime, stime
                kind = "zmq_io" if name.startswith("ZMQbg") else "python"
                totals[f"{role}_{kind}"] += sum(map(int, ticks)) / tick
        return totals

    def start(self) -> None:
        self._started = self._sample()

    def stop(self) -> None:
        self.used.update(self._sample())
        self.used.subtract(self._started)


def keyface_run(client, frames: int, size: int, static: bool, cpu: ThreadCpu | None = None) -> float:
    """Seconds from the first to the last frame of a test_pattern job."""
    from shared_proto import FrameReply

    job = client.submit("test_pattern", {"count": frames, "width": size, "height": size, "static": static})
    first = last = None
    received = 0
    for reply in job.replies(timeout=600):
        if isinstance(reply, FrameReply):
            last = time.perf_counter()
            if first is None:
                first = last
                if cpu:
                    cpu.start()
            received += 1
    if cpu:
        cpu.stop()
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
    sys.stdin.read()  # the receiver may still be reading this process's CPU time


def raw_run(frames: int, nbytes: int, pool: int, cpu: ThreadCpu | None = None) -> float:
    import zmq

    pull = zmq.Context.instance().socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sender = subprocess.Popen([sys.executable, __file__, "--raw-sender", f"tcp://127.0.0.1:{port}",
                               str(frames), str(nbytes), str(pool)], stdin=subprocess.PIPE)
    if cpu:
        cpu.sender = sender.pid
    first = None
    for _ in range(frames):
        message = pull.recv(copy=False)
        assert len(message) == nbytes
        if first is None:
            first = time.perf_counter()
            if cpu:
                cpu.start()
    last = time.perf_counter()
    if cpu:
        cpu.stop()
    sender.communicate()
    pull.close()
    return last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cpu", action="store_true", help="also report CPU time per frame by thread kind (Linux)")
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
    names = ("keyface_one", "raw_one", "keyface_distinct", "raw_distinct")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="keyface-bench-ipc-") as folder:
        from backend.demo import start_backend

        backend, endpoint = start_backend(Path(folder) / "ws", Path(folder) / "backend.log", "--device", "cpu")
        cpu = ({name: ThreadCpu(backend.pid if name.startswith("keyface") else 0) for name in names}
               if args.cpu else {})
        try:
            with Client(endpoint, timeout=30) as client:
                keyface_run(client, 10, args.size, static=False)  # warm-up
                for _ in range(args.repeats):
                    seconds["keyface_one"].append(keyface_run(client, args.frames, args.size, True,
                                                              cpu.get("keyface_one")))
                    seconds["raw_one"].append(raw_run(args.frames, nbytes, 1, cpu.get("raw_one")))
                    seconds["keyface_distinct"].append(keyface_run(client, args.frames, args.size, False,
                                                                   cpu.get("keyface_distinct")))
                    seconds["raw_distinct"].append(raw_run(args.frames, nbytes, RAW_POOL, cpu.get("raw_distinct")))
        finally:
            backend.terminate()
            backend.wait(30)
    intervals = args.frames - 1  # first-to-last spans frames - 1 intervals

    def cpu_us_per_frame(name: str) -> dict[str, float]:
        used = {key: round(cpu[name].used[key] / (intervals * args.repeats) * 1e6, 1)
                for key in (f"{role}_{kind}" for role in ("sender", "receiver") for kind in ("zmq_io", "python"))}
        return {**used, "total": round(sum(used.values()), 1)}

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
        "ratio": round(statistics.median(ratios["one"]), 3), "pair_ratios": ratios["one"],
        "distinct": {"keyface": result["keyface_distinct"], "raw_pyzmq": result["raw_distinct"],
                     "raw_pool": RAW_POOL, "ratio": round(statistics.median(ratios["distinct"]), 3),
                     "pair_ratios": ratios["distinct"]},
        **({"cpu_us_per_frame": {name: cpu_us_per_frame(name) for name in names}} if args.cpu else {}),
    }), flush=True)


if __name__ == "__main__":
    main()
