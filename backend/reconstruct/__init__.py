"""Avatar optimisation from a tracked sequence (GaussianAvatars / PortraitGen recipe); see README.md.

    dataset = FrameDataset.from_tracked(load_tracked(folder), resolution=512)
    avatar = initial_avatar(head, dataset, AvatarConfig(num_gaussians=100_000))
    trainer = Trainer(avatar, dataset, TrainConfig(iterations=3000))
    while trainer.step_count < trainer.config.iterations:
        terms = trainer.step()                     # {"loss", "l1", "dssim", "mask", ...}
    print(trainer.evaluate())                      # held-out PSNR / SSIM, full frame, tracked poses
    flame = fit_frames(trainer, trainer.dataset.holdout_indices)   # held-out expression / pose fitted, avatar frozen
    print(trainer.evaluate(flame=flame))
"""

from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_state, save_checkpoint, save_state
from .dataset import DatasetError, FrameDataset, frame_rows, holdout_count, sequence_rows
from .evaluate import evaluate_frames, frame_metrics
from .frame_fit import FrameFitConfig, fit_frames
from .lpips import LPIPS
from .trainer import GROUPS, TrainConfig, Trainer, initial_avatar

__all__ = [
    "GROUPS", "LPIPS", "CheckpointError", "DatasetError", "FrameDataset", "FrameFitConfig", "TrainConfig", "Trainer",
    "evaluate_frames", "fit_frames", "frame_metrics", "frame_rows", "holdout_count", "initial_avatar",
    "list_checkpoints", "load_checkpoint", "load_state", "save_checkpoint", "save_state", "sequence_rows",
]
