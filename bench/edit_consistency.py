"""Editing consistency: temporal flicker of per-frame 2D edits vs the edited avatar's renders, fidelity to the
edit targets, and editing throughput.

Subject: `backend.track.synthetic.synthetic_subject` (the built-in head with its procedural texture and its
own identity, talking / blinking / turning, rendered by the mesh renderer over white). The avatar being edited is
a neural avatar (Neural Gaussian Texture + CNN) sampled on that identity's surface with the head's texture as its
initial colours, standing in for a reconstruction (geometry exact, appearance close).

Editor: `flicker` (default), a deliberately frame-inconsistent edit: a warm tint (R x1.15, G x0.95, B x0.8) whose
per-channel gains and brightness are jittered independently for every frame (gain x N(1, 0.12), offset
N(0, 0.05), seeded by the frame index), inside the head mask. `relight` uses the weight-free relighting editor
(consistent by construction; a control).

Metrics (one JSON line, "bench": "edit_consistency"):
  flicker_per_frame_edits: warping error (backend/edit/consistency.py) of the editor's outputs, every frame edited
      independently: for consecutive frames, the mean |RGB difference| (images in [0, 1]) between the two pixels
      where each Gaussian — bound to its FLAME triangle, so the same surface point — lands, over Gaussians
      visible in both (inside the image, not occluded per the rasterized mesh depth), averaged over pairs;
  flicker_avatar: the same on the edited avatar's renders of the same frames;
  flicker_ratio = flicker_per_frame_edits / flicker_avatar (goal >= 5);
  flicker_source: the same on the unedited frames (shading moves with the head: the floor of any method);
  psnr_to_edits / ssim_to_edits: renders vs the editor's outputs on the edited frames (full frame, RGB, at the
      bench resolution, over the white background);
  frames_per_minute: edited video frames per minute of total editing time (initial edits + training), the unit
      of PortraitGen's "60 frames/min on an RTX 3090"; editor_frames_per_minute: the editor alone.

    python bench/edit_consistency.py [--quick] [--editor flicker|relight] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/render.py

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig  # noqa: E402
from backend.edit import EditContext, EditModels, EditorSettings, EditSchedule, LightSpec, make_editor  # noqa: E402
from backend.edit.consistency import correspondences, warping_error  # noqa: E402
from backend.edit.loop import EditLoop  # noqa: E402
from backend.flame.texture import read_head_texture  # noqa: E402
from backend.reconstruct.dataset import FrameDataset  # noqa: E402
from backend.track.synthetic import synthetic_subject  # noqa: E402

TINT = (1.15, 0.95, 0.8)
GAIN_JITTER, OFFSET_JITTER = 0.12, 0.05


class FlickerEditor:
    """The deliberately frame-inconsistent editor (see the module docstring)."""

    name, frames, iterative, needs_instruction = "flicker", None, False, False

    def edit(self, image, source, instruction, mask, *, context=EditContext()):
        generator = torch.Generator().manual_seed(1000 + context.index)
        gain = torch.tensor(TINT) * (1 + GAIN_JITTER * torch.randn(3, generator=generator))
        offset = OFFSET_JITTER * torch.randn((), generator=generator)
        edited = (source * gain + offset).clamp(0, 1)
        blend = mask[..., None]
        return blend * edited + (1 - blend) * source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for 2 CPU cores (a few minutes)")
    parser.add_argument("--editor", choices=("flicker", "relight"), default="flicker")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, size, gaussians, iterations = (12, 64, 4000, 150) if args.quick else (40, 128, 20000, 1500)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    subject = synthetic_subject(frames, size, seed=args.seed)
    dataset = FrameDataset.from_tensors(subject.images, subject.cameras, subject.sequence, masks=subject.masks,
                                        background=subject.background, composite=False)
    config = AvatarConfig(appearance="neural", num_gaussians=gaussians, feature_dim=16,
                          renderer=NeuralRendererConfig(channels=16, layers=2))
    shape = torch.tensor(subject.sequence.shape, dtype=torch.float32)
    avatar = GaussianAvatar.from_surface(subject.head, config, seed=args.seed, shape=shape, opacity=0.95,
                                         texture=read_head_texture(subject.head)).to(device)
    if args.editor == "flicker":
        editor = FlickerEditor()
    else:
        editor = make_editor("relight", EditorSettings(light=LightSpec(preset="left")), EditModels(), device)
    schedule = EditSchedule(iterations=iterations, face_aware=False, frames_per_step=1)
    started = time.monotonic()
    loop = EditLoop(avatar, dataset, editor, [None] * frames, schedule, seed=args.seed)
    loop.run()
    seconds = time.monotonic() - started

    with torch.no_grad():
        pixels, visible = correspondences(loop.avatar, subject.sequence, subject.cameras)
        rows = loop.edit_rows  # every frame, in order (the last working row only previews)
        targets = loop.work.images[rows].cpu()  # [T, H, W, 3] the editor's outputs
        loop.avatar.eval()
        renders = torch.cat([loop.trainer.render([row]).rgb.clamp(0, 1).cpu() for row in rows])  # [T, H, W, 3]
    per_frame, _ = warping_error(targets, pixels.cpu(), visible.cpu())
    rendered, _ = warping_error(renders, pixels.cpu(), visible.cpu())
    source, _ = warping_error(subject.images, pixels.cpu(), visible.cpu())
    fidelity = loop.fidelity()
    print(json.dumps({
        "bench": "edit_consistency", "quick": args.quick, "editor": args.editor, "device": device,
        "frames": frames, "resolution": size, "gaussians": gaussians, "iterations": iterations,
        "threads": torch.get_num_threads(),
        "flicker_per_frame_edits": round(per_frame, 5), "flicker_avatar": round(rendered, 5),
        "flicker_ratio": round(per_frame / max(rendered, 1e-12), 2), "flicker_source": round(source, 5),
        "psnr_to_edits": round(fidelity["psnr"], 2), "ssim_to_edits": round(fidelity["ssim"], 4),
        "frames_per_minute": round(60.0 * frames / seconds, 2),
        "editor_frames_per_minute": round(60.0 * loop.edits / max(loop.edit_seconds, 1e-9), 1),
        "seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
