"""Synthetic reconstruction benchmark: held-out PSNR / SSIM against iterations and seconds, prints JSON lines.

The subject is `backend.track.synthetic.synthetic_subject`: the built-in head with its procedural texture and its
own random identity, talking / blinking / turning (`talking_head`), rendered by the mesh renderer (2x supersampled)
over white. It is reconstructed

(a) `ground_truth`: from the exact FLAME parameters and camera (eyelids included), frames and masks in memory;
(b) `tracker`: its frames (rendered larger, over grey) written as a PNG folder and tracked by
    `backend.track.pipeline.track` (landmarks + MediaPipe segmentation), then reconstructed from the tracked folder.

Metric (`backend.reconstruct.evaluate`): PSNR / SSIM over the full frame, RGB, on the held-out last 10 % of the
frames, at the training resolution, the render clamped and composited over the background; for (b) the frames
are the tracker's own crops. Before each evaluation the held-out frames' expression and pose are fitted to them
with the avatar frozen (`backend.reconstruct.frame_fit`, `--holdout-fit` Adam steps, the `reconstruct` job's
default; the same in (a) and (b)): "psnr_holdout" / "ssim_holdout" / "psnr_holdout_masked" are after that fit,
"psnr_holdout_tracked" with the given (true or tracked) parameters. "seconds" is optimisation time (evaluations
and fits excluded), "fit_seconds" the fit's time at that point, "total_seconds" wall time including the subject /
tracking / set-up / evaluations.

    .venv/bin/python bench/recon_synthetic.py --quick      # 128², 40 frames, 300 steps: fits a 2-core CPU
    .venv/bin/python bench/recon_synthetic.py              # 512², 150 frames, 3000 steps (a GPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import PIL.Image
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.reconstruct import FrameDataset, FrameFitConfig, Trainer, fit_frames, initial_avatar  # noqa: E402
from backend.reconstruct.job import DEFAULT_HOLDOUT_FIT, ReconstructRequest, avatar_config, train_config  # noqa: E402
from backend.track.synthetic import as_uint8, synthetic_subject  # noqa: E402

MODES = {
    "quick": {"frames": 40, "resolution": 128, "iterations": 300, "evaluate_at": (25, 50, 100, 200, 300)},
    "full": {"frames": 150, "resolution": 512, "iterations": 3000, "evaluate_at": (100, 300, 1000, 2000, 3000)},
}
TRACKER_SOURCE_SCALE = 2
"""The tracker sees frames this many times larger than the training resolution (it crops the face itself)."""


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def optimise(dataset: FrameDataset, head, mode: dict, args: argparse.Namespace, part: str, mode_name: str,
             started: float, extra: dict) -> dict:
    """Train with the `reconstruct` job's settings, printing one JSON line per evaluation point."""
    seed, device = args.seed, args.device
    request = ReconstructRequest(source_kind="tracked", source=Path("."), resolution=mode["resolution"],
                                 iterations=mode["iterations"], seed=seed, appearance=args.appearance)
    avatar = initial_avatar(head.to(device), dataset, avatar_config(request), seed=seed)
    trainer = Trainer(avatar, dataset, train_config(request))
    optimising = 0.0
    record: dict = {}
    for target in mode["evaluate_at"]:
        tick = time.monotonic()
        while trainer.step_count < target:
            trainer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        optimising += time.monotonic() - tick
        tracked = trainer.evaluate()
        tick = time.monotonic()
        flame = fit_frames(trainer, dataset.holdout_indices, FrameFitConfig(steps=args.holdout_fit))
        fitting = time.monotonic() - tick
        metrics = trainer.evaluate(flame=flame)
        record = {"bench": "recon_synthetic", "mode": mode_name, "tracking": part, "iterations": trainer.step_count,
                  "seconds": round(optimising, 1), "psnr_holdout": round(metrics["psnr"], 2),
                  "ssim_holdout": round(metrics["ssim"], 4), "psnr_holdout_masked": None,
                  "psnr_holdout_tracked": round(tracked["psnr"], 2), "holdout_fit": args.holdout_fit,
                  "fit_seconds": round(fitting, 1),
                  "gaussians": avatar.n_gaussians, "appearance": args.appearance, "frames": len(dataset),
                  "holdout_frames": dataset.holdout,
                  "resolution": [dataset.width, dataset.height], "device": device,
                  "threads": torch.get_num_threads(), "total_seconds": round(time.monotonic() - started, 1), **extra}
        if dataset.masks is not None:
            record["psnr_holdout_masked"] = round(trainer.evaluate(region="mask", flame=flame)["psnr"], 2)
        emit(record)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128², 40 frames, 300 steps (2-core CPU budget)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on the CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--appearance", default="sh", choices=("sh", "neural"), help="the avatar's appearance")
    parser.add_argument("--holdout-fit", type=int, default=DEFAULT_HOLDOUT_FIT,
                        help="Adam steps fitting the held-out frames' expression and pose before each evaluation "
                             "(0: evaluate with the given parameters)")
    parser.add_argument("--skip-tracker", action="store_true", help="only part (a), ground-truth tracking")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "quick" if args.quick else "full"
    mode = MODES[name]
    started = time.monotonic()
    subject = synthetic_subject(mode["frames"], mode["resolution"], seed=args.seed + 1)
    dataset = FrameDataset.from_tensors(subject.images, subject.cameras, subject.sequence, masks=subject.masks,
                                        background=subject.background, composite=False)
    optimise(dataset, subject.head, mode, args, "ground_truth", name, started, {})
    if args.skip_tracker:
        return 0
    try:
        from backend.track.importers import load_tracked
        from backend.track.pipeline import TrackConfig, track
    except ImportError as error:
        emit({"bench": "recon_synthetic", "mode": name, "tracking": "tracker", "skipped": f"no tracker: {error}"})
        return 0
    started = time.monotonic()
    big = synthetic_subject(mode["frames"], mode["resolution"] * TRACKER_SOURCE_SCALE, seed=args.seed + 1,
                            background=(0.45, 0.47, 0.5))
    with tempfile.TemporaryDirectory(prefix="keyface-recon-bench-") as temp:
        frames = Path(temp) / "frames"
        frames.mkdir()
        for t, image in enumerate(big.images):
            PIL.Image.fromarray(as_uint8(image)).save(frames / f"{t:05d}.png")
        result = track(frames, Path(temp) / "tracked", big.head,
                       TrackConfig(resolution=mode["resolution"], seed=args.seed, device=args.device,
                                   folder_fps=big.sequence.fps))
        tracked = load_tracked(result.folder)
        dataset = FrameDataset.from_tracked(tracked, resolution=mode["resolution"])
        extra = {"reprojection_px": round(float(result.reprojection_px), 3),
                 "tracker_seconds": round(float(result.seconds), 1), "frames_skipped": len(result.frames_skipped)}
        optimise(dataset, big.head, mode, args, "tracker", name, started, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
