"""Job `geometry_maps` through a real backend: a FLAME file the test writes (a sphere head) and the built-in head."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.flame import BUILTIN_HEAD_PATH
from shared_client import Client, JobFailed, RequestFailed
from shared_proto import Camera, ErrorCode, FlameSequence, FrameReply

RADIUS, DISTANCE, FOCAL, SIZE = 0.1, 0.5, 150.0, 96


def sphere_flame_npz(path) -> str:
    """A FLAME-layout .npz whose template is a sphere of RADIUS at the origin (all skinning on the root)."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    count = len(vertices)
    weights = np.zeros((count, 5))
    weights[:, 0] = 1.0
    np.savez(path, v_template=vertices, f=faces, shapedirs=np.zeros((count, 3, 400)),
             posedirs=np.zeros((count, 3, 36)), J_regressor=np.full((5, count), 1.0 / count),
             kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), weights=weights)
    return str(path)


def still_sequence(frames: int, shape_dims: int = 10) -> FlameSequence:
    zeros = np.zeros
    jaw = zeros((frames, 3))
    jaw[:, 0] = np.linspace(0, 0.3, frames)
    return FlameSequence(shape=zeros(shape_dims), expression=zeros((frames, 10)), rotation=zeros((frames, 3)),
                         neck=zeros((frames, 3)), jaw=jaw, eyes=zeros((frames, 6)), translation=zeros((frames, 3)),
                         fps=25, frame_start=100)


def front_camera(distance: float = DISTANCE) -> Camera:
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # looking down -z at a head facing +z, y up in the world
    pose[2, 3] = distance
    return Camera(K=[[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1]], world_to_camera=pose, width=SIZE,
                  height=SIZE)


def collect(job) -> list[FrameReply]:
    return [reply for reply in job.replies(timeout=300) if isinstance(reply, FrameReply)]


def test_sphere_head_maps_match_the_geometry(shared_backend, tmp_path) -> None:
    spec = {"head": sphere_flame_npz(tmp_path / "sphere.npz"), "sequence": still_sequence(3).to_wire(),
            "camera": front_camera().to_wire(), "maps": ["depth", "normal", "render"]}
    with Client(shared_backend.endpoint, timeout=30) as client:
        job = client.submit("geometry_maps", spec)
        frames = collect(job)
        assert job.wait()["frames"] == 3
    assert [f.index for f in frames] == list(range(9))
    assert [(f.meta["frame"], f.meta["map"]) for f in frames[:3]] == [(100, "depth"), (100, "normal"), (100, "render")]
    depth, normal, render = (f.image for f in frames[:3])
    centre = SIZE // 2
    assert depth[centre, centre, 0] >= 250 and depth[centre, centre, 3] == 255  # nearest point is white
    assert depth[0, 0].tolist() == [0, 0, 0, 0]  # background: black and transparent
    expected_radius = FOCAL * RADIUS / np.sqrt(DISTANCE**2 - RADIUS**2)
    covered = (depth[..., 3] > 0).sum()
    assert abs(np.sqrt(covered / np.pi) - expected_radius) < 1.5  # silhouette radius in pixels
    assert normal[centre, centre, 2] > 240 and normal[centre, centre, :2].max() < 20  # facing the camera: blue
    assert render[centre, centre, :3].min() > 60


def test_missing_flame_file_fails_with_model_missing(shared_backend) -> None:
    spec = {"head": "/nonexistent/generic_model.pkl", "sequence": still_sequence(1).to_wire(),
            "camera": front_camera().to_wire()}
    with Client(shared_backend.endpoint, timeout=30) as client:
        with pytest.raises(JobFailed) as info:
            client.submit("geometry_maps", spec).wait(timeout=120)
    assert info.value.code is ErrorCode.MODEL_MISSING
    assert "generic_model.pkl" in info.value.message and "flame.is.tue.mpg.de" in info.value.hint


@pytest.mark.parametrize("change, fragment", [
    ({"maps": ["depth", "x-ray"]}, "spec.maps"),
    ({"camera": None}, "Camera must be an object"),
    ({"cameras": []}, "exactly one of"),
    ({"sequence": {"shape": [0.0]}}, "missing fields"),
])
def test_bad_specs_are_rejected_before_queueing(shared_backend, change, fragment) -> None:
    spec = {"sequence": still_sequence(2).to_wire(), "camera": front_camera().to_wire(), **change}
    with Client(shared_backend.endpoint, timeout=30) as client, pytest.raises(RequestFailed) as info:
        client.submit("geometry_maps", spec)
    assert info.value.code in (ErrorCode.BAD_SPEC, ErrorCode.BAD_VALUE) and fragment in info.value.message


@pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")
def test_builtin_head_renders_textured(shared_backend) -> None:
    spec = {"sequence": still_sequence(2).to_wire(), "camera": front_camera(0.6).to_wire(),
            "maps": ["render", "uv"]}
    with Client(shared_backend.endpoint, timeout=30) as client:
        frames = collect(client.submit("geometry_maps", spec))
    render = frames[0].image
    coverage = (render[..., 3] > 0).mean()
    assert 0.05 < coverage < 0.9
    assert render[render[..., 3] > 0, :3].std(axis=0).max() > 5  # textured, not flat
