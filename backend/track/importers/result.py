"""The one result every importer returns, and the one error every importer raises."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from shared_proto.types import Camera, FlameSequence


class TrackedImportError(ValueError):
    """A tracked dataset is malformed: a file is unreadable, or a key is missing, misshapen or not finite.

    Attributes:
        path: the file (or folder) at fault.
        key: the key, field or entry at fault, or None when the whole file is.
    """

    def __init__(self, path: Path | str, key: str | None, problem: str) -> None:
        where = f"{path}" if key is None else f"{path}: {key}"
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True, eq=False)
class TrackedSequence:
    """A tracked FLAME sequence with its cameras and per-frame files, in Keyface conventions.

    Cameras are OpenCV (x right, y down, z forward; K in pixels, (0, 0) the top-left corner of the
    top-left pixel); FLAME rotations are axis-angle in radians; units are those of the tracker (metres).

    Attributes:
        sequence: the FLAME parameters of the T frames.
        cameras: [T] one OpenCV camera per frame (the same object repeated when the camera is fixed).
        image_paths: [T] the frame's image as the dataset names it (not checked for existence), or None.
        mask_paths: [T] the frame's foreground mask, or None.
        mesh_paths: [T] a posed mesh the tracker wrote for the frame, or None.
        static_offset: [V, 3] per-vertex offsets added to the FLAME template (VHAP), or None.
        source: the format name, e.g. "vhap_export", "vhap_tracked", "metrical_tracker", "insta".
        frame_ids: [T] the tracker's own id of each frame (timestep id, file stem, ...), as strings.
        missing: FlameSequence fields the source does not store; they hold zeros (shape: no coefficients).
        notes: human-readable remarks about choices the importer made (camera picked, values fixed, ...).
    """

    sequence: FlameSequence
    cameras: tuple[Camera, ...]
    image_paths: tuple[Path | None, ...]
    mask_paths: tuple[Path | None, ...]
    mesh_paths: tuple[Path | None, ...]
    static_offset: np.ndarray | None
    source: str
    frame_ids: tuple[str, ...]
    missing: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.sequence, FlameSequence):
            raise TypeError(f"sequence must be a FlameSequence, got {type(self.sequence).__name__}")
        frames = len(self.sequence)
        for name in ("cameras", "image_paths", "mask_paths", "mesh_paths", "frame_ids"):
            value = tuple(getattr(self, name))
            if len(value) != frames:
                raise ValueError(f"{name} has {len(value)} entries for a {frames}-frame sequence")
            object.__setattr__(self, name, value)
        bad = [type(c).__name__ for c in self.cameras if not isinstance(c, Camera)]
        if bad:
            raise TypeError(f"cameras must be Camera objects, got {sorted(set(bad))}")
        if self.static_offset is not None:
            offset = np.array(self.static_offset, dtype=np.float64)
            if offset.ndim != 2 or offset.shape[1] != 3 or not np.all(np.abs(offset) < 1e30):
                raise ValueError(f"static_offset must be a finite [V, 3] array, got shape {list(offset.shape)}")
            offset = offset.astype(np.float32)
            offset.flags.writeable = False
            object.__setattr__(self, "static_offset", offset)
        object.__setattr__(self, "missing", frozenset(self.missing))
        object.__setattr__(self, "notes", tuple(self.notes))

    def __len__(self) -> int:
        return len(self.sequence)
