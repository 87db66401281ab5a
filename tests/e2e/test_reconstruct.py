"""Job `reconstruct` through a real backend: a tiny synthetic tracked set becomes an avatar that `render` draws;
a cancelled job resubmitted with the same spec resumes from its checkpoint; bad specs fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from backend.flame import BUILTIN_HEAD_PATH
from shared_client import Client, JobFailed, RequestFailed
from shared_proto import ErrorCode, FrameReply, Progress

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")

SIZE, FRAMES = 32, 6


@pytest.fixture(scope="module")
def subject_folder(tmp_path_factory):
    from backend.track.synthetic import synthetic_subject, write_tracked_folder

    subject = synthetic_subject(FRAMES, SIZE, seed=4)
    folder = write_tracked_folder(subject, tmp_path_factory.mktemp("subject") / "tracked")
    return folder, subject


def test_reconstruct_then_render_the_avatar(shared_backend, subject_folder) -> None:
    folder, subject = subject_folder
    spec = {"tracked": str(folder), "resolution": SIZE, "iterations": 3, "seed": 1}
    with Client(shared_backend.endpoint, timeout=30) as client:
        job = client.submit("reconstruct", spec)
        replies = list(job.replies(timeout=300))
        result = job.wait(timeout=300)
        assert result["avatar"] == f"avatars/{job.id}" and result["frames"] == FRAMES
        assert np.isfinite(result["psnr_holdout"]) and 0 < result["ssim_holdout"] <= 1
        assert result["holdout_fit"] == 30 and np.isfinite(result["psnr_holdout_tracked"])
        stages = {r.stage for r in replies if isinstance(r, Progress)}
        assert {"load", "train", "evaluate", "save"} <= stages
        previews = [r.preview for r in replies if isinstance(r, Progress) and r.preview is not None]
        assert previews and previews[-1].shape == (SIZE, 2 * SIZE, 4)
        render = client.submit("render", {"avatar": result["avatar"], "sequence": subject.sequence.to_wire(),
                                          "camera": subject.cameras[0].to_wire(), "quality": "final"})
        frames = [r for r in render.replies(timeout=120) if isinstance(r, FrameReply)]
        assert render.wait(timeout=120)["frames"] == FRAMES
    assert frames[0].image.shape == (SIZE, SIZE, 4) and frames[0].image[..., 3].max() > 0
    assert (shared_backend.workspace / "avatars" / job.id / "avatar.safetensors").is_file()


def test_cancel_then_resubmit_resumes(shared_backend, subject_folder) -> None:
    folder, _ = subject_folder
    spec = {"tracked": str(folder), "resolution": SIZE, "iterations": 400, "seed": 2}
    with Client(shared_backend.endpoint, timeout=30) as client:
        first = client.submit("reconstruct", spec)
        for reply in first.replies(timeout=300):
            if isinstance(reply, Progress) and reply.stage == "train" and reply.step >= 2:
                break
        client.cancel(first.id)
        with pytest.raises(JobFailed) as info:
            first.wait(timeout=120)
        assert info.value.code is ErrorCode.CANCELLED
        assert not (shared_backend.workspace / "avatars" / first.id).exists()
        checkpoints = list((shared_backend.workspace / "jobs" / first.id / "checkpoints").glob("step_*"))
        assert len(checkpoints) == 1
        step = int(checkpoints[0].stem.split("_")[1])
        second = client.submit("reconstruct", {**spec, "iterations": 400})
        messages = []
        for reply in second.replies(timeout=300):
            if isinstance(reply, Progress):
                messages.append(reply.message)
                if reply.stage == "train":
                    assert reply.step > step  # it continued; it did not start over
                    break
        client.cancel(second.id)
        with pytest.raises(JobFailed):
            second.wait(timeout=120)
    assert any(first.id in m for m in messages)


def test_bad_specs_fail_before_running(shared_backend, tmp_path) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        with pytest.raises(RequestFailed) as info:
            client.submit("reconstruct", {"tracked": str(tmp_path), "iterations": -1})
        assert info.value.code is ErrorCode.BAD_SPEC and "iterations" in info.value.message
        with pytest.raises(JobFailed) as failed:
            client.submit("reconstruct", {"tracked": str(tmp_path / "nope")}).wait(timeout=120)
        assert failed.value.code is ErrorCode.NOT_FOUND
        (tmp_path / "readme.txt").write_text("not a dataset")
        with pytest.raises(JobFailed) as failed:
            client.submit("reconstruct", {"tracked": str(tmp_path)}).wait(timeout=120)
        assert failed.value.code is ErrorCode.BAD_SPEC and "looked for" in failed.value.message
