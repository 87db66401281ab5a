"""Training state as `.safetensors` files (never pickle), written atomically.

`save_state` / `load_state` store any nested state (dicts, lists, tuples, numbers, strings, None and tensors: a
`Trainer.state_dict()`, an `EditLoop.state_dict()`) as one file: the tensors as entries `t<i>`, the structure as
JSON in the metadata ("state"), beside "format" (the kind of state) and "version".

Trainer checkpoints are `save_state({"state": Trainer.state_dict(), "extra": extra})` files named
`step_%06d.safetensors` (format `keyface-checkpoint`); `extra` is whatever the caller stores (JSON-ready, e.g. the
configs and the run's key). The newest `KEEP` are kept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from backend.atomic import atomic_path

VERSION = 1
"""Version of the file layout (the JSON skeleton's node kinds)."""
FORMAT = "keyface-checkpoint"
"""Format name of trainer checkpoints."""
KEEP = 2
"""Checkpoints kept in a folder (older ones are deleted after a new one is written)."""
_NAME = re.compile(r"^step_(\d{6,})\.safetensors$")
_TRAINER_KEYS = ("step", "avatar", "corrections", "optimizer", "generator", "grad_sum", "grad_count")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, damaged or not of the expected format."""


def save_state(state: Any, path: str | os.PathLike, kind: str) -> Path:
    """Write nested `state` to `path` atomically, its format marked as `kind`. Returns the path.

    Raises:
        TypeError: `state` holds something other than dicts, lists, tuples, numbers, strings, None and tensors.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    metadata = {"format": kind, "version": str(VERSION), "state": json.dumps(skeleton)}
    with atomic_path(path) as temp:
        save_file(tensors, os.fspath(temp), metadata=metadata)
    return Path(path)


def load_state(path: str | os.PathLike, kind: str) -> Any:
    """The state `save_state(state, path, kind)` wrote (tensors on the CPU).

    Raises:
        CheckpointError: the file is unreadable, damaged, of another format or another version.
    """
    path = Path(path)
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != kind:
                raise CheckpointError(f"{path} is not a {kind} file (format {metadata.get('format')!r})")
            if metadata.get("version") != str(VERSION):
                raise CheckpointError(f"{path} is checkpoint version {metadata.get('version')!r}; this Keyface "
                                      f"reads {VERSION}")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return _unflatten(json.loads(metadata["state"]), tensors)
    except CheckpointError:
        raise
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} cannot be read as a {kind} file ({type(error).__name__}: {error})") \
            from None


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Write `Trainer.state_dict()` output plus `extra` (JSON-ready) as `folder/step_<step>.safetensors`."""
    folder = Path(folder)
    path = save_state({"state": state, "extra": extra}, folder / f"step_{int(state['step']):06d}.safetensors",
                      FORMAT)
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
    saved = load_state(path, FORMAT)
    state = saved.get("state") if isinstance(saved, dict) else None
    extra = saved.get("extra") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not isinstance(extra, dict):
        raise CheckpointError(f"{path} holds no trainer state")
    missing = [key for key in _TRAINER_KEYS if key not in state]
    if missing or not isinstance(state["step"], int) or isinstance(state["step"], bool):
        raise CheckpointError(f"{path} is not a trainer checkpoint: it lacks {missing} or its step is not an integer")
    return state, extra


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of `value`; its tensors go into `tensors` (CPU copies) as `{"$t": key}` nodes."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$t": key}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {"$d": {key: _flatten(item, tensors) for key, item in value.items()}}
        if all(isinstance(key, (int, str)) and not isinstance(key, bool) for key in value):
            return {"$m": [[key, _flatten(item, tensors)] for key, item in value.items()]}
        raise TypeError(f"cannot store a dict with {sorted({type(key).__name__ for key in value})} keys in a "
                        f"checkpoint")
    if isinstance(value, tuple):
        return {"$tuple": [_flatten(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_flatten(item, tensors) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The value `_flatten` turned into `node`; CheckpointError for a node it cannot have written."""
    if isinstance(node, list):
        return [_unflatten(item, tensors) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        raise CheckpointError(f"unknown checkpoint node with keys {sorted(node)[:3]}")
    (kind, content), = node.items()
    if kind == "$t" and isinstance(content, str) and content in tensors:
        return tensors[content]
    if kind == "$d" and isinstance(content, dict):
        return {key: _unflatten(item, tensors) for key, item in content.items()}
    if kind == "$m" and isinstance(content, list) and all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (int, str)) for pair in content):
        return {key: _unflatten(item, tensors) for key, item in content}
    if kind == "$tuple" and isinstance(content, list):
        return tuple(_unflatten(item, tensors) for item in content)
    raise CheckpointError(f"unknown or malformed checkpoint node {kind!r}")
