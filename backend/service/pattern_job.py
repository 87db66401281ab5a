"""The `test_pattern` job: a test-card frame stream that checks the frame path end to end.

Each frame is a static card (colour bars, a grey ramp, an alpha ramp) with a white disc moving left to
right and the frame's index written as a 24-bit strip along the bottom (`read_counter` reads it back).
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

import numpy as np

from ..job_spec import check_keys, int_field

_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0],
                  [0, 0, 191]], dtype=np.uint8)
COUNTER_BITS = 24
"""Frames carry their index as a 24-bit black/white strip at the bottom (see `read_counter`)."""
RING_BYTES = 256 * 1024 * 1024
"""Memory the job may keep in recycled frame buffers (at least two buffers whatever the frame size)."""

_RGB_BITS = np.uint32(0x00FFFFFF)  # RGBA uint8 pixels seen as little-endian uint32: R is the low byte
_ALPHA_BITS = np.uint32(0xFF000000)


def validate(spec: dict[str, Any]) -> None:
    check_keys(spec, {"width", "height", "count", "write", "static"}, "test_pattern")
    int_field(spec, "width", 512, COUNTER_BITS, 8192)
    int_field(spec, "height", 512, 16, 8192)
    int_field(spec, "count", 24, 1, 100_000)
    for key in ("write", "static"):
        if not isinstance(spec.get(key, False), bool):
            raise ValueError(f"spec.{key} must be true or false, got {spec[key]!r}")


def make_card(width: int, height: int) -> np.ndarray:
    """[H, W, 4] uint8 static card: colour bars, a grey ramp, and an alpha ramp in the right tenth."""
    card = np.zeros((height, width, 4), dtype=np.uint8)
    columns = np.minimum(np.arange(width) * len(_BARS) // width, len(_BARS) - 1)
    bars_end = height * 2 // 3
    card[:bars_end, :, :3] = _BARS[columns][None]
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    card[bars_end:, :, :3] = ramp[None, :, None]
    card[..., 3] = 255
    alpha_start = width * 9 // 10
    card[:, alpha_start:, 3] = np.linspace(255, 0, width - alpha_start).astype(np.uint8)[None]
    return card


class CardPattern:
    """Draws frame `index` of a `count`-frame pattern onto a copy of `card`, or onto a frame drawn before."""

    def __init__(self, card: np.ndarray, count: int) -> None:
        height, width = card.shape[:2]
        self.card = card
        self.count = count
        self.radius = max(2, min(width, height) // 12)
        yy, xx = np.mgrid[-self.radius : self.radius + 1, -self.radius : self.radius + 1]
        self._disc = np.where(yy**2 + xx**2 <= self.radius**2, _RGB_BITS, np.uint32(0))  # [2r+1, 2r+1]
        self._cell = width // COUNTER_BITS
        self._strip_rows = max(2, height // 32)

    def _disc_box(self, pixels: np.ndarray, index: int) -> np.ndarray:
        """The [2r+1, 2r+1] uint32 window of `pixels` ([H, W]) around frame `index`'s disc."""
        height, width = pixels.shape
        r = self.radius
        cx = r + (width - 1 - 2 * r) * index // max(self.count - 1, 1)
        return pixels[height // 3 - r : height // 3 + r + 1, cx - r : cx + r + 1]

    @staticmethod
    def _pixels(frame: np.ndarray) -> np.ndarray:
        return frame.view(np.uint32)[..., 0]  # [H, W]

    def draw(self, frame: np.ndarray, index: int) -> None:
        """Add frame `index`'s disc and counter to `frame` ([H, W, 4] uint8, a copy of the card)."""
        pixels = self._pixels(frame)
        box = self._disc_box(pixels, index)
        np.bitwise_or(box, self._disc, out=box)
        strip = pixels[-self._strip_rows :, : self._cell * COUNTER_BITS]  # [h, 24 * cell]
        bits = ((index >> np.arange(COUNTER_BITS)) & 1).astype(np.uint32) * _RGB_BITS
        strip &= _ALPHA_BITS
        cells = strip.reshape(self._strip_rows, COUNTER_BITS, self._cell)
        np.bitwise_or(cells, bits[None, :, None], out=cells)

    def redraw(self, frame: np.ndarray, drawn: int, index: int) -> None:
        """Turn `frame`, which shows frame `drawn`, into frame `index` (the disc's window is restored first)."""
        pixels = self._pixels(frame)
        self._disc_box(pixels, drawn)[...] = self._disc_box(self._pixels(self.card), drawn)
        self.draw(frame, index)

    def frame(self, index: int) -> np.ndarray:
        """[H, W, 4] uint8 frame `index` in a new buffer."""
        frame = self.card.copy()  # writeable even when the card is not
        self.draw(frame, index)
        return frame


class FrameRing:
    """Frames of a `CardPattern` in recycled buffers instead of a fresh whole-frame copy each.

    A frame handed to `ctx.frame` is held by ZeroMQ's zero-copy send until its bytes have left the
    process. A buffer that only this ring references is free again and is redrawn in place (the disc's
    window and the counter: a few KB). While the oldest buffer is still held the ring grows, up to
    `capacity`; past that, frames are fresh copies that the ring does not keep.
    """

    def __init__(self, pattern: CardPattern, capacity: int) -> None:
        self.pattern = pattern
        self.capacity = max(2, capacity)
        self._buffers: collections.deque[tuple[np.ndarray, int]] = collections.deque()  # (buffer, index shown)
        probe: collections.deque[tuple[np.ndarray, int]] = collections.deque([(np.empty(1), 0)])
        self._free_refcount = self._refcount(probe)
        """What `_refcount` reports for a buffer only the ring holds (measured, not assumed per interpreter)."""

    @staticmethod
    def _refcount(buffers: collections.deque) -> int:
        return sys.getrefcount(buffers[0][0])

    def __len__(self) -> int:
        return len(self._buffers)

    def __call__(self, index: int) -> np.ndarray:
        """[H, W, 4] uint8 frame `index`. The caller hands it on and does not write to it."""
        if self._buffers and self._refcount(self._buffers) <= self._free_refcount:
            buffer, drawn = self._buffers.popleft()
            self.pattern.redraw(buffer, drawn, index)
        else:
            buffer = self.pattern.frame(index)
            if len(self._buffers) >= self.capacity:
                return buffer
        self._buffers.append((buffer, index))
        return buffer


def read_counter(frame: np.ndarray) -> int:
    """The frame index a test-pattern frame carries."""
    height, width = frame.shape[:2]
    cell = width // COUNTER_BITS
    row = frame[height - 1, : cell * COUNTER_BITS, 0].reshape(COUNTER_BITS, cell)[:, cell // 2]
    return int(sum(1 << bit for bit in range(COUNTER_BITS) if row[bit] > 127))


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Stream `count` test-card frames (optionally also written as PNGs into the job folder).

    With `static`, every frame is the same bare card (no disc, no counter) sent from one buffer: the
    stream `bench/ipc.py` compares with raw pyzmq sending one buffer over and over.
    Result: {frames, width, height, seconds, files?: [asset names]}.
    """
    validate(spec)
    width, height = spec.get("width", 512), spec.get("height", 512)
    count, write, static = spec.get("count", 24), spec.get("write", False), spec.get("static", False)
    card = make_card(width, height)
    card.flags.writeable = False
    ring = FrameRing(CardPattern(card, count), RING_BYTES // card.nbytes)
    start = time.perf_counter()
    files = []
    for index in range(count):
        frame = card if static else ring(index)
        if write:
            import imageio.v3 as iio

            name = f"frames/frame_{index:04d}.png"
            with ctx.atomic_path(name) as temp:
                iio.imwrite(temp, frame)
            files.append(ctx.asset_name(ctx.workdir / name))
        ctx.frame(index, frame)
        del frame  # the ring may redraw this buffer once the transport lets go of it
        ctx.progress("frames", index + 1, count)
    result = {"frames": count, "width": width, "height": height, "seconds": round(time.perf_counter() - start, 4)}
    if write:
        result["files"] = files
    return result
