"""Synthetic subjects for tracker tests and benchmarks: a head posed by a FlameSequence, rendered textured.

The frames are what a camera would film of the head (albedo x soft frontal light) over a plain background,
so the tracker can be checked against the known parameters: `project_landmarks` gives the ground-truth
landmark positions in the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from shared_proto import Camera, FlameSequence

from ..flame import FlameModel
from ..flame.texture import read_head_texture
from ..render import rasterize_mesh_cameras, render_map, sample_texture, uv_map
from ..render.maps_job import SKIN

CHUNK = 8
"""Frames rasterized together."""


def portrait_camera(size: int, distance: float = 0.6, focal: float = 1.8) -> Camera:
    """A square camera `distance` metres in front of the head, looking at it (FLAME axes: y up, the face looks
    along +z), eye level 1 cm above the FLAME origin, focal length `focal` x `size` pixels."""
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # OpenCV: y down, looking along -z of the world
    pose[:3, 3] = [0.0, 0.01, distance]
    f = focal * size
    return Camera(K=[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], world_to_camera=pose, width=size, height=size)


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
                background: tuple[float, float, float] = (0.35, 0.4, 0.45)) -> np.ndarray:
    """[T, H, W, 3] uint8 frames of the textured head over a plain `background` (RGB in [0, 1]).

    Heads without a texture are rendered in a plain skin colour.
    """
    texture = read_head_texture(head)
    device = head.v_template.device
    vertices = posed_head(head, sequence)  # [T, V, 3]
    frames = []
    for start in range(0, len(sequence), CHUNK):
        chunk = vertices[start:start + CHUNK]  # [B, V, 3]
        with torch.no_grad():
            fragments = rasterize_mesh_cameras(chunk, head.faces, [camera] * chunk.shape[0])
            if texture is None or texture.image is None:
                albedo = fragments.bary.new_tensor(SKIN).expand(fragments.bary.shape)  # [B, H, W, 3]
            else:
                uv = uv_map(fragments, torch.tensor(texture.vt, dtype=torch.float32, device=device),
                            torch.tensor(texture.ft, dtype=torch.long, device=device))  # [B, H, W, 2]
                image = torch.tensor(texture.image, dtype=torch.float32, device=device) / 255.0  # [Ht, Wt, 3]
                albedo = sample_texture(image, uv)  # [B, H, W, 3]
            shaded = render_map(fragments, head.faces, albedo)  # [B, H, W, 3]
            plain = shaded.new_tensor(background)  # [3]
            rgb = torch.where(fragments.mask[..., None], shaded, plain)  # [B, H, W, 3]
        frames.append((rgb.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8))
    return np.concatenate(frames)
