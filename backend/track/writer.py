"""The tracked folder, in VHAP's export layout (what GaussianAvatars trains on and `load_vhap_export` reads).

    transforms.json               shared intrinsics + one entry per frame (camera-to-world in OpenGL axes,
                                  per-frame fl_x fl_y cx cy w h, file paths, timestep ids)
    images/00000_00.png           the R x R face crop (RGB)
    fg_masks/00000_00.png         its foreground mask (8-bit grey, probability x 255)
    flame_param/00000.npz         translation rotation neck_pose jaw_pose [1, 3], eyes_pose [1, 6],
                                  expr [1, E], shape [S] (float32)
    canonical_flame_param.npz     the identity with a neutral, slightly open mouth (jaw 0.3), as VHAP writes
    keyface_track.json            Keyface's record: head, source, frames used and skipped (with reasons),
                                  crop boxes, focal length, per-frame reprojection error, config

VHAP conventions kept: `cy` counts from the bottom edge (`h - cy` in OpenCV), the camera-to-world matrix has
OpenGL camera axes, and the mean head translation sits at the world origin. These functions write into a
folder the caller made (a temporary one that `backend.atomic.atomic_path` renames into place when all is done).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from shared_proto import Camera, FlameSequence

FLIP_YZ = np.diag([1.0, -1.0, -1.0])
"""OpenCV <-> OpenGL camera axes (x right; y and z flipped); its own inverse."""
REPORT = "keyface_track.json"


def image_path(index: int) -> str:
    return f"images/{index:05d}_00.png"


def mask_path(index: int) -> str:
    return f"fg_masks/{index:05d}_00.png"


def param_path(index: int) -> str:
    return f"flame_param/{index:05d}.npz"


def write_frame(folder: Path, index: int, crop: np.ndarray, mask: np.ndarray) -> None:
    """The crop [R, R, 3] uint8 and mask [R, R] uint8 of timestep `index`."""
    for relative, pixels in ((image_path(index), crop), (mask_path(index), mask)):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, pixels)


def _frame_entry(index: int, frame_id: str, camera: Camera) -> dict[str, Any]:
    c2w = np.linalg.inv(camera.world_to_camera.astype(np.float64))  # [4, 4] OpenCV camera-to-world
    c2w[:3, :3] = c2w[:3, :3] @ FLIP_YZ  # OpenGL camera axes
    K = camera.K.astype(np.float64)
    return {
        "timestep_index": index, "timestep_index_original": index, "timestep_id": frame_id,
        "camera_index": 0, "camera_id": "00",
        "cx": float(K[0, 2]), "cy": float(camera.height - K[1, 2]), "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]),
        "h": camera.height, "w": camera.width,
        "camera_angle_x": 2.0 * math.atan(camera.width / (2.0 * K[0, 0])),
        "camera_angle_y": 2.0 * math.atan(camera.height / (2.0 * K[1, 1])),
        "transform_matrix": c2w.tolist(),
        "file_path": image_path(index), "fg_mask_path": mask_path(index), "flame_param_path": param_path(index),
    }


def write_tracking(folder: Path, sequence: FlameSequence, cameras: list[Camera], frame_ids: list[str],
                   report: dict[str, Any]) -> None:
    """flame_param/*.npz, canonical_flame_param.npz, transforms.json and keyface_track.json.

    Args:
        sequence: T frames of FLAME parameters (float32 values, written as they are).
        cameras: [T] OpenCV cameras of the crops.
        frame_ids: [T] timestep ids.
        report: extra JSON-ready facts for keyface_track.json.
    """
    frames = len(sequence)
    assert len(cameras) == frames == len(frame_ids)
    (folder / "flame_param").mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        np.savez(folder / param_path(t), translation=sequence.translation[[t]], rotation=sequence.rotation[[t]],
                 neck_pose=sequence.neck[[t]], jaw_pose=sequence.jaw[[t]], eyes_pose=sequence.eyes[[t]],
                 shape=sequence.shape, expr=sequence.expression[[t]])
    zeros3 = np.zeros((1, 3), np.float32)
    np.savez(folder / "canonical_flame_param.npz", translation=zeros3, rotation=zeros3, neck_pose=zeros3,
             jaw_pose=np.array([[0.3, 0.0, 0.0]], np.float32), eyes_pose=np.zeros((1, 6), np.float32),
             shape=sequence.shape, expr=np.zeros((1, sequence.expression.shape[1]), np.float32))
    entries = [_frame_entry(t, frame_ids[t], cameras[t]) for t in range(frames)]
    shared = {key: entries[0][key] for key in ("cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x",
                                               "camera_angle_y")}
    transforms = {**shared, "frames": entries, "timestep_indices": list(range(frames)), "camera_indices": [0]}
    (folder / "transforms.json").write_text(json.dumps(transforms, indent=2))
    (folder / REPORT).write_text(json.dumps(report, indent=2))
