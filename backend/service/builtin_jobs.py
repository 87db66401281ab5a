"""The `diagnose` job every backend offers, independent of models: a check of the compute device."""

from __future__ import annotations

import json
import platform
import time
from typing import Any

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
