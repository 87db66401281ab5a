"""Job `edit`: distil a 2D edit into a reconstructed avatar by iterative dataset update; writes a new avatar (the
original is never modified). Spec and result: backend/edit/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from backend.atomic import atomic_path, atomic_write_text
from backend.errors import JobCancelled
from backend.job_spec import check_keys, int_field

from .config import DiffusionSettings, EditModels, EditorSettings, EditSchedule, LightSpec
from .editor import EDITOR_NAMES

KEYS = {"avatar", "editor", "instruction", "prompts", "reference", "light", "paint", "schedule", "dataset",
        "resolution", "seed", "models", "diffusion"}
MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest reference / painted image accepted."""
CHECKPOINT = "edit_checkpoint.safetensors"
"""The loop's checkpoint inside the job folder."""
CHECKPOINT_FORMAT = "keyface-edit-checkpoint"
"""Format of that file (`backend.reconstruct.checkpoint.save_state` of `EditLoop.state_dict()`)."""
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True, eq=False)
class EditSpec:
    """A validated `edit` spec (see README.md)."""

    avatar: str
    editor: str
    instruction: str | None
    prompts: tuple[tuple[int, int, str], ...]
    reference: Path | None
    light: LightSpec
    paint: dict[int, Path]
    schedule: EditSchedule
    dataset: str | None
    resolution: int
    seed: int
    models: dict[str, str]
    diffusion: DiffusionSettings


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise ValueError(f"spec.{name} must be a non-empty text of at most 2000 characters, got {value!r:.100}")
    return value


def _prompts(value: Any) -> tuple[tuple[int, int, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 10_000:
        raise ValueError(f"spec.prompts must be a list of {{frame_start, frame_end, text}}, got {value!r:.100}")
    prompts = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"frame_start", "frame_end", "text"}:
            raise ValueError(f"spec.prompts[{i}] must be {{frame_start, frame_end, text}}, got {item!r:.100}")
        start, end = item["frame_start"], item["frame_end"]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (start, end)) or end < start:
            raise ValueError(f"spec.prompts[{i}] needs integer frames 0 <= frame_start <= frame_end, got "
                             f"{start!r}..{end!r}")
        prompts.append((start, end, _text(item["text"], f"prompts[{i}].text")))
    return tuple(prompts)


def _light(value: Any) -> LightSpec:
    if value is None:
        return LightSpec()
    if not isinstance(value, dict):
        raise ValueError(f"spec.light must be an object, got {value!r:.100}")
    check_keys(value, {"preset", "direction", "colour", "intensity", "ambient"}, "spec.light")
    fields = dict(value)
    for name in ("direction", "colour"):
        if name in fields:
            item = fields[name]
            if not isinstance(item, list) or len(item) != 3 \
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in item):
                raise ValueError(f"spec.light.{name} must be 3 numbers, got {item!r:.100}")
            fields[name] = tuple(float(v) for v in item)
    return LightSpec(**fields)


def _path(value: Any, name: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"spec.{name} must be a path on the backend's machine, got {value!r:.100}")
    return Path(value).expanduser()


def parse_spec(spec: dict[str, Any]) -> EditSpec:
    """Validated spec; raises ValueError naming the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("the edit spec must be an object")
    check_keys(spec, KEYS, "edit")
    avatar = spec.get("avatar")
    if not isinstance(avatar, str) or not avatar:
        raise ValueError(f"spec.avatar must name an avatar package ('avatars/<id>' or a .safetensors path), got "
                         f"{avatar!r:.100}")
    editor = spec.get("editor")
    if editor not in EDITOR_NAMES:
        raise ValueError(f"spec.editor must be one of {list(EDITOR_NAMES)}, got {editor!r:.100}")
    instruction = None if spec.get("instruction") is None else _text(spec["instruction"], "instruction")
    prompts = _prompts(spec.get("prompts"))
    if editor == "instruct-pix2pix" and instruction is None and not prompts:
        raise ValueError("the instruct-pix2pix editor needs spec.instruction or spec.prompts")
    reference = None if spec.get("reference") is None else _path(spec["reference"], "reference")
    if editor == "reference-style" and reference is None:
        raise ValueError("the reference-style editor needs spec.reference (an image path on the backend's machine)")
    paint_spec = spec.get("paint") or {}
    if not isinstance(paint_spec, dict) or len(paint_spec) > 10_000:
        raise ValueError(f"spec.paint must be an object {{frame index: image path}}, got {paint_spec!r:.100}")
    paint = {}
    for key, value in paint_spec.items():
        if not isinstance(key, str) or not key.isdigit():
            raise ValueError(f"spec.paint keys must be frame indices (0, 1, ...), got {key!r:.50}")
        paint[int(key)] = _path(value, f"paint[{key}]")
    if editor == "keyframe-paint" and not paint:
        raise ValueError("the keyframe-paint editor needs spec.paint ({frame index: image path})")
    models = spec.get("models") or {}
    if not isinstance(models, dict):
        raise ValueError(f"spec.models must be an object, got {models!r:.100}")
    check_keys(models, {"instruct_pix2pix", "ic_light", "vgg"}, "spec.models")
    for name, value in models.items():
        _path(value, f"models.{name}")
    diffusion = spec.get("diffusion") or {}
    if not isinstance(diffusion, dict):
        raise ValueError(f"spec.diffusion must be an object, got {diffusion!r:.100}")
    check_keys(diffusion, {field.name for field in dataclasses.fields(DiffusionSettings)}, "spec.diffusion")
    dataset = spec.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or not dataset):
        raise ValueError(f"spec.dataset must be a tracked folder or a reconstruct job id, got {dataset!r:.100}")
    if dataset is None and not avatar.startswith("avatars/"):
        raise ValueError("spec.dataset (the tracked folder the avatar was reconstructed from) is required unless "
                         "spec.avatar is a reconstruct job's 'avatars/<job id>'")
    return EditSpec(avatar=avatar, editor=editor, instruction=instruction, prompts=prompts, reference=reference,
                    light=_light(spec.get("light")), paint=paint,
                    schedule=EditSchedule.from_dict(spec.get("schedule") or {}), dataset=dataset,
                    resolution=int_field(spec, "resolution", 512, 16, 4096), seed=int_field(spec, "seed", 0, 0,
                                                                                          2 ** 31 - 1),
                    models={name: str(value) for name, value in models.items()},
                    diffusion=DiffusionSettings(**diffusion))


def validate(spec: dict[str, Any]) -> None:
    parse_spec(spec)


def read_image(path: Path, what: str) -> np.ndarray:
    """[H, W, 3 or 4] uint8 of an image file (RGBA when it has transparency); ValueError / FileNotFoundError."""
    try:
        image = PIL.Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist on the backend's machine") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{what} {path} is not a readable image ({type(error).__name__}: {error})") from None
    with image:
        if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
            raise ValueError(f"{what} {path} is {image.size[0]}x{image.size[1]}, larger than {MAX_IMAGE_PIXELS} "
                             f"pixels")
        has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
        try:
            return np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8).copy()
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{what} {path} cannot be decoded ({type(error).__name__}: {error})") from None


def instructions_for(spec: EditSpec, frames: int) -> list[str | None]:
    """The text of each dataset frame: the last prompt whose range holds it, else the instruction."""
    texts: list[str | None] = [spec.instruction] * frames
    for start, end, text in spec.prompts:
        for t in range(start, min(end, frames - 1) + 1):
            texts[t] = text
    return texts


def dataset_folder(spec: EditSpec, workspace_root: Path) -> Path:
    """The tracked folder: spec.dataset as a path, or the `tracked/` folder of a reconstruct job (named by its id,
    or implied by spec.avatar 'avatars/<job id>')."""
    name = spec.dataset
    if name is None:
        name = spec.avatar.split("/", 1)[1]
    if JOB_ID.match(name) and (workspace_root / "jobs" / name).is_dir():
        folder = workspace_root / "jobs" / name / "tracked"
        if not folder.exists():
            raise FileNotFoundError(f"reconstruct job {name} has no tracked folder ({folder}); give spec.dataset as "
                                    f"the tracked folder the avatar was reconstructed from")
        return folder
    folder = Path(name).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"spec.dataset {name!r:.300} is neither a tracked folder on the backend's machine "
                                f"nor a reconstruct job in the workspace")
    return folder


def run_key(spec: EditSpec, avatar_file: Path, dataset: Path) -> str:
    """sha256 naming an edit run: the spec with every file it reads replaced by its content hash (images) or its
    resolved path (the tracked folder). Equal keys resume each other's checkpoints."""
    from backend.avatar.sources import file_hash

    fields = {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)}
    fields.update(avatar=file_hash(avatar_file), dataset=str(dataset.resolve()),
                  reference=None if spec.reference is None else file_hash(spec.reference.resolve()),
                  paint={str(index): file_hash(path.resolve()) for index, path in sorted(spec.paint.items())},
                  light=dataclasses.asdict(spec.light), schedule=dataclasses.asdict(spec.schedule),
                  diffusion=dataclasses.asdict(spec.diffusion))
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def previous_checkpoint(workdir: Path, key: str) -> Path | None:
    """The checkpoint of this job or of the newest earlier job of the workspace (a sibling folder) whose
    `run.json` has `key`, or None."""
    own = workdir / CHECKPOINT
    if own.is_file():
        return own
    found: list[tuple[float, Path]] = []
    for sibling in workdir.parent.iterdir():
        if sibling == workdir or not (sibling / CHECKPOINT).is_file() or not (sibling / "run.json").is_file():
            continue
        try:
            if json.loads((sibling / "run.json").read_text(encoding="utf-8")).get("key") == key:
                found.append(((sibling / CHECKPOINT).stat().st_mtime, sibling / CHECKPOINT))
        except (OSError, ValueError):
            continue
    return max(found)[1] if found else None


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from backend.avatar import load_package, save_package
    from backend.avatar.sources import resolve_avatar
    from backend.reconstruct.checkpoint import CheckpointError, load_state, save_state
    from backend.reconstruct.dataset import FrameDataset
    from backend.track.importers import load_tracked

    from .editor import make_editor
    from .expression_guidance import ExpressionGuidance
    from .loop import EditLoop

    parsed = parse_spec(spec)
    started = time.monotonic()
    root = Path(ctx.workspace.root)

    # 1. the avatar (a fresh copy: the original file is only read) and the frames it was reconstructed from
    ctx.progress("load", 0, 3, f"avatar {parsed.avatar}")
    source = resolve_avatar(parsed.avatar, root)
    if source.kind != "package":
        raise ValueError(f"spec.avatar {parsed.avatar!r} must be an animatable avatar package (.safetensors), "
                         f"got a {source.kind} avatar")
    avatar = load_package(source.path).to(ctx.device)
    ctx.progress("load", 1, 3, "tracked frames")
    folder = dataset_folder(parsed, root)
    workdir = Path(ctx.workdir)
    key = run_key(parsed, source.path, folder)
    atomic_write_text(workdir / "run.json", json.dumps({"key": key, "kind": "edit"}, indent=1))
    tracked = load_tracked(folder)
    dataset = FrameDataset.from_tracked(tracked, resolution=parsed.resolution)

    # 2. the editor
    ctx.progress("load", 2, 3, f"editor {parsed.editor}")
    settings = EditorSettings(
        light=parsed.light, diffusion=parsed.diffusion,
        reference=None if parsed.reference is None else read_image(parsed.reference, "reference image"),
        paint={index: read_image(path, f"painted frame {index}") for index, path in parsed.paint.items()})
    models = EditModels.from_environment(instruct_pix2pix_model=parsed.models.get("instruct_pix2pix"),
                                         ic_light_model=parsed.models.get("ic_light"),
                                         vgg_weights=parsed.models.get("vgg"))
    editor = make_editor(parsed.editor, settings, models, ctx.device)

    def guidance(avatar_: Any, sequence: Any, cameras: Any) -> ExpressionGuidance:
        return ExpressionGuidance(avatar_.head, avatar_.shape, sequence, cameras,
                                  tolerance=float(parsed.schedule.expression_tolerance))

    loop = EditLoop(avatar, dataset, editor, instructions_for(parsed, len(dataset)), parsed.schedule,
                    seed=parsed.seed, expression_guidance=guidance if editor.iterative else None)
    resumed_from = None
    previous = previous_checkpoint(workdir, key)
    if previous is not None:
        try:
            loop.load_state_dict(load_state(previous, CHECKPOINT_FORMAT))
            resumed_from = {"job": previous.parent.name, "step": loop.trainer.step_count,
                            "frames_edited": loop.initial_done}
        except (CheckpointError, ValueError, KeyError) as error:
            ctx.progress("load", 2, 3, f"ignoring the unusable checkpoint {previous.parent.name}: {error}")
    ctx.progress("load", 3, 3, f"{len(loop.edit_rows)} frames to edit"
                 + ("" if resumed_from is None else f", resuming job {resumed_from['job']}"))

    # 3. the loop, checkpointed every `checkpoint_every` steps and when cancelled
    checkpoint = workdir / CHECKPOINT
    schedule = parsed.schedule
    try:
        while loop.initial_done < len(loop.edit_rows):
            row = loop.initial_step()
            if loop.initial_done % schedule.checkpoint_every == 0:
                save_state(loop.state_dict(), checkpoint, CHECKPOINT_FORMAT)
            ctx.progress("edit frames", loop.initial_done, len(loop.edit_rows), f"edited frame {loop.rows[row]}")
        while loop.trainer.step_count < schedule.iterations:
            terms = loop.step()
            step = loop.trainer.step_count
            if step % schedule.checkpoint_every == 0:
                save_state(loop.state_dict(), checkpoint, CHECKPOINT_FORMAT)
            preview = loop.preview() if step % 50 == 0 or step == schedule.iterations else None
            ctx.progress("train", step, schedule.iterations, f"loss {terms['loss']:.4f}, {loop.edits} edits "
                         f"({loop.rejected} rejected)", preview=preview)
    except JobCancelled:
        save_state(loop.state_dict(), checkpoint, CHECKPOINT_FORMAT)
        raise
    finally:
        if loop.guidance is not None:
            loop.guidance.close()

    # 4. the new avatar, written atomically beside the others
    fidelity = loop.fidelity()
    reference = f"avatars/{ctx.job_id}"
    with atomic_path(root / "avatars" / ctx.job_id / "avatar.safetensors") as temp:
        save_package(loop.avatar, temp)
    seconds = time.monotonic() - started
    result = {"avatar": reference, "editor": parsed.editor, "frames_edited": int(loop.edited.sum()),
              "edits": loop.edits, "edits_rejected": loop.rejected, "steps": loop.trainer.step_count,
              "resumed_from": resumed_from, "psnr_to_edits": _finite(fidelity["psnr"], 3),
              "ssim_to_edits": _finite(fidelity["ssim"], 4),
              "edit_frames_per_minute": round(60.0 * loop.edits / max(loop.edit_seconds, 1e-9), 2),
              "seconds": round(seconds, 3)}
    atomic_write_text(workdir / "report.json", json.dumps(result, indent=1))
    return result


def _finite(value: float, digits: int) -> float | None:
    """`value` rounded, or None when no frame was edited (NaN)."""
    return round(value, digits) if math.isfinite(value) else None
