"""Job `edit` through a real backend process: a weight-free edit distilled into a new avatar that the `render` job
then renders; bad specs and missing weights fail with clear codes; a cancelled edit resumes from its checkpoint."""

from __future__ import annotations

import hashlib

import numpy as np
import PIL.Image
import pytest
import torch

from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig, load_package, save_package
from backend.flame import BUILTIN_HEAD_PATH
from backend.flame.texture import read_head_texture
from backend.track.synthetic import synthetic_subject, write_tracked_folder
from shared_client import Client, JobFailed, RequestFailed
from shared_proto import ErrorCode, FrameReply, Progress

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")
SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """(tracked folder, avatar package path, subject) of a tiny synthetic capture."""
    folder = tmp_path_factory.mktemp("capture")
    subject = synthetic_subject(FRAMES, SIZE, seed=4)
    tracked = write_tracked_folder(subject, folder / "tracked")
    config = AvatarConfig(appearance="neural", num_gaussians=600, feature_dim=6,
                          renderer=NeuralRendererConfig(channels=6, layers=2))
    avatar = GaussianAvatar.from_surface(subject.head, config, opacity=0.95, texture=read_head_texture(subject.head),
                                         shape=torch.tensor(subject.sequence.shape, dtype=torch.float32))
    package = save_package(avatar, folder / "avatar.safetensors")
    return tracked, package, subject


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_relight_edit_writes_a_new_avatar_that_renders(shared_backend, capture) -> None:
    tracked, package, subject = capture
    before = digest(package)
    spec = {"avatar": str(package), "dataset": str(tracked), "editor": "relight", "resolution": SIZE,
            "light": {"preset": "warm-sunset", "intensity": 1.3}, "schedule": {"iterations": 8, "face_size": 24}}
    with Client(shared_backend.endpoint, timeout=30) as client:
        job = client.submit("edit", spec)
        replies = list(job.replies(timeout=240))
        result = job.wait(timeout=10)
        stages = {reply.stage for reply in replies if isinstance(reply, Progress)}
        previews = [reply.preview for reply in replies if isinstance(reply, Progress) and reply.preview is not None]
        assert {"load", "edit frames", "train"} <= stages and previews
        assert previews[-1].shape == (SIZE, 3 * SIZE, 4)
        assert result["avatar"] == f"avatars/{job.id}" and result["frames_edited"] == FRAMES
        assert result["resumed_from"] is None
        assert result["steps"] == 8 and result["psnr_to_edits"] > 10 and result["edit_frames_per_minute"] > 0
        assert digest(package) == before  # the original avatar is never modified
        written = shared_backend.workspace / "avatars" / job.id / "avatar.safetensors"
        edited = load_package(written)
        original = load_package(package)
        assert not torch.equal(edited.params["features"], original.params["features"])
        torch.testing.assert_close(edited.params["means"], original.params["means"])  # geometry is kept
        render = client.submit("render", {"avatar": result["avatar"], "sequence": subject.sequence.to_wire(),
                                          "camera": subject.cameras[0].to_wire(), "quality": "final"})
        frames = [reply for reply in render.replies(timeout=120) if isinstance(reply, FrameReply)]
        assert len(frames) == FRAMES and frames[0].image.shape == (SIZE, SIZE, 4)
        assert render.wait(timeout=10)["frames"] == FRAMES


def test_keyframe_paint_from_image_files(shared_backend, capture, tmp_path) -> None:
    tracked, package, subject = capture
    painted = (subject.images[1].numpy() * 255).astype(np.uint8)
    painted[..., 2] = 255  # a blue wash
    PIL.Image.fromarray(painted).save(tmp_path / "frame1.png")
    spec = {"avatar": str(package), "dataset": str(tracked), "editor": "keyframe-paint", "resolution": SIZE,
            "paint": {"1": str(tmp_path / "frame1.png")}, "schedule": {"iterations": 4, "face_aware": False}}
    with Client(shared_backend.endpoint, timeout=30) as client:
        result = client.submit("edit", spec).wait(timeout=240)
    assert result["frames_edited"] == 1 and result["edits"] == 1


@pytest.mark.parametrize("spec, fragment", [
    ({"editor": "relight"}, "spec.avatar"),
    ({"avatar": "avatars/x", "editor": "sketch"}, "spec.editor"),
    ({"avatar": "a.safetensors", "editor": "relight"}, "spec.dataset"),
    ({"avatar": "avatars/x", "editor": "instruct-pix2pix"}, "instruction"),
    ({"avatar": "avatars/x", "editor": "keyframe-paint", "paint": {"one": "a.png"}}, "frame indices"),
    ({"avatar": "avatars/x", "editor": "relight", "light": {"preset": "disco"}}, "preset"),
    ({"avatar": "avatars/x", "editor": "relight", "schedule": {"noise_min": 0.9, "noise_max": 0.1}}, "noise"),
    ({"avatar": "avatars/x", "editor": "relight", "schedule": {"speed": 1}}, "speed"),
    ({"avatar": "avatars/x", "editor": "relight", "prompts": [{"frame_start": 3, "frame_end": 1, "text": "x"}]},
     "frame_start"),
])
def test_bad_specs_are_rejected_at_submit(shared_backend, spec, fragment) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client, pytest.raises(RequestFailed) as info:
        client.submit("edit", spec)
    assert info.value.code is ErrorCode.BAD_SPEC and fragment in info.value.message


def test_missing_instruct_pix2pix_weights_fail_with_model_missing(shared_backend, capture, tmp_path) -> None:
    tracked, package, _ = capture
    spec = {"avatar": str(package), "dataset": str(tracked), "editor": "instruct-pix2pix", "resolution": SIZE,
            "instruction": "make him a clown", "models": {"instruct_pix2pix": str(tmp_path / "nothing")}}
    with Client(shared_backend.endpoint, timeout=30) as client, pytest.raises(JobFailed) as info:
        client.submit("edit", spec).wait(timeout=120)
    assert info.value.code is ErrorCode.MODEL_MISSING and "InstructPix2Pix" in info.value.message
    assert "model_index.json" in info.value.message and "KEYFACE_MODELS" in info.value.hint


def test_a_cancelled_edit_resubmitted_resumes_from_its_checkpoint(shared_backend, capture) -> None:
    tracked, package, _ = capture
    spec = {"avatar": str(package), "dataset": str(tracked), "editor": "relight", "resolution": SIZE,
            "schedule": {"iterations": 24, "checkpoint_every": 3, "face_aware": False}}
    with Client(shared_backend.endpoint, timeout=30) as client:
        job = client.submit("edit", spec)
        for reply in job.replies(timeout=240):
            if isinstance(reply, Progress) and reply.stage == "train" and reply.step >= 4:
                break
        job.cancel()
        with pytest.raises(JobFailed) as info:
            job.wait(timeout=120)
        assert info.value.code is ErrorCode.CANCELLED
        again = client.submit("edit", spec)
        result = again.wait(timeout=240)
    assert result["resumed_from"]["job"] == job.id and result["resumed_from"]["step"] >= 3
    assert result["resumed_from"]["frames_edited"] == FRAMES and result["steps"] == 24
    assert result["edits"] == FRAMES  # the frames were not edited a second time
