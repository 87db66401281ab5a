"""Iterative dataset update (Instruct-NeRF2NeRF, as PortraitGen runs it on a Neural Gaussian Texture avatar):
render a training frame -> edit it with a 2D editor -> replace that dataset frame -> keep optimising the avatar.

The optimisation is `backend.reconstruct.Trainer` with only the Neural Gaussian Texture and its CNN renderer
training (geometry, offsets and FLAME stay as reconstructed), on a working `FrameDataset` of the frames being
edited (plus one frame held out for previews of how the edit propagates). Schedule (`EditSchedule`):

1. an initial pass edits every chosen frame once (each from the unedited avatar's render);
2. then the trainer steps; for iterative editors (diffusion) every `edit_every` steps the next
   `edits_per_update` frames (round robin) are re-edited from the current render at a noise level drawn
   uniformly from [noise_min, noise_max], so the edits and the avatar converge on one consistent result.

Each edit is face-aware (the editor also edits a square face crop, pasted back inside the head mask; see
`face_crop`), composited over the dataset background with the head mask, and, when expression guidance is on,
kept only if the tracker finds the same expression as in the source (`expression_guidance`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from backend.avatar import GaussianAvatar
from backend.reconstruct.dataset import FrameDataset, frame_rows, sequence_rows
from backend.reconstruct.trainer import Trainer, TrainConfig

from .config import EditSchedule
from .editor import EditContext, Editor
from .expression_guidance import ExpressionGuidance
from .face_crop import face_aware_edit
from .geometry import frame_geometry

TRAINED_GROUPS = ("appearance", "renderer")
"""What the edit optimises: the Neural Gaussian Texture (or SH colours) and the CNN renderer."""


def chosen_frames(frames: int, editor: Editor, instructions: Sequence[str | None], schedule: EditSchedule
                  ) -> list[int]:
    """Dataset frames the loop edits: the editor's own frames, or every `frame_stride`-th frame with an
    instruction (when the editor needs one), at most `max_frames` evenly spaced."""
    if editor.frames is not None:
        bad = [index for index in editor.frames if not 0 <= index < frames]
        if bad:
            raise ValueError(f"frames {bad} are outside the dataset's {frames} frames (0..{frames - 1})")
        chosen = list(editor.frames)
    else:
        chosen = [t for t in range(0, frames, schedule.frame_stride)
                  if not editor.needs_instruction or (instructions[t] or "").strip()]
    if schedule.max_frames is not None and len(chosen) > schedule.max_frames:
        chosen = [chosen[i] for i in frame_rows(len(chosen), max(2, schedule.max_frames))][:schedule.max_frames]
    if not chosen:
        raise ValueError("no frame to edit: give an instruction (or prompts covering some frames)")
    return chosen


class EditLoop:
    """Edits `avatar` (in place) so it agrees with `editor`'s edits of `dataset`'s frames.

    Args:
        avatar: the avatar to edit (trained in place; pass a copy to keep the original).
        dataset: the frames the avatar was reconstructed from (not modified).
        editor: any `Editor`.
        instructions: per dataset frame, the text (None: no instruction for that frame).
        schedule: the `EditSchedule`.
        seed: seed of the trainer's frame order, the noise levels and the editors' seeds.
        expression_guidance: build `ExpressionGuidance` for the working frames (None: no guidance), given
            (avatar, working sequence, working cameras); used when `schedule.expression_tolerance` is set.

    Attributes:
        rows: the dataset frame of each working row (the last row is the preview frame, never trained on).
        trainer: the `Trainer` over the working dataset.
    """

    def __init__(self, avatar: GaussianAvatar, dataset: FrameDataset, editor: Editor,
                 instructions: Sequence[str | None], schedule: EditSchedule = EditSchedule(), *, seed: int = 0,
                 expression_guidance: Callable[..., ExpressionGuidance] | None = None) -> None:
        if len(instructions) != len(dataset):
            raise ValueError(f"{len(instructions)} instructions for {len(dataset)} frames")
        self.editor, self.schedule, self.instructions = editor, schedule, list(instructions)
        edited = chosen_frames(len(dataset), editor, instructions, schedule)
        others = [t for t in range(len(dataset)) if t not in set(edited)]
        self.rows = edited + [others[len(others) // 2] if others else edited[-1]]
        self.edit_rows = list(range(len(edited)))
        masks = None if dataset.masks is None else dataset.masks[self.rows].clone()
        self.work = FrameDataset(images=dataset.images[self.rows].clone(), masks=masks,
                                 cameras=[dataset.cameras[t] for t in self.rows],
                                 sequence=sequence_rows(dataset.sequence, self.rows), background=dataset.background,
                                 holdout=1)
        self.sources = self.work.images.clone()  # [R, H, W, 3] the unedited frames (the editors' conditions)
        config = TrainConfig(iterations=schedule.iterations, frames_per_step=schedule.frames_per_step, seed=seed,
                             train=TRAINED_GROUPS, lr_appearance=schedule.lr_appearance,
                             lr_renderer=schedule.lr_renderer, densify_every=0, lambda_mask=0.0)
        self.trainer = Trainer(avatar, self.work, config)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.guidance = None
        if schedule.expression_tolerance is not None and expression_guidance is not None:
            self.guidance = expression_guidance(avatar, self.work.sequence, self.work.cameras)
        self.edited = torch.zeros(len(self.rows), dtype=torch.bool)
        self.edits = 0
        self.rejected = 0
        self.initial_done = 0
        self.cursor = 0
        self.edit_seconds = 0.0

    @property
    def avatar(self) -> GaussianAvatar:
        return self.trainer.avatar

    @property
    def done(self) -> bool:
        return self.initial_done >= len(self.edit_rows) and self.trainer.step_count >= self.schedule.iterations

    # --- editing ------------------------------------------------------------------------------------------------

    def _draw(self) -> tuple[float, int]:
        """(noise level, edit seed) from the loop's generator."""
        s = self.schedule
        u = float(torch.rand((), generator=self.generator, dtype=torch.float64))
        seed = int(torch.randint(0, 2 ** 31 - 1, (), generator=self.generator))
        return s.noise_min + (s.noise_max - s.noise_min) * u, seed

    @torch.no_grad()
    def target(self, row: int, noise: float, seed: int) -> Tensor:
        """The editor's edit [H, W, 3] of working row `row`, composited over the background with the head mask."""
        work = self.work
        self.avatar.eval()
        render = self.trainer.render([row]).rgb[0].clamp(0, 1).float().cpu()  # [H, W, 3]
        self.avatar.train()
        geometry = frame_geometry(self.avatar, work.sequence, [row], [work.cameras[row]])
        mask = (work.masks[row] if work.masks is not None else geometry.coverage[0]).float().cpu()  # [H, W]
        normals, landmarks = geometry.normals[0].float().cpu(), geometry.landmarks[0].float().cpu()
        index = self.rows[row]
        context = EditContext(index=index, normals=normals, landmarks=landmarks if landmarks.shape[0] else None,
                              noise=noise, seed=seed)
        instruction = self.instructions[index] or ""
        source = self.sources[row].float().cpu()
        if self.schedule.face_aware and context.landmarks is not None:
            edited = face_aware_edit(self.editor, render, source, instruction, mask, context, context.landmarks,
                                     self.schedule.face_size)
        else:
            edited = self.editor.edit(render, source, instruction, mask, context=context)
        background = edited.new_tensor(work.background)
        return edited * mask[..., None] + background * (1 - mask[..., None])

    def edit_row(self, row: int, noise: float, seed: int) -> bool:
        """Edit working row `row` and write it into the working dataset unless expression guidance rejects it."""
        started = time.monotonic()
        edited = self.target(row, noise, seed)
        accepted = True
        if self.guidance is not None:
            accepted, _ = self.guidance.accepts(row, edited, self.sources[row].float().cpu())
        self.edits += 1
        if accepted:
            self.work.replace(row, edited.to(self.work.images))
            self.edited[row] = True
        else:
            self.rejected += 1
        self.edit_seconds += time.monotonic() - started
        return accepted

    def initial_step(self) -> int:
        """Edit the next frame of the initial pass (at the top of the noise range); returns the working row."""
        row = self.edit_rows[self.initial_done]
        _, seed = self._draw()
        self.edit_row(row, self.schedule.noise_max, seed)
        self.initial_done += 1
        return row

    def step(self) -> dict[str, float]:
        """One trainer step, preceded by a dataset update when the schedule says so; returns the loss terms."""
        if self.initial_done < len(self.edit_rows):
            raise RuntimeError("run the initial pass (initial_step) before training")
        s, step = self.schedule, self.trainer.step_count
        if self.editor.iterative and s.edit_every and step > 0 and step % s.edit_every == 0:
            for _ in range(s.edits_per_update):
                row = self.edit_rows[self.cursor % len(self.edit_rows)]
                self.cursor += 1
                self.edit_row(row, *self._draw())
        return self.trainer.step()

    def run(self, progress: Callable[..., None] | None = None, preview_every: int = 100) -> None:
        """Finish the initial pass and the training; `progress(stage, step, total, message, preview=None)` is
        called along the way (it may raise to stop; the state stays consistent and can be checkpointed)."""
        while self.initial_done < len(self.edit_rows):
            row = self.initial_step()
            if progress is not None:
                progress("edit frames", self.initial_done, len(self.edit_rows), f"edited frame {self.rows[row]}")
        total = self.schedule.iterations
        while self.trainer.step_count < total:
            terms = self.step()
            step = self.trainer.step_count
            if progress is not None:
                preview = self.preview() if preview_every and (step % preview_every == 0 or step == total) else None
                progress("train", step, total, f"loss {terms['loss']:.4f}", preview=preview)

    # --- reporting ----------------------------------------------------------------------------------------------

    def preview(self) -> np.ndarray:
        """[H, 3W, 4] uint8: an edited frame's render beside its edit target, then the held-out frame's render (the
        edit propagated to a frame it was never trained on)."""
        edited_row = self.edit_rows[(self.trainer.step_count // max(1, self.schedule.edit_every or 1))
                                    % len(self.edit_rows)]
        pair = self.trainer.preview(edited_row)  # [H, 2W, 4]
        held_out = self.trainer.preview(len(self.rows) - 1)[:, :self.work.width]  # [H, W, 4]
        return np.concatenate([pair, held_out], axis=1)

    def fidelity(self) -> dict[str, float]:
        """PSNR / SSIM (full frame, RGB, at the dataset resolution) of the renders against the edit targets on the
        edited frames."""
        rows = [row for row in self.edit_rows if bool(self.edited[row])]
        if not rows:
            return {"psnr": float("nan"), "ssim": float("nan"), "frames": 0}
        return self.trainer.evaluate(rows, region="full")

    # --- state --------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed loop needs (the trainer's state, the working frames, the loop's counters and
        generator)."""
        return {"trainer": self.trainer.state_dict(), "images": self.work.images.clone(),
                "edited": self.edited.clone(), "generator": self.generator.get_state(),
                "counters": {"edits": self.edits, "rejected": self.rejected, "initial_done": self.initial_done,
                             "cursor": self.cursor, "edit_seconds": self.edit_seconds},
                "rows": list(self.rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["rows"]) != self.rows:
            raise ValueError(f"the checkpoint edits frames {list(state['rows'])[:8]}..., this job {self.rows[:8]}...")
        self.trainer.load_state_dict(state["trainer"])
        self.work.images.copy_(state["images"])
        self.edited = state["edited"].clone().bool()
        self.generator.set_state(state["generator"])
        counters = state["counters"]
        self.edits, self.rejected = int(counters["edits"]), int(counters["rejected"])
        self.initial_done, self.cursor = int(counters["initial_done"]), int(counters["cursor"])
        self.edit_seconds = float(counters["edit_seconds"])
