"""Writers that create small datasets in each tracker's exact on-disk format, with the ground truth.

Each writer takes a folder, writes the files the way the upstream project does (key names, shapes,
dtypes, camera conventions) and returns the truth in Keyface conventions (axis-angle, OpenCV cameras),
so tests compare what an importer reads against what was meant. Exposed through the `formats` fixture
(session-scoped, so hypothesis tests can use it).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

FLIP_YZ = np.diag([1.0, -1.0, -1.0])
FLIP_XY = np.diag([-1.0, -1.0, 1.0])


def random_params(rng: np.random.Generator, frames: int, shape_dims: int = 300, expr_dims: int = 100) -> dict:
    """Truth FLAME parameters in Keyface names (axis-angle radians, metres)."""
    return {
        "shape": rng.normal(0.0, 0.5, shape_dims),
        "expression": rng.normal(0.0, 0.5, (frames, expr_dims)),
        "rotation": rng.normal(0.0, 0.2, (frames, 3)),
        "neck": rng.normal(0.0, 0.1, (frames, 3)),
        "jaw": np.abs(rng.normal(0.0, 0.1, (frames, 3))),
        "eyes": rng.normal(0.0, 0.1, (frames, 6)),
        "translation": rng.normal(0.0, 0.05, (frames, 3)),
        "eyelids": rng.uniform(0.0, 1.0, (frames, 2)),
    }


def random_camera(rng: np.random.Generator, width: int = 512, height: int = 384) -> dict:
    """A truth OpenCV camera: K in pixels, a rigid world-to-camera, the image size."""
    w2c = np.eye(4)
    w2c[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, 0.5, 3)).as_matrix()
    w2c[:3, 3] = rng.normal(0.0, 0.2, 3) + [0.0, 0.0, 1.0]
    fx = rng.uniform(800.0, 1500.0)
    K = np.array([[fx, 0.0, width / 2 + rng.uniform(-20, 20)], [0.0, fx * rng.uniform(0.95, 1.05),
                  height / 2 + rng.uniform(-20, 20)], [0.0, 0.0, 1.0]])
    return {"K": K, "w2c": w2c, "width": width, "height": height}


def rotation_6d(rotvec: np.ndarray) -> np.ndarray:
    """PyTorch3D `matrix_to_rotation_6d`: the first two ROWS of the matrix, [..., 6]."""
    matrix = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix()
    return matrix[:, :2, :].reshape(*rotvec.shape[:-1], 6)


def write_vhap_export(folder: Path, rng: np.random.Generator, frames: int = 3, cameras: tuple[int, ...] = (0,),
                      static_offset: bool = True, splits: bool = False) -> dict:
    """VHAP `export_as_nerf_dataset.py` (param mode): transforms.json + flame_param/%05d.npz."""
    params = random_params(rng, frames)
    offset = rng.normal(0.0, 0.001, (1, 5143, 3)).astype(np.float32)
    truth_cams = {c: random_camera(rng) for c in cameras}
    db = {"frames": [], "timestep_indices": list(range(frames)), "camera_indices": list(cameras)}
    (folder / "flame_param").mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        npz = {"translation": params["translation"][[t]], "rotation": params["rotation"][[t]],
               "neck_pose": params["neck"][[t]], "jaw_pose": params["jaw"][[t]], "eyes_pose": params["eyes"][[t]],
               "shape": params["shape"], "expr": params["expression"][[t]]}
        if static_offset:
            npz["static_offset"] = offset
        np.savez(folder / "flame_param" / f"{t:05d}.npz", **{k: np.asarray(v, np.float32) for k, v in npz.items()})
        for c, cam in truth_cams.items():
            c2w_cv = np.linalg.inv(cam["w2c"])
            c2w_gl = c2w_cv.copy()
            c2w_gl[:3, :3] = c2w_cv[:3, :3] @ FLIP_YZ  # OpenCV -> OpenGL camera axes
            K = cam["K"]
            db["frames"].append({
                "timestep_index": t, "timestep_index_original": t, "timestep_id": f"frame_{t:05d}",
                "camera_index": c, "camera_id": f"22{c:04d}",
                "cx": K[0, 2], "cy": cam["height"] - K[1, 2],  # VHAP's OpenGL principal point counts from the bottom
                "fl_x": K[0, 0], "fl_y": K[1, 1], "h": cam["height"], "w": cam["width"],
                "camera_angle_x": 2 * np.arctan(cam["width"] / (2 * K[0, 0])),
                "camera_angle_y": 2 * np.arctan(cam["height"] / (2 * K[1, 1])),
                "transform_matrix": c2w_gl.tolist(),
                "file_path": f"images/{t:05d}_{c:02d}.png", "fg_mask_path": f"fg_masks/{t:05d}_{c:02d}.png",
                "flame_param_path": f"flame_param/{t:05d}.npz",
            })
    last = db["frames"][-1]
    db.update({k: last[k] for k in ("cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x", "camera_angle_y")})
    if splits:
        half = [f for f in db["frames"] if f["timestep_index"] < frames // 2 + 1]
        rest = [f for f in db["frames"] if f not in half]
        for name, part in (("train", half), ("val", []), ("test", rest)):
            (folder / f"transforms_{name}.json").write_text(json.dumps({**db, "frames": part}, indent=4))
    else:
        (folder / "transforms.json").write_text(json.dumps(db, indent=4))
    return {"params": params, "cameras": truth_cams, "static_offset": offset[0]}


def write_vhap_tracked(path: Path, rng: np.random.Generator, frames: int = 4, focal: bool = True) -> dict:
    """VHAP `FlameTracker.save_result`: one npz for the whole sequence."""
    params = random_params(rng, frames)
    data = {"rotation": params["rotation"], "translation": params["translation"], "neck_pose": params["neck"],
            "jaw_pose": params["jaw"], "eyes_pose": params["eyes"], "shape": params["shape"],
            "expr": params["expression"], "timestep_id": np.array([f"{i:05d}" for i in range(frames)]),
            "n_processed_frames": np.array(frames), "tex": np.zeros(100, np.float32),
            "lights": np.zeros((9, 3), np.float32), "static_offset": np.zeros((1, 5143, 3), np.float32),
            "image_size": np.array([480, 640])}
    if focal:
        data["focal_length"] = np.array([1.7], np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in data.items()})
    return {"params": params, "height": 480, "width": 640, "focal": 1.7}


def write_metrical(folder: Path, rng: np.random.Generator, frames: int = 3, opencv: bool = True,
                   tensors: bool = False, images: bool = True) -> dict:
    """metrical-tracker `Tracker.save_checkpoint`: checkpoint/%05d.frame (+ input/%05d.png, mesh/%05d.ply)."""
    params = random_params(rng, frames)
    height, width = 512, 512
    cams = [random_camera(rng, width, height) for _ in range(frames)]
    for cam in cams:  # PyTorch3D has one focal length for both axes here (fl [1, 1])
        cam["K"][1, 1] = cam["K"][0, 0]
    (folder / "checkpoint").mkdir(parents=True, exist_ok=True)
    for t, cam in enumerate(cams):
        frame_id = f"{t:05d}"
        scale = min(height, width) / 2
        K, w2c = cam["K"], cam["w2c"]
        camera = {  # the same camera in PyTorch3D's convention (row vectors, x left, y up, NDC intrinsics)
            "R": (w2c[:3, :3].T @ FLIP_XY)[:2, :].reshape(1, 6),  # R_p3d = R_cv^T F; 6D = its first two rows
            "t": (FLIP_XY @ w2c[:3, 3])[None],
            "fl": np.array([[K[0, 0] / scale]]),
            "pp": np.array([[(width / 2 - K[0, 2]) / scale, (height / 2 - K[1, 2]) / scale]]),
        }
        payload = {
            "flame": {"exp": params["expression"][[t]], "shape": params["shape"][None],
                      "tex": np.zeros((1, 50)), "sh": np.zeros((1, 9, 3)),
                      "eyes": rotation_6d(params["eyes"][t].reshape(2, 3)).reshape(1, 12),
                      "eyelids": params["eyelids"][[t]], "jaw": rotation_6d(params["jaw"][[t]])},
            "camera": camera,
            "img_size": np.array([height, width]),
            "frame_id": frame_id,
            "global_step": 100 * t,
        }
        if opencv:
            payload["opencv"] = {"R": w2c[None, :3, :3], "t": w2c[None, :3, 3], "K": K[None]}
        convert = (lambda a: torch.from_numpy(np.asarray(a, np.float32))) if tensors else \
            (lambda a: np.asarray(a, np.float32))
        payload = {k: ({kk: convert(vv) for kk, vv in v.items()} if isinstance(v, dict) else v)
                   for k, v in payload.items()}
        payload["img_size"] = np.array([height, width])
        torch.save(payload, folder / "checkpoint" / f"{frame_id}.frame")
        if images:
            for sub, ext in (("input", "png"), ("mesh", "ply")):
                (folder / sub).mkdir(exist_ok=True)
                (folder / sub / f"{frame_id}.{ext}").write_bytes(b"")
    return {"params": params, "cameras": cams}


def write_insta(folder: Path, rng: np.random.Generator, frames: int = 4, null_at: int | None = None,
                splits: bool = False) -> dict:
    """INSTA `scripts/transforms.py`: transforms*.json (floats at the top level) + flame/exp/%05d.txt."""
    params = random_params(rng, frames)
    cam = random_camera(rng, 512, 512)
    cams = [dict(cam, w2c=random_camera(rng)["w2c"]) for _ in range(frames)]
    K = cam["K"]
    data = {"w": 512.0, "h": 512.0, "cx": K[0, 2], "cy": K[1, 2], "fl_x": K[0, 0], "fl_y": K[1, 1],
            "camera_angle_x": 0.5, "camera_angle_y": 0.5, "x_fov": 28.6, "y_fov": 28.6,
            "integer_depth_scale": 0.001, "frames": []}
    (folder / "flame" / "exp").mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        frame_id = f"{t:05d}"
        np.savetxt(folder / "flame" / "exp" / f"{frame_id}.txt", params["expression"][t], fmt="%.8f")
        data["frames"].append(None if t == null_at else {
            "transform_matrix": np.linalg.inv(cams[t]["w2c"]).tolist(),  # camera-to-world, OpenCV axes
            "file_path": f"images/{frame_id}.png", "mesh_path": f"meshes/{frame_id}.obj",
            "exp_path": f"flame/exp/{frame_id}.txt", "depth_path": f"depth/{frame_id}.png",
            "seg_mask_path": f"seg_mask/{frame_id}.png"})
    if splits:
        listed = data["frames"]
        for name, part in (("train", listed[:-2]), ("test", listed[-2:]), ("val", listed[-1:])):
            (folder / f"transforms_{name}.json").write_text(json.dumps({**data, "frames": part}, indent=4))
    else:
        (folder / "transforms.json").write_text(json.dumps(data, indent=4, sort_keys=True))
    return {"params": params, "cameras": cams}


@pytest.fixture(scope="session")
def formats() -> types.SimpleNamespace:
    """The writers above, for tests (including hypothesis tests) that build datasets on disk."""
    return types.SimpleNamespace(vhap_export=write_vhap_export, vhap_tracked=write_vhap_tracked,
                                 metrical=write_metrical, insta=write_insta)
