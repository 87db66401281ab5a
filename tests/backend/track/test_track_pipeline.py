"""`track` end to end: synthetic renders and a real photo through MediaPipe, the fit and the tracked folder."""

from __future__ import annotations

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from backend.flame import FlameModel
from backend.flame.motion import talking_head
from backend.track.fit_landmarks import FitConfig
from backend.track.importers import load_tracked, load_vhap_export
from backend.track.photometric import PhotometricConfig
from backend.track.pipeline import TrackConfig, TrackResult, track
from backend.track.synthetic import as_uint8, portrait_camera, project_landmarks, render_head
from backend.track.video import TrackInputError

FAST = FitConfig(rigid_iterations=60, iterations=250)
"""A shorter fit for tests (the defaults are for quality)."""
SIZE = 192


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.builtin()


@pytest.fixture(scope="module")
def synthetic(head, tmp_path_factory) -> dict:
    """Four 192 x 192 renders of the built-in head with another shape, talking and turning, and the truth."""
    folder = tmp_path_factory.mktemp("synthetic")
    sequence = talking_head(4, 25.0, shape=np.random.default_rng(5).normal(0, 0.5, head.n_shape),
                            n_expression=head.n_expression, seed=11)
    camera = portrait_camera(SIZE)
    for t, frame in enumerate(as_uint8(render_head(head, sequence, camera)[0])):
        iio.imwrite(folder / f"frame{t}.png", frame)
    return {"folder": folder, "truth": project_landmarks(head, sequence, camera)}


def _landmarks_in_source(head: FlameModel, result: TrackResult, resolution: int) -> np.ndarray:
    """[T, L, 2] the fitted head's landmarks, projected by the written cameras, mapped back to source pixels."""
    with torch.no_grad():
        points = head.forward_params(result.sequence).landmarks.double().numpy()  # [T, L, 3]
    return np.stack([box.to_source(camera.project(p)[:, :2], resolution)
                     for p, camera, box in zip(points, result.cameras, result.boxes)])


def test_synthetic_track_and_read_back(head, synthetic, tmp_path):
    stages = []
    out = tmp_path / "tracked"
    result = track(synthetic["folder"], out, head, TrackConfig(resolution=128, fit=FAST),
                   progress=lambda stage, step, total, message="": stages.append(stage))
    assert result.folder == out and result.frames_used == ("frame0", "frame1", "frame2", "frame3")
    assert result.frames_skipped == () and result.seconds > 0
    assert {"frames", "fit", "write", "save"} <= set(stages)
    assert result.reprojection_px < 2.0  # crop pixels at 128, against the detections (1.2 measured)
    error = np.linalg.norm(_landmarks_in_source(head, result, 128) - synthetic["truth"], axis=-1).mean()
    assert error < 2.5  # pixels of the 192 renders, against the true landmarks (68, all frames; 1.4 measured)

    tracked = load_vhap_export(out)
    assert load_tracked(out).source == "vhap_export"
    seq = tracked.sequence
    for name in ("shape", "expression", "rotation", "neck", "jaw", "eyes", "translation"):
        np.testing.assert_array_equal(getattr(seq, name), getattr(result.sequence, name), err_msg=name)
    for ours, theirs in zip(tracked.cameras, result.cameras):
        np.testing.assert_allclose(ours.K, theirs.K, rtol=1e-12)
        np.testing.assert_allclose(ours.world_to_camera, theirs.world_to_camera, atol=1e-12)
        assert (ours.width, ours.height) == (128, 128)
    assert tracked.frame_ids == result.frames_used
    image, mask = iio.imread(tracked.image_paths[2]), iio.imread(tracked.mask_paths[2])
    assert image.shape == (128, 128, 3) and mask.shape == (128, 128) and mask.dtype == np.uint8
    assert mask[64, 64] > 128 and mask[2, 2] < 128  # the face is foreground, the plain corner is not
    report = json.loads((out / "keyface_track.json").read_text())
    assert report["head"] == str(head.source) and len(report["frames"]) == 4
    assert abs(report["reprojection_px"] - result.reprojection_px) < 1e-9
    assert abs(np.mean(seq.translation, axis=0)).max() < 1e-6  # recentred, as VHAP exports are


def test_no_face_frames_are_skipped_and_no_face_at_all_is_an_error(head, synthetic, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for t in (0, 1):
        (folder / f"a{t}.png").write_bytes((synthetic["folder"] / f"frame{t}.png").read_bytes())
    iio.imwrite(folder / "a2.png", np.full((SIZE, SIZE, 3), 90, np.uint8))  # an empty wall
    (folder / "a3.png").write_bytes(b"broken")
    result = track(folder, tmp_path / "out", head, TrackConfig(resolution=64, fit=FAST, masks=False))
    assert result.frames_used == ("a0", "a1")
    skipped = dict(result.frames_skipped)
    assert skipped["a2"] == "no face detected" and "PNG or JPEG" in skipped["a3"]
    assert [entry["id"] for entry in json.loads((tmp_path / "out/keyface_track.json").read_text())["skipped"]] \
        == ["a2", "a3"]

    empty = tmp_path / "walls"
    empty.mkdir()
    iio.imwrite(empty / "0.png", np.full((64, 64, 3), 90, np.uint8))
    with pytest.raises(TrackInputError, match="no face found in any of its 1 frames"):
        track(empty, tmp_path / "never", head, TrackConfig(fit=FAST))
    assert not (tmp_path / "never").exists()


def test_cancelling_leaves_nothing_behind(head, synthetic, tmp_path):
    out = tmp_path / "tracked"
    out.mkdir()
    (out / "old.txt").write_text("previous result")

    def cancel(stage, step, total, message=""):
        if stage == "write" and step == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        track(synthetic["folder"], out, head, TrackConfig(resolution=64, fit=FAST), progress=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracked"]  # no temporary folder left
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_real_photo_mixed_sizes_and_a_portrait_video(head, tmp_path):
    """The astronaut photo (a real face) at two sizes: each frame is cropped on its own and its K says so."""
    photo = skimage_data.astronaut()  # [512, 512, 3]
    folder = tmp_path / "photos"
    folder.mkdir()
    iio.imwrite(folder / "big.png", photo)
    iio.imwrite(folder / "small.jpg", photo[::2, ::2].copy())  # 256 x 256
    result = track(folder, tmp_path / "out", head, TrackConfig(resolution=96, fit=FAST))
    assert result.frames_used == ("big", "small")
    big, small = result.cameras
    # the same face crop at half the source size: the same crop intrinsics, focal = f x each frame's side
    np.testing.assert_allclose(big.K, small.K, rtol=0.03)
    assert result.reprojection_px < 2.0  # crop pixels at 96 (1.2 measured)
    report = json.loads((tmp_path / "out/keyface_track.json").read_text())
    assert [frame["source_size"] for frame in report["frames"]] == [[512, 512], [256, 256]]

    portrait = np.zeros((3, 640, 360, 3), np.uint8)
    portrait[:, 64:576] = photo[:, 76:436]  # the face, in a tall phone-shaped frame
    video = tmp_path / "portrait.mp4"
    iio.imwrite(video, portrait, fps=25, codec="libx264", macro_block_size=1)
    clip = track(video, tmp_path / "clip", head, TrackConfig(resolution=64, fit=FAST, masks=False))
    assert clip.frames_used == ("frame_00000", "frame_00001", "frame_00002")
    assert clip.sequence.fps == 25.0 and clip.reprojection_px < 3.0
    box = clip.boxes[0]
    assert 0 < box.x0 + box.size / 2 < 360 and 64 < box.y0 + box.size / 2 < 576


def test_one_frame_4k_video(head, tmp_path):
    """A 3840 x 2160 single-frame video: the face crop is cut from the full frame and scaled down to R."""
    photo = skimage_data.astronaut()
    frame = np.zeros((1, 2160, 3840, 3), np.uint8)
    frame[0, 56:2104, 900:2948] = photo.repeat(4, axis=0).repeat(4, axis=1)  # the face, 4x larger
    video = tmp_path / "uhd.mp4"
    iio.imwrite(video, frame, fps=30, codec="libx264", quality=5)
    result = track(video, tmp_path / "out", head, TrackConfig(resolution=64, fit=FAST, masks=False))
    assert result.frames_used == ("frame_00000",) and len(result.sequence) == 1
    assert result.boxes[0].size > 600 and result.reprojection_px < 3.0
    K = result.cameras[0].K
    assert K[0, 0] == pytest.approx(result.focal * 3840 * 64 / result.boxes[0].size)


def test_official_flame_layout_with_a_mediapipe_embedding(head, synthetic, tmp_path):
    """A FLAME-style file without MediaPipe indices plus metrical-tracker's embedding file tracks too."""
    with np.load(head.source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    embedding = {"lmk_face_idx": arrays.pop("lmk_face_idx"), "lmk_b_coords": arrays.pop("lmk_b_coords"),
                 "landmark_indices": arrays.pop("mediapipe_indices")}
    np.savez(tmp_path / "flame.npz", **arrays)
    np.savez(tmp_path / "mediapipe_landmark_embedding.npz", **embedding)
    model = FlameModel.from_file(tmp_path / "flame.npz",
                                 mediapipe_embedding=tmp_path / "mediapipe_landmark_embedding.npz")
    result = track(synthetic["folder"], tmp_path / "out", model, TrackConfig(resolution=64, fit=FAST, masks=False))
    assert len(result.frames_used) == 4 and result.reprojection_px < 2.0

    no_embedding = FlameModel.from_file(tmp_path / "flame.npz")
    with pytest.raises(ValueError, match="mediapipe_embedding"):
        track(synthetic["folder"], tmp_path / "never", no_embedding, TrackConfig(fit=FAST))
    assert not (tmp_path / "never").exists()


def test_photometric_refinement_lowers_the_image_error(head, synthetic, tmp_path):
    landmarks_only = TrackConfig(resolution=96, fit=FAST, masks=False)
    config = dataclasses.replace(landmarks_only, photometric=True, refine=PhotometricConfig(
        iterations=30, appearance_steps=10, batch_frames=2, render_resolution=48))
    stages = []
    result = track(synthetic["folder"], tmp_path / "out", head, config,
                   progress=lambda stage, step, total, message="": stages.append(stage))
    assert "photometric" in stages
    report = json.loads((tmp_path / "out/keyface_track.json").read_text())
    assert report["photometric_l1"]["last_steps"] < report["photometric_l1"]["first_steps"]
    assert result.reprojection_px < 2.0
    np.testing.assert_array_equal(load_vhap_export(tmp_path / "out").sequence.jaw, result.sequence.jaw)
    before = track(synthetic["folder"], tmp_path / "before", head, landmarks_only)
    moved = np.abs(result.sequence.expression - before.sequence.expression).max()
    assert 1e-4 < moved < 1.0  # the geometry was refined, not thrown away


def test_config_validation(head, tmp_path):
    with pytest.raises(ValueError, match="resolution must be an integer in 16..4096"):
        TrackConfig(resolution=8)
    with pytest.raises(ValueError, match="crop_scale must be >= 1"):
        TrackConfig(crop_scale=0.5)
    with pytest.raises(TypeError, match="head must be a FlameModel"):
        track(tmp_path, tmp_path / "out", "builtin", TrackConfig())
    with pytest.raises(TrackInputError, match="no such file or folder"):
        track(tmp_path / "missing.mp4", tmp_path / "out", head, TrackConfig())
