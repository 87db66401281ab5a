"""Spec parsing shared by jobs: every error is a ValueError naming the field and the bad value."""

from __future__ import annotations

from typing import Any

from shared_proto import Camera


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
