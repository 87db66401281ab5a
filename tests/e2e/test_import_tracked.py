"""Job `import_tracked`: a VHAP tracking file on the backend's machine comes back as a FlameSequence + cameras."""

from __future__ import annotations

import numpy as np
import pytest

from shared_client import Client, JobFailed, RequestFailed
from shared_proto import Camera, ErrorCode, FlameSequence


def write_vhap_tracked(path, frames: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    params = {"rotation": rng.normal(size=(frames, 3)) * 0.1, "translation": rng.normal(size=(frames, 3)) * 0.01,
              "neck_pose": rng.normal(size=(frames, 3)) * 0.1, "jaw_pose": np.abs(rng.normal(size=(frames, 3))) * 0.1,
              "eyes_pose": rng.normal(size=(frames, 6)) * 0.1, "shape": rng.normal(size=300),
              "expr": rng.normal(size=(frames, 100)), "focal_length": np.array([1.5]),
              "image_size": np.array([256, 320]), "timestep_id": np.array([f"{i:05d}" for i in range(frames)])}
    np.savez(path, **{k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in params.items()})
    return params


def test_vhap_tracking_comes_back_in_keyface_conventions(shared_backend, tmp_path) -> None:
    params = write_vhap_tracked(tmp_path / "tracked_flame_params_30.npz")
    with Client(shared_backend.endpoint, timeout=30) as client:
        result = client.submit("import_tracked", {"path": str(tmp_path), "fps": 30}).wait(timeout=120)
    assert result["source"] == "vhap_tracked" and result["frames"] == 5
    sequence = FlameSequence.from_wire(result["sequence"])
    np.testing.assert_allclose(sequence.jaw, params["jaw_pose"], atol=1e-6)
    np.testing.assert_allclose(sequence.expression, params["expr"], atol=1e-6)
    assert sequence.fps == 30
    cameras = result["cameras"]
    assert cameras["K"].shape == (5, 3, 3) and cameras["world_to_camera"].shape == (5, 4, 4)
    camera = Camera(K=cameras["K"][0], world_to_camera=cameras["world_to_camera"][0], width=cameras["width"],
                    height=cameras["height"])
    assert camera.K[0, 0] == pytest.approx(1.5 * 320)  # VHAP's focal is normalised by max(H, W)
    assert camera.project(np.zeros((1, 3)))[0, 2] == pytest.approx(1.0)  # VHAP's camera sits 1 m from the origin


def test_missing_and_unrecognised_paths_fail_clearly(shared_backend, tmp_path) -> None:
    with Client(shared_backend.endpoint, timeout=30) as client:
        with pytest.raises(JobFailed) as info:
            client.submit("import_tracked", {"path": str(tmp_path / "nope")}).wait(timeout=120)
        assert info.value.code is ErrorCode.NOT_FOUND
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(JobFailed) as info:
            client.submit("import_tracked", {"path": str(tmp_path)}).wait(timeout=120)
        assert info.value.code is ErrorCode.BAD_SPEC and "looked for" in info.value.message
        with pytest.raises(RequestFailed):
            client.submit("import_tracked", {"path": 5})
