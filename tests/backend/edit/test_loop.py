"""The iterative dataset update loop on a tiny synthetic subject: edits land in the working dataset, the avatar
learns them (and carries them to a frame it never trained on), painted frames restrict training, and a loop
resumed from a checkpoint file continues exactly like one that was never interrupted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig
from backend.edit import EditContext, EditModels, EditorSettings, EditSchedule, LightSpec, make_editor
from backend.edit.job import CHECKPOINT_FORMAT
from backend.edit.loop import EditLoop, chosen_frames
from backend.flame import BUILTIN_HEAD_PATH
from backend.flame.texture import read_head_texture
from backend.reconstruct.checkpoint import load_state, save_state
from backend.reconstruct.dataset import FrameDataset
from backend.track.synthetic import synthetic_subject

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")
SIZE, FRAMES = 32, 5


@pytest.fixture(scope="module")
def subject():
    return synthetic_subject(FRAMES, SIZE, seed=2)


def make_avatar(subject) -> GaussianAvatar:
    config = AvatarConfig(appearance="neural", num_gaussians=600, feature_dim=6,
                          renderer=NeuralRendererConfig(channels=6, layers=2))
    return GaussianAvatar.from_surface(subject.head, config, seed=0, opacity=0.95,
                                       shape=torch.tensor(subject.sequence.shape, dtype=torch.float32),
                                       texture=read_head_texture(subject.head))


def make_dataset(subject) -> FrameDataset:
    return FrameDataset.from_tensors(subject.images, subject.cameras, subject.sequence, masks=subject.masks,
                                     background=subject.background, composite=False)


class Tint:
    """An iterative test editor: the render pulled towards a red tint of the source (depends on `image` and the
    seed, like a diffusion editor)."""

    name, frames, iterative, needs_instruction = "tint", None, True, True

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def edit(self, image, source, instruction, mask, *, context=EditContext()):
        self.seen.append((context.index, context.noise))
        jitter = torch.rand((), generator=torch.Generator().manual_seed(context.seed)) * 0.05
        return (0.5 * image + 0.5 * source * torch.tensor([1.0, 0.5, 0.5]) + jitter).clamp(0, 1)


def test_relight_edit_is_learned_and_propagates_to_an_unseen_frame(subject) -> None:
    dataset = make_dataset(subject)
    editor = make_editor("relight", EditorSettings(light=LightSpec(preset="warm-sunset")), EditModels(), "cpu")
    schedule = EditSchedule(iterations=24, frame_stride=2, face_size=24)
    loop = EditLoop(make_avatar(subject), dataset, editor, [None] * FRAMES, schedule, seed=0)
    assert loop.rows == [0, 2, 4, 1] or loop.rows == [0, 2, 4, 3]  # edited frames + one unseen preview frame
    held_out = len(loop.rows) - 1
    before = loop.trainer.render([held_out]).rgb[0].detach().clamp(0, 1)
    while loop.initial_done < 3:
        loop.initial_step()
    untrained = loop.fidelity()
    loop.run()
    assert loop.done and loop.edits == 3 and bool(loop.edited[:3].all())
    torch.testing.assert_close(dataset.images, subject.images)  # the caller's dataset is untouched
    fidelity = loop.fidelity()
    assert fidelity["frames"] == 3 and fidelity["psnr"] > untrained["psnr"] + 2
    after = loop.trainer.render([held_out]).rgb[0].detach().clamp(0, 1)
    head = subject.masks[loop.rows[held_out]] > 0.5
    # warm light: red gains over blue on a frame the avatar never trained on
    assert float((after[head][:, 0] - after[head][:, 2]).mean()) > float((before[head][:, 0] - before[head][:, 2])
                                                                         .mean()) + 0.02
    assert loop.preview().shape == (SIZE, 3 * SIZE, 4)


def test_iterative_editor_is_re_edited_on_schedule_with_noise_in_range(subject) -> None:
    editor = Tint()
    schedule = EditSchedule(iterations=9, edit_every=4, edits_per_update=2, noise_min=0.3, noise_max=0.6,
                            face_aware=False, max_frames=3)
    loop = EditLoop(make_avatar(subject), make_dataset(subject), editor, ["make it red"] * FRAMES, schedule)
    loop.run()
    assert len(loop.edit_rows) == 3
    initial, updates = editor.seen[:3], editor.seen[3:]
    assert [noise for _, noise in initial] == [0.6] * 3
    assert len(updates) == 2 * 2  # before steps 5 and 9 (after 4 and 8 steps)
    assert all(0.3 <= noise <= 0.6 for _, noise in updates)
    assert [index for index, _ in updates] == [loop.rows[r] for r in (0, 1, 2, 0)]


def test_frames_without_an_instruction_are_not_edited() -> None:
    chosen = chosen_frames(6, Tint(), [None, "a", "a", None, "b", ""], EditSchedule())
    assert chosen == [1, 2, 4]
    assert chosen_frames(10, Tint(), ["x"] * 10, EditSchedule(frame_stride=3)) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="no frame"):
        chosen_frames(3, Tint(), [None] * 3, EditSchedule())


def test_keyframe_paint_trains_only_on_painted_frames(subject) -> None:
    painted = (subject.images[1].numpy() * 255).astype(np.uint8)
    painted[..., 1:] //= 3  # a red version of frame 1
    editor = make_editor("keyframe-paint", EditorSettings(paint={1: painted}), EditModels(), "cpu")
    loop = EditLoop(make_avatar(subject), make_dataset(subject), editor, [None] * FRAMES,
                    EditSchedule(iterations=2, face_aware=False))
    assert loop.rows[0] == 1 and len(loop.rows) == 2 and loop.work.train_indices == [0]
    with pytest.raises(ValueError, match="outside"):
        EditLoop(make_avatar(subject), make_dataset(subject),
                 make_editor("keyframe-paint", EditorSettings(paint={9: painted}), EditModels(), "cpu"),
                 [None] * FRAMES)


def test_resumed_loop_matches_an_uninterrupted_one(subject, tmp_path) -> None:
    schedule = EditSchedule(iterations=5, edit_every=2, face_aware=False, max_frames=2)

    def fresh() -> EditLoop:
        return EditLoop(make_avatar(subject), make_dataset(subject), Tint(), ["red"] * FRAMES, schedule, seed=5)

    straight = fresh()
    straight.run()
    interrupted = fresh()
    while interrupted.initial_done < len(interrupted.edit_rows):
        interrupted.initial_step()
    for _ in range(2):
        interrupted.step()
    save_state(interrupted.state_dict(), tmp_path / "checkpoint.safetensors", CHECKPOINT_FORMAT)
    resumed = fresh()
    resumed.load_state_dict(load_state(tmp_path / "checkpoint.safetensors", CHECKPOINT_FORMAT))
    resumed.run()
    assert resumed.edits == straight.edits
    torch.testing.assert_close(resumed.work.images, straight.work.images, rtol=0, atol=0)
    for name, value in straight.avatar.state_dict().items():
        torch.testing.assert_close(resumed.avatar.state_dict()[name], value, rtol=0, atol=0)
