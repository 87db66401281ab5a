"""A synthetic subject the code makes itself: the built-in head with its procedural texture and its own identity,
animated by a plausible FlameSequence (talking, blinking, head turns), rendered by the mesh renderer.

Used by the benchmark (`bench/recon_synthetic.py`) and the tests: its frames, masks, cameras and FLAME parameters
are exact ground truth. `write_tracked_folder` stores it in the VHAP export layout that
`backend.track.importers.load_tracked` reads (VHAP has no eyelid weights, so blinks are not in that folder).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.atomic import atomic_path
from backend.flame import FlameModel
from backend.flame.motion import talking_head
from backend.flame.texture import read_head_texture
from backend.render import rasterize_mesh_cameras, render_map, sample_texture, uv_map
from shared_proto import Camera, FlameSequence

SUPERSAMPLING = 2
"""Ground-truth frames are rendered at this multiple of their size and box-filtered down (anti-aliased edges)."""
CAMERA_DISTANCE = 1.0
"""Metres from the camera to the head (VHAP's monocular convention)."""
FOCAL_PER_SIDE = 3.2
"""Focal length in units of the image side: the frame spans about 0.31 m at the head (crown to upper neck)."""
LOOK_AT_Y = -0.01
"""Height (m) of the point the camera looks at, a little below the eyes."""
CHUNK = 8
"""Frames rasterized together."""


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticSubject:
    """Ground truth of a synthetic capture.

    Attributes:
        head: the FLAME model (the built-in head).
        sequence: the T frames' FLAME parameters (identity in `sequence.shape`).
        cameras: [T] the fixed OpenCV camera, once per frame.
        images: [T, H, W, 3] float32 in [0, 1], composited over `background`.
        masks: [T, H, W] float32 head coverage in [0, 1].
        background: [3] colour behind the head.
    """

    head: FlameModel
    sequence: FlameSequence
    cameras: tuple[Camera, ...]
    images: Tensor
    masks: Tensor
    background: tuple[float, float, float]


def front_camera(size: int) -> Camera:
    """The capture camera: `CAMERA_DISTANCE` in front of the face (+z), looking down -z, square `size` pixels."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        raise ValueError(f"size must be an integer in [8, 4096], got {size!r}")
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])
    pose[:3, 3] = [0.0, LOOK_AT_Y, CAMERA_DISTANCE]  # t = -R c for the centre c = (0, LOOK_AT_Y, distance)
    focal = FOCAL_PER_SIDE * size
    return Camera(K=[[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]], world_to_camera=pose,
                  width=size, height=size)


def synthetic_subject(frames: int, size: int, *, seed: int = 0, fps: float = 25.0,
                      background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                      head: FlameModel | None = None) -> SyntheticSubject:
    """Make a subject: a random identity (shape coefficients ~ N(0, 0.8)), `talking_head` motion with every
    expression component, rendered by `render_map` (texture x soft frontal light) at `SUPERSAMPLING`x and
    box-filtered to `size`².

    Args:
        frames: T >= 1.
        size: image side in pixels.
        seed: identity and motion seed.
        fps: frame rate of the motion.
        background: [3] colour in [0, 1] behind the head.
        head: the head (default `FlameModel.builtin()`); it needs a UV layout and a texture.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    head = FlameModel.builtin() if head is None else head
    texture = read_head_texture(head)
    if texture is None or texture.image is None:
        raise ValueError(f"the synthetic subject needs a head with UVs and a texture; {head.source} has none")
    rng = np.random.default_rng(seed)
    shape = rng.normal(0.0, 0.8, head.n_shape)
    sequence = talking_head(frames, fps, shape=shape, n_expression=head.n_expression, seed=seed,
                            eyelids=head.has_eyelids)
    camera = front_camera(size)
    big = front_camera(size * SUPERSAMPLING)
    vt = torch.tensor(texture.vt, dtype=torch.float32)
    ft = torch.tensor(texture.ft, dtype=torch.long)
    albedo_image = torch.tensor(texture.image, dtype=torch.float32) / 255.0  # [h, w, 3]
    colour = torch.tensor(background, dtype=torch.float32)
    images, masks = [], []
    with torch.no_grad():
        for start in range(0, frames, CHUNK):
            rows = slice(start, min(start + CHUNK, frames))
            vertices = head.forward_params(_rows(sequence, rows)).vertices  # [B, V, 3]
            fragments = rasterize_mesh_cameras(vertices, head.faces, [big] * vertices.shape[0])
            albedo = sample_texture(albedo_image, uv_map(fragments, vt, ft))  # [B, 2H, 2W, 3]
            shaded = render_map(fragments, head.faces, albedo)  # [B, 2H, 2W, 3]
            mask = fragments.mask.float()  # [B, 2H, 2W]
            rgba = torch.cat([shaded * mask[..., None], mask[..., None]], dim=-1).permute(0, 3, 1, 2)
            small = F.avg_pool2d(rgba, SUPERSAMPLING).permute(0, 2, 3, 1)  # [B, H, W, 4] premultiplied
            images.append(small[..., :3] + (1.0 - small[..., 3:]) * colour)
            masks.append(small[..., 3])
    return SyntheticSubject(head=head, sequence=sequence, cameras=(camera,) * frames, images=torch.cat(images),
                            masks=torch.cat(masks), background=tuple(float(c) for c in background))


def _rows(sequence: FlameSequence, rows: slice) -> FlameSequence:
    """The frames `rows` of a sequence."""
    def take(name: str) -> np.ndarray | None:
        value = getattr(sequence, name)
        return None if value is None else value[rows]

    return FlameSequence(shape=sequence.shape, expression=take("expression"), rotation=take("rotation"),
                         neck=take("neck"), jaw=take("jaw"), eyes=take("eyes"), translation=take("translation"),
                         eyelids=take("eyelids"), fps=sequence.fps, frame_start=sequence.frame_start + rows.start)


def write_tracked_folder(subject: SyntheticSubject, folder: str | Path) -> Path:
    """Write the subject as a VHAP export (`transforms.json`, `flame_param/%05d.npz`, `images/%05d_00.png`,
    `fg_masks/%05d_00.png`), atomically as one folder. Returns the folder."""
    folder = Path(folder)
    sequence, camera = subject.sequence, subject.cameras[0]
    c2w = np.linalg.inv(camera.world_to_camera)
    c2w[:3, :3] = c2w[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # OpenCV -> OpenGL camera axes
    K = camera.K
    with atomic_path(folder) as temp:
        for name in ("flame_param", "images", "fg_masks"):
            (temp / name).mkdir(parents=True)
        frames = []
        for t in range(len(sequence)):
            np.savez(temp / "flame_param" / f"{t:05d}.npz",
                     **{key: np.asarray(value, np.float32) for key, value in (
                         ("translation", sequence.translation[[t]]), ("rotation", sequence.rotation[[t]]),
                         ("neck_pose", sequence.neck[[t]]), ("jaw_pose", sequence.jaw[[t]]),
                         ("eyes_pose", sequence.eyes[[t]]), ("shape", sequence.shape),
                         ("expr", sequence.expression[[t]]))})
            image = (subject.images[t].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
            mask = (subject.masks[t].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
            PIL.Image.fromarray(image).save(temp / "images" / f"{t:05d}_00.png")
            PIL.Image.fromarray(mask).save(temp / "fg_masks" / f"{t:05d}_00.png")
            frames.append({"timestep_index": t, "timestep_id": f"frame_{t:05d}", "camera_index": 0,
                           "file_path": f"images/{t:05d}_00.png", "fg_mask_path": f"fg_masks/{t:05d}_00.png",
                           "flame_param_path": f"flame_param/{t:05d}.npz", "transform_matrix": c2w.tolist()})
        top = {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
               "cy": float(camera.height - K[1, 2]),  # VHAP's cy counts from the bottom edge
               "w": camera.width, "h": camera.height, "timestep_indices": list(range(len(sequence))),
               "camera_indices": [0], "frames": frames}
        (temp / "transforms.json").write_text(json.dumps(top, indent=1))
    return folder
