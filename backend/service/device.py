"""Choosing the torch device and describing it to clients."""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(requested: str) -> str:
    """'auto' -> the best available device; explicit names are checked and a clear error names what is missing."""
    requested = requested.strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()}"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(f"unknown device {requested!r}: {error}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                             "use --device cpu, or install a CUDA build of torch")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return f"cuda:{index}"
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but Apple Metal is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device type {device.type!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device.type


def gpu_info(device: str) -> dict[str, Any] | None:
    """{'name', 'memory_bytes'} for a CUDA device, {'name': 'Apple GPU (MPS)'} for MPS, else None."""
    kind = torch.device(device)
    if kind.type == "cuda":
        properties = torch.cuda.get_device_properties(kind)
        return {"name": properties.name, "memory_bytes": int(properties.total_memory)}
    if kind.type == "mps":
        return {"name": "Apple GPU (MPS)"}
    return None
