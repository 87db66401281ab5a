"""Jobs every backend offers, independent of models: a device check and a test-card stream."""

from __future__ import annotations

import json
import platform
import time
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..job_spec import check_keys, int_field


# --- diagnose ---------------------------------------------------------------------------------------


def validate_diagnose(spec: dict[str, Any]) -> None:
    check_keys(spec, {"size", "repeats"}, "diagnose")
    int_field(spec, "size", 512, 16, 8192)
    int_field(spec, "repeats", 8, 1, 1000)


def diagnose(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Measure the job device: matmul throughput and a memory round trip. Writes a report.json asset.

    Result: {torch, device, gpu, threads, matmul_size, matmul_gflops, memory_roundtrip_ok, seconds, report}.
    """
    import torch

    validate_diagnose(spec)
    size, repeats = int_field(spec, "size", 512, 16, 8192), int_field(spec, "repeats", 8, 1, 1000)
    start = time.perf_counter()
    device = torch.device(ctx.device)
    ctx.progress("device", 0, 1, f"torch {torch.__version__} on {ctx.device}")
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    _synchronize(device)
    elapsed = 0.0
    for step in range(repeats):
        t0 = time.perf_counter()
        c = a @ b
        _synchronize(device)
        elapsed += time.perf_counter() - t0
        ctx.progress("matmul", step + 1, repeats, f"{size}x{size} float32 matmul")
    gflops = 2.0 * size**3 * repeats / max(elapsed, 1e-9) / 1e9
    reference = (a.cpu().double() @ b.cpu().double()).float()
    matmul_error = float((c.cpu() - reference).abs().max() / reference.abs().max())
    ctx.progress("memory", 0, 1, "host <-> device round trip")
    probe = torch.arange(1 << 20, dtype=torch.int32)
    roundtrip_ok = bool(torch.equal(probe.to(device).cpu(), probe))
    ctx.progress("memory", 1, 1)
    from .device import gpu_info

    result = {
        "torch": torch.__version__, "device": ctx.device, "gpu": gpu_info(ctx.device),
        "threads": torch.get_num_threads(), "python": platform.python_version(),
        "matmul_size": size, "matmul_gflops": round(gflops, 2), "matmul_relative_error": matmul_error,
        "memory_roundtrip_ok": roundtrip_ok, "seconds": round(time.perf_counter() - start, 3),
    }
    report = atomic_write_text(ctx.workdir / "report.json", json.dumps(result, indent=1))
    return {**result, "report": ctx.asset_name(report)}


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --- test pattern -----------------------------------------------------------------------------------

_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0],
                  [0, 0, 191]], dtype=np.uint8)
COUNTER_BITS = 24
"""Frames carry their index as a 24-bit black/white strip at the bottom (see `read_counter`)."""


def validate_test_pattern(spec: dict[str, Any]) -> None:
    check_keys(spec, {"width", "height", "count", "write"}, "test_pattern")
    int_field(spec, "width", 512, COUNTER_BITS, 8192)
    int_field(spec, "height", 512, 16, 8192)
    int_field(spec, "count", 24, 1, 100_000)
    if not isinstance(spec.get("write", False), bool):
        raise ValueError(f"spec.write must be true or false, got {spec['write']!r}")


def test_card(width: int, height: int) -> np.ndarray:
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


_RGB_BITS = np.uint32(0x00FFFFFF)  # RGBA uint8 pixels seen as little-endian uint32: R is the low byte
_ALPHA_BITS = np.uint32(0xFF000000)


def disc_offsets(radius: int, width: int) -> np.ndarray:
    """[P] flat pixel offsets (row stride `width`) of a disc of `radius` around its centre."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = yy**2 + xx**2 <= radius**2
    return (yy[inside] * width + xx[inside]).astype(np.int64)


def stamp(card: np.ndarray, index: int, count: int, disc: np.ndarray | None = None) -> np.ndarray:
    """A copy of `card` with a white disc moving left to right and `index` encoded in the bottom strip.

    `disc` is `disc_offsets(radius, width)` (computed when omitted). The disc stays inside the frame.
    """
    height, width = card.shape[:2]
    frame = card.copy()
    pixels = frame.view(np.uint32)[..., 0]  # [H, W]
    radius = max(2, min(width, height) // 12)
    disc = disc_offsets(radius, width) if disc is None else disc
    cx = radius + (width - 2 * radius) * index // max(count - 1, 1)
    pixels.reshape(-1)[(height // 3) * width + cx + disc] |= _RGB_BITS
    cell = width // COUNTER_BITS
    strip = pixels[height - max(2, height // 32):, : cell * COUNTER_BITS]  # [h, 24 * cell]
    bits = np.repeat(((index >> np.arange(COUNTER_BITS)) & 1).astype(np.uint32) * _RGB_BITS, cell)
    strip &= _ALPHA_BITS
    strip |= bits
    return frame


def read_counter(frame: np.ndarray) -> int:
    """The frame index a `stamp`ed frame carries."""
    height, width = frame.shape[:2]
    cell = width // COUNTER_BITS
    row = frame[height - 1, : cell * COUNTER_BITS, 0].reshape(COUNTER_BITS, cell)[:, cell // 2]
    return int(sum(1 << bit for bit in range(COUNTER_BITS) if row[bit] > 127))


def test_pattern(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Stream `count` test-card frames (optionally also written as PNGs into the job folder).

    Result: {frames, width, height, seconds, files?: [asset names]}.
    """
    validate_test_pattern(spec)
    width, height = spec.get("width", 512), spec.get("height", 512)
    count, write = spec.get("count", 24), spec.get("write", False)
    card = test_card(width, height)
    disc = disc_offsets(max(2, min(width, height) // 12), width)
    start = time.perf_counter()
    files = []
    for index in range(count):
        frame = stamp(card, index, count, disc)
        ctx.frame(index, frame)
        if write:
            import imageio.v3 as iio

            with ctx.atomic_path(f"frames/frame_{index:04d}.png") as temp:
                iio.imwrite(temp, frame)
            files.append(ctx.asset_name(ctx.workdir / f"frames/frame_{index:04d}.png"))
        ctx.progress("frames", index + 1, count)
    result = {"frames": count, "width": width, "height": height, "seconds": round(time.perf_counter() - start, 4)}
    if write:
        result["files"] = files
    return result
