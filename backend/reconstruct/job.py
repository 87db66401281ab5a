"""Job `reconstruct` and its core `reconstruct()`, which `python -m backend reconstruct` runs too.

Spec:
    exactly one of `video` (a video file), `frames` (a folder of images) or `tracked` (a tracked dataset: VHAP /
    GaussianAvatars export, VHAP npz, metrical-tracker, INSTA), a path on the backend's machine;
    head: 'builtin' (default) or the path of a FLAME file; resolution (longer image side, default 512);
    iterations (default 3000); max_frames (default 300; evenly spaced frames are kept); seed (default 0);
    appearance 'sh' (default: fast, exports to any splat viewer) or 'neural' (PortraitGen's Neural Gaussian
    Texture, what the editing stage prefers); holdout_fit (default 30): Adam steps fitting the held-out frames'
    expression and pose before evaluation, the avatar frozen (`frame_fit`), 0: evaluate with the tracked ones.

Work folder (`ctx.workdir`, or the CLI's `--out`): `tracked/` (tracker output for video / frames),
`checkpoints/step_*.safetensors`, `report.json`, `run.json` (the run's key). A run with the same key resumes
from the newest checkpoint; the job also adopts the checkpoints and tracking of an earlier job of the workspace
with the same key, so resubmitting a cancelled, failed or interrupted spec continues where it stopped.
The avatar is written atomically to `<workspace>/avatars/<job id>/avatar.safetensors` (render it with
`avatar: "avatars/<job id>"`), only once training and evaluation have finished.

Result (also the CLI's final JSON line): {psnr_holdout, ssim_holdout, frames, gaussians, seconds, avatar}, plus
`iterations`, `resumed_from`, `holdout_fit`, `psnr_holdout_tracked` (the held-out frames with their tracked
expression and pose: equal to psnr_holdout when holdout_fit is 0) and, when the tracker ran, `reprojection_px`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from shared_proto import ErrorCode

from ..atomic import atomic_write_text
from ..avatar import AvatarConfig, save_package
from ..errors import JobCancelled, JobError
from ..flame.heads import BUILTIN, load_head
from ..job_spec import check_keys, int_field
from ..track.importers import load_tracked
from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .dataset import FrameDataset
from .frame_fit import FrameFitConfig, fit_frames
from .trainer import TrainConfig, Trainer, initial_avatar

SOURCES = ("video", "frames", "tracked")
APPEARANCES = ("sh", "neural")
DEFAULT_RESOLUTION = 512
DEFAULT_ITERATIONS = 3000
DEFAULT_MAX_FRAMES = 300
MAX_ITERATIONS = 1_000_000
DEFAULT_HOLDOUT_FIT = FrameFitConfig().steps
"""Adam steps fitting the held-out frames' expression and pose before evaluation (`frame_fit`)."""
CHECKPOINT_EVERY = 200
"""Steps between checkpoints (a cancel or Ctrl-C also writes one)."""
PREVIEW_EVERY = 100
"""Steps between preview frames."""
MODELS_ENV = "KEYFACE_MODELS"
"""Environment variable naming the local model folder (shared with the edit stage)."""
LPIPS_FOLDER = "lpips"
"""Sub-folder of $KEYFACE_MODELS holding the LPIPS weight files (`lpips.py`: vgg16-397923af.pth, vgg.pth)."""
Progress = Callable[..., None]
"""`progress(stage, step, total, message, preview=None)`, as `JobContext.progress` (it may raise JobCancelled)."""


@dataclasses.dataclass(frozen=True)
class ReconstructRequest:
    """One reconstruction: where the frames come from and how hard to optimise."""

    source_kind: str
    """'video', 'frames' or 'tracked'."""
    source: Path
    """The video file, image folder or tracked dataset."""
    head: str = BUILTIN
    """'builtin' or a FLAME file."""
    resolution: int = DEFAULT_RESOLUTION
    """Longer side of the training images (frames are never enlarged)."""
    iterations: int = DEFAULT_ITERATIONS
    """Optimisation steps."""
    max_frames: int = DEFAULT_MAX_FRAMES
    """At most this many frames (evenly spaced over a tracked dataset; the first ones of a video)."""
    seed: int = 0
    """Seed of the initial avatar and of the trainer's generator."""
    appearance: str = "sh"
    """'sh' or 'neural'."""
    holdout_fit: int = DEFAULT_HOLDOUT_FIT
    """Adam steps fitting the held-out frames' expression and pose (avatar frozen) before evaluation; 0: none."""

    def key(self) -> str:
        """sha256 naming the run: equal requests resume each other's checkpoints (`holdout_fit` only changes the
        evaluation, so it is not part of the key)."""
        fields = {**dataclasses.asdict(self), "source": str(self.source)}
        fields.pop("holdout_fit")
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def parse_request(spec: dict[str, Any]) -> ReconstructRequest:
    """Validated request from a job spec; raises ValueError naming the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("the reconstruct spec must be an object")
    check_keys(spec, {*SOURCES, "head", "resolution", "iterations", "max_frames", "seed", "appearance",
                      "holdout_fit"}, "reconstruct")
    given = [name for name in SOURCES if name in spec]
    if len(given) != 1:
        raise ValueError(f"give exactly one of spec.video, spec.frames or spec.tracked, got {given or 'none'}")
    path = spec[given[0]]
    if not isinstance(path, str) or not path:
        raise ValueError(f"spec.{given[0]} must be a path on the backend's machine, got {path!r:.200}")
    head = spec.get("head", BUILTIN)
    if not isinstance(head, str) or not head:
        raise ValueError(f"spec.head must be 'builtin' or a FLAME file path, got {head!r:.200}")
    appearance = spec.get("appearance", "sh")
    if appearance not in APPEARANCES:
        raise ValueError(f"spec.appearance must be one of {list(APPEARANCES)}, got {appearance!r:.100}")
    return ReconstructRequest(
        source_kind=given[0], source=Path(path).expanduser().absolute(), head=head,
        resolution=int_field(spec, "resolution", DEFAULT_RESOLUTION, 16, 4096),
        iterations=int_field(spec, "iterations", DEFAULT_ITERATIONS, 1, MAX_ITERATIONS),
        max_frames=int_field(spec, "max_frames", DEFAULT_MAX_FRAMES, 2, 100_000),
        seed=int_field(spec, "seed", 0, 0, 2**31 - 1), appearance=appearance,
        holdout_fit=int_field(spec, "holdout_fit", DEFAULT_HOLDOUT_FIT, 0, 10_000))


def avatar_config(request: ReconstructRequest) -> AvatarConfig:
    """The avatar a request trains: Gaussians scale with the image area (0.5 per pixel of a square frame,
    between 2,000 and 100,000; densification adds more), SH degree 1 or a 16-channel neural texture."""
    count = int(min(100_000, max(2_000, round(0.5 * request.resolution ** 2))))
    if request.appearance == "neural":
        return AvatarConfig(appearance="neural", feature_dim=16, num_gaussians=count)
    return AvatarConfig(appearance="sh", sh_degree=1, num_gaussians=count)


def lpips_folder(environ: Mapping[str, str] | None = None) -> str | None:
    """`$KEYFACE_MODELS/lpips` when that folder exists (LPIPS then trains; a missing file in it is a
    ModelMissingError naming it), else None (no LPIPS term). Nothing is downloaded."""
    environ = os.environ if environ is None else environ
    if not environ.get(MODELS_ENV):
        return None
    folder = Path(environ[MODELS_ENV]).expanduser() / LPIPS_FOLDER
    return str(folder) if folder.is_dir() else None


def train_config(request: ReconstructRequest) -> TrainConfig:
    """The optimisation schedule: densification over the middle of the run (from 20 % to 70 % of it); LPIPS when
    its weights are installed (`lpips_folder`). The `flame` group stays off: with ground-truth parameters it
    moved the training frames' poses enough that renders with the given parameters lost 4 dB (README)."""
    n = request.iterations
    return TrainConfig(iterations=n, seed=request.seed, densify_from=max(1, n // 5), densify_until=max(2, 7 * n // 10),
                       densify_every=max(1, n // 10), lpips_weights=lpips_folder())


def reconstruct(request: ReconstructRequest, workdir: Path, avatar_path: Path, *, device: str, progress: Progress,
                avatar_name: str | None = None) -> dict[str, Any]:
    """Track (video / frames), optimise, evaluate on the held-out frames and write the avatar package.

    Args:
        request: what to reconstruct.
        workdir: tracking, checkpoints and report.json go here; an earlier run with the same key resumes.
        avatar_path: where the avatar package is written (atomically, at the end).
        device: torch device string.
        progress: progress callback (raising JobCancelled / KeyboardInterrupt stops the run after a checkpoint).
        avatar_name: how the result names the avatar (default: `avatar_path`).
    """
    started = time.monotonic()
    if not request.source.exists():
        raise JobError(ErrorCode.NOT_FOUND, f"{request.source_kind} {request.source} does not exist",
                       "the path is read on the backend's machine")
    workdir.mkdir(parents=True, exist_ok=True)
    key = request.key()
    atomic_write_text(workdir / "run.json", json.dumps({"key": key, "request": _request_json(request)}, indent=1))
    progress("load", 0, 1, f"head {request.head}")
    head = load_head(request.head, device)  # cached per device and shared: never moved or modified here
    tracked_path, tracking = _tracked_source(request, workdir, head, device, progress)
    try:
        tracked = load_tracked(tracked_path)
    except FileNotFoundError as error:
        raise JobError(ErrorCode.NOT_FOUND, str(error), "the path is read on the backend's machine") from None
    dataset = FrameDataset.from_tracked(tracked, resolution=request.resolution, max_frames=request.max_frames)
    progress("load", 1, 1, f"{len(dataset)} frames at {dataset.width}x{dataset.height}")
    avatar = initial_avatar(head, dataset, avatar_config(request), seed=request.seed)
    trainer = Trainer(avatar, dataset, train_config(request))
    checkpoints = workdir / "checkpoints"
    previous_seconds, resumed_from = _resume(trainer, checkpoints, key)
    extra = {"key": key, "seconds": previous_seconds}

    def checkpoint() -> None:
        extra["seconds"] = previous_seconds + time.monotonic() - started
        save_checkpoint(checkpoints, trainer.state_dict(), extra)

    total = request.iterations
    last_saved = trainer.step_count
    try:
        while trainer.step_count < total:
            terms = trainer.step()
            step = trainer.step_count
            preview = trainer.preview(dataset.train_indices[0]) if step % PREVIEW_EVERY == 0 or step == total \
                else None
            if step - last_saved >= CHECKPOINT_EVERY:
                checkpoint()
                last_saved = step
            progress("train", step, total, f"loss {terms['loss']:.4f}, {avatar.n_gaussians} Gaussians", preview)
    except (JobCancelled, KeyboardInterrupt):
        if trainer.step_count > last_saved:
            checkpoint()
        raise
    if trainer.step_count > last_saved:
        checkpoint()
    progress("evaluate", 0, 1, f"{dataset.holdout} held-out frames")
    tracked_metrics = trainer.evaluate()
    flame = fit_frames(trainer, dataset.holdout_indices, FrameFitConfig(steps=request.holdout_fit))
    metrics = trainer.evaluate(flame=flame)
    masked = trainer.evaluate(region="mask", flame=flame) if dataset.masks is not None else None
    progress("save", 0, 1, str(avatar_name or avatar_path))
    save_package(avatar, avatar_path)
    result = {"psnr_holdout": round(metrics["psnr"], 3), "ssim_holdout": round(metrics["ssim"], 4),
              "frames": len(dataset), "gaussians": avatar.n_gaussians,
              "seconds": round(previous_seconds + time.monotonic() - started, 2),
              "avatar": str(avatar_name or avatar_path), "iterations": trainer.step_count,
              "resumed_from": resumed_from, "holdout_fit": request.holdout_fit,
              "psnr_holdout_tracked": round(tracked_metrics["psnr"], 3)}
    if masked is not None:
        result["psnr_holdout_masked"] = round(masked["psnr"], 3)
    if tracking is not None:
        result["reprojection_px"] = tracking.get("reprojection_px")
    report = {**result, "holdout_frames": dataset.holdout, "width": dataset.width, "height": dataset.height,
              "request": _request_json(request), "tracking": tracking, "notes": list(tracked.notes)}
    atomic_write_text(workdir / "report.json", json.dumps(report, indent=1))
    progress("save", 1, 1, "done")
    return result


def _request_json(request: ReconstructRequest) -> dict[str, Any]:
    return {**dataclasses.asdict(request), "source": str(request.source)}


def _resume(trainer: Trainer, folder: Path, key: str) -> tuple[float, int | None]:
    """Load the newest usable checkpoint of this run into `trainer`: (seconds spent before, its step or None)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            state, extra = load_checkpoint(path)
        except CheckpointError:
            continue  # a damaged file: try the one before
        if extra.get("key") != key:
            return 0.0, None  # another run's checkpoints: start over (they are replaced as this run saves)
        trainer.load_state_dict(state)
        return float(extra.get("seconds", 0.0)), trainer.step_count
    return 0.0, None


def _tracked_source(request: ReconstructRequest, workdir: Path, head: Any, device: str, progress: Progress
                    ) -> tuple[Path, dict[str, Any] | None]:
    """The tracked dataset to read: `request.source` itself, or the tracker's output for a video / frames
    (tracked once into `workdir/tracked`; `workdir/tracking.json` marks it complete)."""
    if request.source_kind == "tracked":
        link = workdir / "tracked"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(request.source)  # the editing stage finds a job's frames at jobs/<id>/tracked
        return request.source, None
    marker, folder = workdir / "tracking.json", workdir / "tracked"
    if marker.is_file():
        return folder, json.loads(marker.read_text(encoding="utf-8"))
    try:
        from ..track.pipeline import TrackConfig, track
    except ImportError:
        raise JobError(ErrorCode.BAD_SPEC, f"this backend has no tracker, so it cannot reconstruct from "
                       f"{request.source_kind}", "track the video elsewhere (VHAP, metrical-tracker) and pass "
                       "the tracked folder as 'tracked'") from None
    config = TrackConfig(resolution=request.resolution, max_frames=request.max_frames, seed=request.seed,
                         device=device)
    result = track(request.source, folder, head, config, progress=progress)
    tracking = {"frames": len(result.frames_used), "skipped": [list(item) for item in result.frames_skipped],
                "reprojection_px": round(float(result.reprojection_px), 3), "seconds": round(float(result.seconds), 2)}
    atomic_write_text(marker, json.dumps(tracking, indent=1))
    return folder, tracking


def adopt_previous_run(workdir: Path, key: str) -> str | None:
    """Move the checkpoints and tracking of the earlier job (a sibling folder of `workdir`, not queued or running)
    whose `run.json` has `key` and whose newest checkpoint is furthest into `workdir`; returns that job's folder
    name, or None when there is none."""
    if list_checkpoints(workdir / "checkpoints"):
        return None
    best: tuple[int, Path] | None = None
    for sibling in workdir.parent.iterdir():
        if sibling == workdir or not (sibling / "run.json").is_file():
            continue
        try:
            if json.loads((sibling / "run.json").read_text(encoding="utf-8")).get("key") != key:
                continue
            record = sibling / "job.json"
            state = json.loads(record.read_text(encoding="utf-8")).get("state") if record.is_file() else None
        except (OSError, ValueError, AttributeError):
            continue
        if state in ("queued", "running"):
            continue  # a live job keeps its own checkpoints
        found = list_checkpoints(sibling / "checkpoints")
        step = int(found[-1].stem.split("_")[1]) if found else -1
        if found and (best is None or step > best[0]):
            best = (step, sibling)
    if best is None:
        return None
    for name in ("checkpoints", "tracked", "tracking.json"):
        if (best[1] / name).exists() and not (workdir / name).exists():
            os.replace(best[1] / name, workdir / name)
    return best[1].name


def validate(spec: dict[str, Any]) -> None:
    parse_request(spec)


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    request = parse_request(spec)
    adopted = adopt_previous_run(ctx.workdir, request.key())
    if adopted is not None:
        ctx.progress("load", 0, 1, f"resuming job {adopted}")
    avatar_path = Path(ctx.workspace.root) / "avatars" / ctx.job_id / "avatar.safetensors"
    return reconstruct(request, ctx.workdir, avatar_path, device=ctx.device, progress=ctx.progress,
                       avatar_name=f"avatars/{ctx.job_id}")
