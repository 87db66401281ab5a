"""The `reconstruct` core in-process: spec validation, outputs, cancel -> checkpoint -> resume, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.avatar import load_package
from backend.errors import JobCancelled, JobError
from backend.reconstruct.job import adopt_previous_run, parse_request, reconstruct

REPO_ROOT = Path(__file__).resolve().parents[3]


def spec(folder, **extra) -> dict:
    return {"tracked": str(folder), "resolution": 32, "iterations": 4, "max_frames": 6, **extra}


def test_spec_errors_name_the_field(tracked_folder) -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        parse_request({"video": "a.mp4", "tracked": "b"})
    with pytest.raises(ValueError, match="exactly one of"):
        parse_request({})
    with pytest.raises(ValueError, match="spec.iterations"):
        parse_request(spec(tracked_folder, iterations=0))
    with pytest.raises(ValueError, match="spec.appearance"):
        parse_request(spec(tracked_folder, appearance="mesh"))
    with pytest.raises(ValueError, match="does not take"):
        parse_request(spec(tracked_folder, colour="red"))
    assert parse_request(spec(tracked_folder)).key() == parse_request(spec(tracked_folder)).key()
    assert parse_request(spec(tracked_folder)).key() != parse_request(spec(tracked_folder, seed=1)).key()
    with pytest.raises(ValueError, match="spec.holdout_fit"):
        parse_request(spec(tracked_folder, holdout_fit=-1))
    assert parse_request(spec(tracked_folder)).holdout_fit == 30
    unfitted = parse_request(spec(tracked_folder, holdout_fit=0))
    assert unfitted.holdout_fit == 0 and unfitted.key() == parse_request(spec(tracked_folder)).key()  # evaluation only


def test_cancel_writes_a_checkpoint_and_the_same_request_resumes(tracked_folder, tmp_path) -> None:
    request = parse_request(spec(tracked_folder))
    stages: list[tuple[str, int]] = []

    def cancel_at_step_2(stage, step=0, total=0, message="", preview=None):
        stages.append((stage, step))
        if stage == "train" and step == 2:
            raise JobCancelled("job")

    avatar = tmp_path / "avatar.safetensors"
    with pytest.raises(JobCancelled):
        reconstruct(request, tmp_path / "work", avatar, device="cpu", progress=cancel_at_step_2)
    assert not avatar.exists()  # nothing half-written
    assert [p.name for p in (tmp_path / "work" / "checkpoints").iterdir()] == ["step_000002.safetensors"]
    moved = tmp_path / "work2"
    moved.mkdir()
    assert adopt_previous_run(moved, request.key()) == "work"  # a resubmitted job takes the checkpoints over
    previews = []
    result = reconstruct(request, moved, avatar, device="cpu",
                         progress=lambda stage, step=0, total=0, message="", preview=None: previews.append(preview))
    assert result["resumed_from"] == 2 and result["iterations"] == 4 and result["frames"] == 6
    assert set(result) >= {"psnr_holdout", "ssim_holdout", "frames", "gaussians", "seconds", "avatar",
                           "psnr_holdout_tracked", "holdout_fit"}
    assert result["holdout_fit"] == 30
    assert load_package(avatar).n_gaussians == result["gaussians"]
    assert any(p is not None and p.shape == (32, 64, 4) for p in previews)
    report = json.loads((moved / "report.json").read_text())
    assert report["psnr_holdout"] == result["psnr_holdout"] and report["holdout_frames"] == 1
    assert (moved / "tracked").resolve() == Path(tracked_folder).resolve()


def test_missing_source_and_missing_tracker_input(tmp_path) -> None:
    request = parse_request({"tracked": str(tmp_path / "nope")})
    with pytest.raises(JobError, match="does not exist"):
        reconstruct(request, tmp_path / "work", tmp_path / "a.safetensors", device="cpu",
                    progress=lambda *a, **k: None)
    assert not (tmp_path / "work").exists()


def test_cli_prints_one_json_line_and_exits_2_on_user_errors(tracked_folder, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "backend", "reconstruct", "--tracked", str(tracked_folder), "--out",
               str(tmp_path / "out"), "--resolution", "32", "--iterations", "2", "--device", "cpu",
               "--holdout-fit", "0"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] == 6 and result["avatar"] == str(tmp_path / "out" / "avatar.safetensors")
    assert result["holdout_fit"] == 0 and result["psnr_holdout"] == result["psnr_holdout_tracked"]  # --holdout-fit 0
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"avatar.safetensors", "checkpoints", "report.json"}
    bad = subprocess.run(command[:5] + [str(tmp_path / "missing"), "--out", str(tmp_path / "o2")], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1].startswith("keyface reconstruct: tracked") and "Traceback" not in \
        bad.stderr


def test_a_corrupt_video_is_a_clear_error_and_writes_no_avatar(tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    request = parse_request({"video": str(video), "resolution": 32, "iterations": 2})
    avatar = tmp_path / "avatar.safetensors"
    with pytest.raises(ValueError) as info:
        reconstruct(request, tmp_path / "work", avatar, device="cpu", progress=lambda *a, **k: None)
    assert str(video) in str(info.value)
    assert not avatar.exists() and not (tmp_path / "work" / "tracking.json").exists()


def test_lpips_weights_come_only_from_the_local_model_folder(tmp_path) -> None:
    from backend.reconstruct.job import lpips_folder

    assert lpips_folder({}) is None
    assert lpips_folder({"KEYFACE_MODELS": str(tmp_path)}) is None  # no lpips/ folder: no LPIPS term
    (tmp_path / "lpips").mkdir()
    assert lpips_folder({"KEYFACE_MODELS": str(tmp_path)}) == str(tmp_path / "lpips")


def test_frames_are_tracked_once_and_one_frame_is_a_clear_error(tmp_path) -> None:
    import numpy as np
    import PIL.Image

    from backend.reconstruct.dataset import DatasetError
    from backend.track.synthetic import synthetic_subject

    subject = synthetic_subject(6, 192, seed=2, background=(0.45, 0.47, 0.5))
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, image in enumerate(subject.images):
        PIL.Image.fromarray((image.numpy() * 255 + 0.5).astype(np.uint8)).save(frames / f"{t:05d}.png")
    request = parse_request({"frames": str(frames), "resolution": 48, "iterations": 2})
    quiet = lambda *a, **k: None  # noqa: E731
    first = reconstruct(request, tmp_path / "work", tmp_path / "a.safetensors", device="cpu", progress=quiet)
    assert first["frames"] == 6 and first["reprojection_px"] < 3.0
    marker = tmp_path / "work" / "tracking.json"
    stamp = marker.stat().st_mtime_ns
    again = reconstruct(request, tmp_path / "work", tmp_path / "a.safetensors", device="cpu", progress=quiet)
    assert again["resumed_from"] == 2 and marker.stat().st_mtime_ns == stamp  # neither retracked nor retrained
    single = tmp_path / "single"
    single.mkdir()
    (frames / "00000.png").rename(single / "00000.png")
    with pytest.raises(DatasetError, match="at least 2 frames"):
        reconstruct(parse_request({"frames": str(single), "resolution": 48, "iterations": 2}), tmp_path / "w2",
                    tmp_path / "b.safetensors", device="cpu", progress=quiet)
    assert not (tmp_path / "b.safetensors").exists()
