"""Trainer checkpoints as `.safetensors` files (never pickle): `checkpoints/step_%06d.safetensors`.

Tensors: `avatar/<name>` (the avatar's state without its head), `corrections/<name>` (FLAME corrections),
`optimizer/<parameter index>/<key>` (Adam moments and step), `generator` (the trainer's RNG state),
`grad_sum`, `grad_count`. Metadata "keyface" = JSON: format, version, step, Adam's param_groups, and `extra`
(whatever the caller stores, e.g. the configs and the run's key). Written atomically; the newest `KEEP` are kept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from backend.atomic import atomic_path

FORMAT = "keyface-checkpoint"
VERSION = 1
KEEP = 2
"""Checkpoints kept in a folder (older ones are deleted after a new one is written)."""
_NAME = re.compile(r"^step_(\d{6,})\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or not a Keyface trainer checkpoint."""


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Write `Trainer.state_dict()` output plus `extra` (JSON-ready) as `folder/step_<step>.safetensors`."""
    folder = Path(folder)
    tensors = {f"avatar/{name}": value for name, value in state["avatar"].items()}
    tensors.update({f"corrections/{name}": value for name, value in state["corrections"].items()})
    optimizer = state["optimizer"]
    for index, entries in optimizer["state"].items():
        tensors.update({f"optimizer/{index}/{key}": value for key, value in entries.items()})
    tensors.update(generator=state["generator"], grad_sum=state["grad_sum"], grad_count=state["grad_count"])
    tensors = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    groups = [{key: (list(value) if isinstance(value, tuple) else value) for key, value in group.items()}
              for group in optimizer["param_groups"]]
    meta = {"format": FORMAT, "version": VERSION, "step": int(state["step"]), "param_groups": groups,
            "extra": extra}
    path = folder / f"step_{int(state['step']):06d}.safetensors"
    with atomic_path(path) as temp:
        save_file(tensors, os.fspath(temp), metadata={"keyface": json.dumps(meta)})
    for old in list_checkpoints(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint files in `folder`, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state for `Trainer.load_state_dict`, extra) from a checkpoint file.

    Raises:
        CheckpointError: the file is unreadable, truncated or not a trainer checkpoint.
    """
    path = Path(path)
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            meta_text = (handle.metadata() or {}).get("keyface")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    try:
        meta = json.loads(meta_text or "")
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} has no Keyface checkpoint metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a version-{VERSION} {FORMAT} file")
    optimizer_state: dict[int, dict[str, Any]] = {}
    avatar, corrections = {}, {}
    for name, value in tensors.items():
        kind, _, rest = name.partition("/")
        if kind == "avatar":
            avatar[rest] = value
        elif kind == "corrections":
            corrections[rest] = value
        elif kind == "optimizer":
            index, _, key = rest.partition("/")
            optimizer_state.setdefault(int(index), {})[key] = value
    missing = [name for name in ("generator", "grad_sum", "grad_count") if name not in tensors]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}")
    state = {"step": int(meta["step"]), "avatar": avatar, "corrections": corrections,
             "optimizer": {"state": optimizer_state, "param_groups": meta["param_groups"]},
             "generator": tensors["generator"], "grad_sum": tensors["grad_sum"], "grad_count": tensors["grad_count"]}
    return state, meta.get("extra") or {}
