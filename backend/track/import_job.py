"""Job `import_tracked`: read a tracked dataset on the backend's machine into Keyface conventions.

The Blender add-on cannot import the backend, so this is how it reads VHAP / GaussianAvatars, metrical-tracker
and INSTA tracking (and Keyface's own) to put it on the rig.

Spec:
    path: the dataset folder or file on the backend's machine.
    camera_index: for multi-camera exports, which camera (default: the first).
    fps: frames per second when the format does not store it (default 25).

Result: {source, frames, sequence (FlameSequence wire), cameras {K [T,3,3], world_to_camera [T,4,4], width,
height, near, far}, image_paths, mask_paths, frame_ids, missing, notes}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared_proto import ErrorCode

from ..errors import JobError
from ..job_spec import check_keys
from .importers import load_tracked


def _parse(spec: dict[str, Any]) -> tuple[Path, int | None, float | None]:
    check_keys(spec, {"path", "camera_index", "fps"}, "import_tracked")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"spec.path must be the dataset folder or file on the backend's machine, got {path!r}")
    camera_index = spec.get("camera_index")
    if camera_index is not None and (isinstance(camera_index, bool) or not isinstance(camera_index, int)
                                     or camera_index < 0):
        raise ValueError(f"spec.camera_index must be a non-negative integer, got {camera_index!r}")
    fps = spec.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise ValueError(f"spec.fps must be a number in (0, 1000], got {fps!r}")
    return Path(path).expanduser(), camera_index, fps


def validate(spec: dict[str, Any]) -> None:
    _parse(spec)


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    path, camera_index, fps = _parse(spec)
    ctx.progress("read", 0, 1, str(path))
    try:
        tracked = load_tracked(path, camera_index=camera_index, fps=fps)
    except FileNotFoundError as error:
        raise JobError(ErrorCode.NOT_FOUND, str(error), "the path is read on the backend's machine") from None
    ctx.progress("read", 1, 1, f"{tracked.source}: {len(tracked.sequence)} frames")
    cameras = tracked.cameras

    def paths(items: tuple[Path | None, ...]) -> list[str | None]:
        return [None if item is None else str(item) for item in items]

    return {
        "source": tracked.source, "frames": len(tracked.sequence), "sequence": tracked.sequence.to_wire(),
        "cameras": {"K": np.stack([c.K for c in cameras]), "world_to_camera": np.stack([c.world_to_camera
                                                                                       for c in cameras]),
                    "width": cameras[0].width, "height": cameras[0].height, "near": cameras[0].near,
                    "far": cameras[0].far},
        "image_paths": paths(tracked.image_paths), "mask_paths": paths(tracked.mask_paths),
        "frame_ids": list(tracked.frame_ids), "missing": sorted(tracked.missing), "notes": list(tracked.notes),
    }
