"""Monocular tracker on synthetic renders of the built-in head: landmark reprojection error and time.

Subject: Keyface's built-in head with a random identity (each shape coefficient ~ N(0, sigma^2), sigma 1 = the
head's own "one standard deviation"), animated by `talking_head` (speech-rate jaw, expression drift, head turns
up to about +-0.35 rad of yaw, blinks on the eyelid blendshapes, gaze), rendered textured (albedo x soft
frontal light) with the mesh rasterizer at 256 x 256 over a plain background, camera 0.6 m away with a focal
length of 1.8 x 256 px. The frames are written as PNGs and tracked with `backend.track.pipeline.track`
(MediaPipe landmarks, crop, landmark fit; `--photometric` adds the photometric refinement), crops at 256.

Prints one JSON line per run (nothing else on stdout):
  {"bench": "track_synthetic", ...}
    reprojection_gt_px: mean over frames of the mean L2 distance, over the 68 landmarks, between the fitted
        head's landmarks and the true head's landmarks, both projected into the 256 x 256 render (the fitted
        ones through the tracked crop camera and the crop box back to the render's pixels). Goal <= 2.
    detector_gt_px: the same distance between MediaPipe's points at the matched face-mesh indices and the true
        landmarks: how far the detections themselves are from the truth (the floor the fit starts from).
    reprojection_detections_px: `TrackResult.reprojection_px` (fitted landmarks vs detections, crop pixels).
    seconds: wall time of `track` (decode, landmarks, fit, crops, masks, writing).

    python bench/track_synthetic.py [--quick] [--frames T] [--sigma S] [--seeds N] [--first-seed K] [--photometric]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/render.py: spinning threads on a shared machine

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.flame import FlameModel  # noqa: E402
from backend.flame.motion import talking_head  # noqa: E402
from backend.track.landmarks import FaceLandmarker  # noqa: E402
from backend.track.pipeline import TrackConfig, track  # noqa: E402
from backend.track.synthetic import as_uint8, portrait_camera, project_landmarks, render_head  # noqa: E402

SIZE = 256


def run(head: FlameModel, frames: int, sigma: float, seed: int, photometric: bool, workdir: Path) -> dict:
    sequence = talking_head(frames, 25.0, shape=np.random.default_rng(seed).normal(0.0, sigma, head.n_shape),
                            n_expression=head.n_expression, seed=seed)
    camera = portrait_camera(SIZE)
    truth = project_landmarks(head, sequence, camera)  # [T, 68, 2]
    folder = workdir / f"frames_{seed}"
    folder.mkdir(parents=True)
    rendered = as_uint8(render_head(head, sequence, camera)[0])  # [T, H, W, 3]
    for t, frame in enumerate(rendered):
        iio.imwrite(folder / f"{t:05d}.png", frame)

    result = track(folder, workdir / f"tracked_{seed}", head, TrackConfig(resolution=SIZE, photometric=photometric))
    with torch.no_grad():
        fitted = head.forward_params(result.sequence).landmarks.double().numpy()  # [T', 68, 3]
    used = [int(name) for name in result.frames_used]
    in_render = np.stack([box.to_source(cam.project(points)[:, :2], SIZE)
                          for points, cam, box in zip(fitted, result.cameras, result.boxes)])  # [T', 68, 2]
    error = np.linalg.norm(in_render - truth[used], axis=-1).mean(axis=1)  # [T']

    indices = head.mediapipe_indices.numpy()
    with FaceLandmarker() as landmarker:
        detections = [landmarker.detect(rendered[t]) for t in used]
    detector = np.mean([np.linalg.norm(points[indices] - truth[t], axis=-1).mean()
                        for points, t in zip(detections, used)])
    return {"bench": "track_synthetic", "frames": frames, "frames_tracked": len(used), "resolution": SIZE,
            "shape_sigma": sigma, "seed": seed, "photometric": photometric,
            "reprojection_gt_px": round(float(error.mean()), 3), "reprojection_gt_max_frame_px":
            round(float(error.max()), 3), "detector_gt_px": round(float(detector), 3),
            "reprojection_detections_px": round(result.reprojection_px, 3), "focal": round(result.focal, 4),
            "focal_truth": 1.8, "seconds": round(result.seconds, 2), "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 20-frame clip (about a minute on 2 cores)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default 50, quick 20)")
    parser.add_argument("--sigma", type=float, default=1.0, help="std of the random shape coefficients")
    parser.add_argument("--seeds", type=int, default=None, help="number of clips (default 3, quick 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first clip (shape and motion)")
    parser.add_argument("--photometric", action="store_true", help="also run with the photometric refinement")
    args = parser.parse_args()
    frames = args.frames or (20 if args.quick else 50)
    seeds = args.seeds or (1 if args.quick else 3)
    head = FlameModel.builtin()
    with tempfile.TemporaryDirectory(prefix="keyface-track-bench-") as tmp:
        for seed in range(args.first_seed, args.first_seed + seeds):
            for photometric in ((False, True) if args.photometric else (False,)):
                print(json.dumps(run(head, frames, args.sigma, seed, photometric, Path(tmp) / str(photometric))),
                      flush=True)


if __name__ == "__main__":
    main()
