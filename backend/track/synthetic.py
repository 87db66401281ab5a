"""Synthetic subjects the code makes itself: a head posed by a FlameSequence and rendered textured (albedo x soft
frontal light) by the mesh renderer over a plain background, so every frame has exact ground truth.

- Tracker tests and bench: `render_head` frames of a given sequence through a `portrait_camera`, and
  `project_landmarks`, the true landmark positions in the same pixels.
- Reconstruction and editing tests and benches: `synthetic_subject`, the built-in head with a random identity and
  `talking_head` motion, rendered supersampled with coverage masks through `capture_camera`;
  `write_tracked_folder` stores it in the VHAP export layout that `backend.track.importers.load_tracked` reads
  (VHAP has no eyelid weights, so blinks are not in that folder).
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

from shared_proto import Camera, FlameSequence

from ..atomic import atomic_path
from ..avatar.render_job import resized
from ..flame import FlameModel
from ..flame.motion import talking_head
from ..flame.texture import read_head_texture
from ..render import rasterize_mesh_cameras, render_map, sample_texture, uv_map
from ..render.maps_job import SKIN

CHUNK = 8
"""Frames rasterized together."""
BACKDROP = (0.35, 0.4, 0.45)
"""Default RGB in [0, 1] behind the head of `render_head`."""
SUPERSAMPLING = 2
"""`synthetic_subject` renders at this multiple of its size and box-filters down (anti-aliased edges)."""
CAPTURE_DISTANCE = 1.0
"""Metres from `capture_camera` to the head (VHAP's monocular convention)."""
CAPTURE_FOCAL = 3.2
"""Focal length of `capture_camera` in units of the image side: the frame spans about 0.31 m at the head (crown to
upper neck)."""
CAPTURE_HEIGHT = -0.01
"""Height (m) of `capture_camera`, a little below the eyes."""


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


def portrait_camera(size: int, distance: float = 0.6, focal: float = 1.8, height: float = 0.01) -> Camera:
    """A square camera of `size` pixels `distance` metres in front of the head, looking at it (FLAME axes: y up, the
    face looks along +z), `height` metres above the FLAME origin (default: eye level), focal length `focal` x
    `size` pixels."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        raise ValueError(f"size must be an integer in [8, 4096], got {size!r}")
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # OpenCV: y down, looking along -z of the world
    pose[:3, 3] = [0.0, height, distance]  # t = -R c for the centre c = (0, height, distance)
    f = focal * size
    return Camera(K=[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], world_to_camera=pose, width=size, height=size)


def capture_camera(size: int) -> Camera:
    """The camera `synthetic_subject` films with: `portrait_camera` at `CAPTURE_DISTANCE`, `CAPTURE_FOCAL`,
    `CAPTURE_HEIGHT`."""
    return portrait_camera(size, CAPTURE_DISTANCE, CAPTURE_FOCAL, CAPTURE_HEIGHT)


def posed_head(head: FlameModel, sequence: FlameSequence) -> torch.Tensor:
    """[T, V, 3] vertices of `head` posed by every frame of `sequence` (eyelids used when both have them)."""
    lids = sequence if head.has_eyelids else without_eyelids(sequence)
    with torch.no_grad():
        return head.forward_params(lids).vertices


def without_eyelids(sequence: FlameSequence) -> FlameSequence:
    """`sequence` with its eyelid weights dropped (for heads that have no eyelid blendshapes)."""
    fields = sequence.to_wire()
    fields.pop("eyelids", None)
    return FlameSequence(**fields)


def project_landmarks(head: FlameModel, sequence: FlameSequence, camera: Camera) -> np.ndarray:
    """[T, L, 2] the head's landmarks in pixels of `camera` for every frame."""
    lids = sequence if head.has_eyelids else without_eyelids(sequence)
    with torch.no_grad():
        landmarks = head.forward_params(lids).landmarks.double().cpu().numpy()  # [T, L, 3]
    return np.stack([camera.project(points)[:, :2] for points in landmarks])


def render_head(head: FlameModel, sequence: FlameSequence, camera: Camera,
                background: tuple[float, float, float] = BACKDROP, *, supersampling: int = 1
                ) -> tuple[Tensor, Tensor]:
    """The textured head over a plain `background` (RGB in [0, 1]), rendered at `supersampling` x the camera's
    size and box-filtered down.

    Heads without a texture are rendered in a plain skin colour.

    Returns:
        ([T, H, W, 3] float32 frames, unclamped, [T, H, W] float32 head coverage in [0, 1]) on the head's device.
    """
    if isinstance(supersampling, bool) or not isinstance(supersampling, int) or not 1 <= supersampling <= 8:
        raise ValueError(f"supersampling must be an integer in [1, 8], got {supersampling!r}")
    texture = read_head_texture(head)
    device = head.v_template.device
    big = resized(camera, camera.width * supersampling, camera.height * supersampling)
    colour = torch.tensor(background, dtype=torch.float32, device=device)  # [3]
    if texture is not None and texture.image is not None:
        vt = torch.tensor(texture.vt, dtype=torch.float32, device=device)
        ft = torch.tensor(texture.ft, dtype=torch.long, device=device)
        albedo_image = torch.tensor(texture.image, dtype=torch.float32, device=device) / 255.0  # [Ht, Wt, 3]
    vertices = posed_head(head, sequence)  # [T, V, 3]
    images, masks = [], []
    with torch.no_grad():
        for start in range(0, len(sequence), CHUNK):
            chunk = vertices[start:start + CHUNK]  # [B, V, 3]
            fragments = rasterize_mesh_cameras(chunk, head.faces, [big] * chunk.shape[0])
            if texture is None or texture.image is None:
                albedo = fragments.bary.new_tensor(SKIN).expand(fragments.bary.shape)  # [B, sH, sW, 3]
            else:
                albedo = sample_texture(albedo_image, uv_map(fragments, vt, ft))  # [B, sH, sW, 3]
            shaded = render_map(fragments, head.faces, albedo)  # [B, sH, sW, 3]
            coverage = fragments.mask.float()[..., None]  # [B, sH, sW, 1]
            rgba = torch.cat([shaded * coverage, coverage], dim=-1)  # [B, sH, sW, 4] premultiplied
            if supersampling > 1:
                rgba = F.avg_pool2d(rgba.permute(0, 3, 1, 2), supersampling).permute(0, 2, 3, 1)  # [B, H, W, 4]
            images.append(rgba[..., :3] + (1.0 - rgba[..., 3:]) * colour)  # [B, H, W, 3]
            masks.append(rgba[..., 3])  # [B, H, W]
    return torch.cat(images), torch.cat(masks)


def as_uint8(values: Tensor) -> np.ndarray:
    """Float values in [0, 1] (any shape; clamped) -> uint8 array of the same shape, rounded."""
    return (values.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def synthetic_subject(frames: int, size: int, *, seed: int = 0, fps: float = 25.0,
                      background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                      head: FlameModel | None = None) -> SyntheticSubject:
    """Make a subject: a random identity (shape coefficients ~ N(0, 0.8)), `talking_head` motion with every
    expression component, filmed by `capture_camera(size)`; `render_head` at `SUPERSAMPLING`x.

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
    camera = capture_camera(size)
    images, masks = render_head(head, sequence, camera, background, supersampling=SUPERSAMPLING)
    return SyntheticSubject(head=head, sequence=sequence, cameras=(camera,) * frames, images=images, masks=masks,
                            background=tuple(float(c) for c in background))


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
            PIL.Image.fromarray(as_uint8(subject.images[t])).save(temp / "images" / f"{t:05d}_00.png")
            PIL.Image.fromarray(as_uint8(subject.masks[t])).save(temp / "fg_masks" / f"{t:05d}_00.png")
            frames.append({"timestep_index": t, "timestep_id": f"frame_{t:05d}", "camera_index": 0,
                           "file_path": f"images/{t:05d}_00.png", "fg_mask_path": f"fg_masks/{t:05d}_00.png",
                           "flame_param_path": f"flame_param/{t:05d}.npz", "transform_matrix": c2w.tolist()})
        top = {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
               "cy": float(camera.height - K[1, 2]),  # VHAP's cy counts from the bottom edge
               "w": camera.width, "h": camera.height, "timestep_indices": list(range(len(sequence))),
               "camera_indices": [0], "frames": frames}
        (temp / "transforms.json").write_text(json.dumps(top, indent=1))
    return folder
