"""Frames from videos, folders and single images (`backend.track.video`): sampling, limits, clear errors."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.track.video import FrameSource, TrackInputError, natural_key, read_image, sample_times


def _frames(count: int, height: int, width: int) -> np.ndarray:
    """[T, H, W, 3] frames whose red channel encodes the frame number (20 per frame)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0] = (np.arange(count) * 20)[:, None, None]
    frames[..., 1] = 128
    return frames


def _video(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    return path


def test_video_frames_in_order_with_ids(tmp_path):
    source = FrameSource(_video(tmp_path / "clip.mp4", _frames(6, 48, 64)))
    frames = list(source)
    assert source.kind == "video" and source.fps == 10.0
    assert [f.index for f in frames] == list(range(6))
    assert [f.name for f in frames] == [f"frame_{i:05d}" for i in range(6)]
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    red = [float(f.image[..., 0].mean()) for f in frames]
    np.testing.assert_allclose(red, np.arange(6) * 20, atol=4)  # lossy codec
    assert [f.index for f in source] == list(range(6))  # iterable again, same frames


def test_video_sampling_and_max_frames(tmp_path):
    path = _video(tmp_path / "clip.mp4", _frames(10, 32, 32))
    sampled = FrameSource(path, fps=4)
    assert sampled.fps == 4.0 and [f.index for f in sampled] == [0, 3, 5, 8]  # first frame at or after k / 4 s
    assert [f.index for f in FrameSource(path, max_frames=3)] == [0, 1, 2]
    assert FrameSource(path, fps=100).fps == 10.0  # never faster than the source


def test_sample_times():
    times = np.arange(10) / 10.0
    assert sample_times(times, None).all()
    assert np.flatnonzero(sample_times(times, 4.0)).tolist() == [0, 3, 5, 8]
    assert np.flatnonzero(sample_times(times, 10.0)).tolist() == list(range(10))


def test_portrait_video_keeps_its_orientation(tmp_path):
    frames = list(FrameSource(_video(tmp_path / "tall.mp4", _frames(2, 96, 40))))
    assert frames[0].image.shape == (96, 40, 3)


def test_rotation_metadata_is_applied(tmp_path):
    """A phone video stores landscape pixels plus a rotation; ffmpeg turns it upright."""
    plain = _video(tmp_path / "plain.mp4", _frames(2, 40, 96))
    rotated = tmp_path / "rotated.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i",
               str(plain), "-c", "copy", str(rotated)]
    subprocess.run(command, check=True, capture_output=True)
    assert next(iter(FrameSource(rotated))).image.shape == (96, 40, 3)


def test_video_errors_are_clear(tmp_path):
    with pytest.raises(TrackInputError, match="no such file or folder"):
        FrameSource(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(TrackInputError, match="the file is empty"):
        FrameSource(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    with pytest.raises(TrackInputError, match="cannot be decoded as a video") as info:
        FrameSource(tmp_path / "junk.mp4")
    assert info.value.path == tmp_path / "junk.mp4" and isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="fps must be a number"):
        FrameSource(tmp_path / "junk.mp4", fps=0)
    with pytest.raises(ValueError, match="max_frames must be an integer"):
        FrameSource(tmp_path / "junk.mp4", max_frames=0)


def test_folder_natural_order_mixed_sizes_and_formats(tmp_path):
    rgb = _frames(1, 30, 40)[0]
    iio.imwrite(tmp_path / "img10.png", rgb)
    iio.imwrite(tmp_path / "img2.jpg", _frames(1, 50, 20)[0])
    iio.imwrite(tmp_path / "img1.PNG", np.full((12, 16), 200, np.uint8))  # grey
    iio.imwrite(tmp_path / "img3.png", np.full((8, 8, 4), 90, np.uint8))  # RGBA
    (tmp_path / "notes.txt").write_text("ignored")
    source = FrameSource(tmp_path)
    frames = list(source)
    assert source.kind == "folder" and source.expected_frames == 4
    assert [f.name for f in frames] == ["img1", "img2", "img3", "img10"]
    assert [f.image.shape for f in frames] == [(12, 16, 3), (50, 20, 3), (8, 8, 3), (30, 40, 3)]
    assert frames[0].image.max() == 200 and frames[2].image[0, 0].tolist() == [90, 90, 90]
    assert [f.name for f in FrameSource(tmp_path, fps=12.5)] == ["img1", "img3"]  # 25 fps folder, every other


def test_sixteen_bit_and_exif_rotation(tmp_path):
    iio.imwrite(tmp_path / "deep.png", np.full((4, 6), 65535, np.uint16))
    assert read_image(tmp_path / "deep.png").tolist() == np.full((4, 6, 3), 255).tolist()
    image = Image.fromarray(_frames(1, 10, 30)[0])
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (30, 10, 3)


def test_folder_errors_and_unreadable_images(tmp_path):
    with pytest.raises(TrackInputError, match="has no .png/.jpg/.jpeg images"):
        FrameSource(tmp_path)
    iio.imwrite(tmp_path / "a.png", _frames(1, 8, 8)[0])
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    frames = list(FrameSource(tmp_path))
    assert frames[0].image is not None
    assert frames[1].image is None and "PNG or JPEG" in frames[1].problem
    with pytest.raises(TrackInputError, match="b.png: not a readable PNG or JPEG"):
        list(FrameSource(tmp_path / "b.png"))  # a single image is the whole source: fatal


def test_one_image_is_a_one_frame_source(tmp_path):
    iio.imwrite(tmp_path / "face.jpg", _frames(1, 20, 10)[0])
    source = FrameSource(tmp_path / "face.jpg")
    assert source.kind == "image" and [f.name for f in source] == ["face"]


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    import backend.track.video as video

    monkeypatch.setattr(video, "MAX_SIDE", 16)
    iio.imwrite(tmp_path / "big.png", np.zeros((8, 32, 3), np.uint8))
    with pytest.raises(TrackInputError, match="32 x 8 pixels, larger than 16 x 16"):
        read_image(tmp_path / "big.png")


def test_frame_count_limit(tmp_path, monkeypatch):
    import backend.track.video as video

    for i in range(5):
        iio.imwrite(tmp_path / f"{i}.png", _frames(1, 8, 8)[0])
    monkeypatch.setattr(video, "MAX_SOURCE_FRAMES", 3)
    assert [f.name for f in FrameSource(tmp_path, max_frames=2)] == ["0", "1"]
    with pytest.raises(TrackInputError, match="more than 3 frames to track. Lower the sampling rate"):
        list(FrameSource(tmp_path))


def test_natural_key():
    names = ["f10.png", "f2.png", "F1.png", "f2b.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f2.png", "f2b.png", "f10.png"]


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clean")
    iio.imwrite(folder / "a.png", _frames(1, 16, 16)[0])
    iio.imwrite(folder / "a.jpg", _frames(1, 16, 16)[0])
    _video(folder / "a.mp4", _frames(3, 16, 16))
    return {name: (folder / name).read_bytes() for name in ("a.png", "a.jpg", "a.mp4")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_damaged_files_give_frames_or_track_input_errors(clean_files, damage, data):
    name = data.draw(st.sampled_from(sorted(clean_files)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(clean_files[name])
        damage(path, data, data.draw(st.sampled_from(["truncate", "flip"])))
        try:
            for frame in FrameSource(path):
                assert frame.image is not None and frame.image.dtype == np.uint8 and frame.image.ndim == 3
        except TrackInputError as error:
            assert str(path) in str(error)
