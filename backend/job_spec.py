"""Spec parsing shared by jobs: every error is a ValueError naming the field and the bad value."""

from __future__ import annotations

from typing import Any

from shared_proto import Camera


def check_keys(spec: dict[str, Any], allowed: set[str], kind: str) -> None:
    """Refuse fields the job does not take (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{kind} does not take {unknown}; it takes {sorted(allowed)}")


def int_field(spec: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """spec[name] (or `default`) as an integer in [low, high]."""
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"spec.{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def cameras_from_spec(spec: dict[str, Any], frames: int) -> list[Camera]:
    """One camera per frame from `spec.camera` (every frame) or `spec.cameras` (a list, one per frame)."""
    if ("camera" in spec) == ("cameras" in spec):
        raise ValueError("give exactly one of spec.camera (all frames) or spec.cameras (one per frame)")
    if "camera" in spec:
        return [Camera.from_wire(spec["camera"])] * frames
    if not isinstance(spec["cameras"], list) or len(spec["cameras"]) != frames:
        raise ValueError(f"spec.cameras must list one camera per frame ({frames})")
    cameras = [Camera.from_wire(camera) for camera in spec["cameras"]]
    if len({(c.width, c.height) for c in cameras}) != 1:
        raise ValueError("every camera of spec.cameras must have the same width and height")
    return cameras
