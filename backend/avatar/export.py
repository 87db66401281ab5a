"""Avatar -> 3DGS PLY files: one frame, or a whole FLAME sequence as a folder of frames (4DGS-style).

A sequence folder holds `frame_000000.ply`, `frame_000001.ply`, … (row index of the sequence, from 0) and
`sequence.json`: {"format": "keyface-ply-sequence", "version": 1, "fps", "frame_start", "count",
"pattern": "frame_{:06d}.ply"}. The folder is written atomically (complete, or not at all).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.atomic import atomic_path
from shared_proto.types import FlameParams, FlameSequence

from .model import FLAME_INPUTS, GaussianAvatar
from .ply import PathLike, write_ply

SEQUENCE_FORMAT = "keyface-ply-sequence"
SEQUENCE_VERSION = 1
FRAME_PATTERN = "frame_{:06d}.ply"


def export_ply(avatar: GaussianAvatar, params: FlameParams | FlameSequence, path: PathLike, *, frame: int = 0,
               binding: bool = False) -> Path:
    """Write the avatar posed by `params` (row `frame` of a sequence) as a standard 3DGS PLY.

    Args:
        avatar: the avatar.
        params: one frame, or a sequence with `frame` picking its row.
        path: the `.ply` file.
        frame: row of `params` when it is a sequence (must be 0 for `FlameParams`).
        binding: add GaussianAvatars' `binding_0` property.
    """
    if not isinstance(avatar, GaussianAvatar):
        raise TypeError(f"export_ply needs a GaussianAvatar, got {type(avatar).__name__}")
    if isinstance(params, FlameSequence):
        params = params.frame(frame)
    elif not isinstance(params, FlameParams):
        raise TypeError(f"params must be FlameParams or FlameSequence, got {type(params).__name__}")
    elif frame != 0:
        raise ValueError(f"frame must be 0 for a single FlameParams, got {frame}")
    return write_ply(path, avatar.static_at(params)[0], binding=binding)


def export_ply_sequence(avatar: GaussianAvatar, sequence: FlameSequence, folder: PathLike, *,
                        binding: bool = False, chunk: int = 16) -> Path:
    """Write one PLY per frame of `sequence` plus `sequence.json` into `folder` (replacing it atomically).

    Args:
        avatar: the avatar.
        sequence: the animation.
        folder: the output folder.
        binding: add GaussianAvatars' `binding_0` property to every frame.
        chunk: frames posed per batch (memory vs speed).
    """
    if not isinstance(avatar, GaussianAvatar):
        raise TypeError(f"export_ply_sequence needs a GaussianAvatar, got {type(avatar).__name__}")
    if not isinstance(sequence, FlameSequence):
        raise TypeError(f"sequence must be a FlameSequence, got {type(sequence).__name__}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    count = len(sequence)
    with atomic_path(folder) as temp:
        temp.mkdir()
        for start in range(0, count, chunk):
            rows = {name: torch.tensor(value[start:start + chunk]) for name in FLAME_INPUTS
                    if (value := getattr(sequence, name)) is not None}
            for offset, gaussians in enumerate(avatar.static_at(rows)):
                write_ply(temp / FRAME_PATTERN.format(start + offset), gaussians, binding=binding)
        meta = {"format": SEQUENCE_FORMAT, "version": SEQUENCE_VERSION, "fps": sequence.fps,
                "frame_start": sequence.frame_start, "count": count, "pattern": FRAME_PATTERN}
        (temp / "sequence.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(folder)
