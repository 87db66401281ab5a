"""Save and load nested training state (dicts, lists, numbers, strings and tensors: `EditLoop.state_dict()`) as
one `.safetensors` file: the tensors as entries, the structure as JSON in the metadata. No pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from backend.atomic import atomic_path

FORMAT = "keyface-edit-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or not an edit checkpoint."""


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$t": key}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {"$d": {key: _flatten(item, tensors) for key, item in value.items()}}
        return {"$m": [[key, _flatten(item, tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [_flatten(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_flatten(item, tensors) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_unflatten(item, tensors) for item in value]
    if isinstance(value, dict):
        if "$t" in value:
            return tensors[value["$t"]]
        if "$d" in value:
            return {key: _unflatten(item, tensors) for key, item in value["$d"].items()}
        if "$m" in value:
            return {key: _unflatten(item, tensors) for key, item in value["$m"]}
        if "$tuple" in value:
            return tuple(_unflatten(item, tensors) for item in value["$tuple"])
        raise CheckpointError(f"unknown checkpoint node {sorted(value)[:3]}")
    return value


def save_state(state: Any, path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    metadata = {"format": FORMAT, "version": str(VERSION), "state": json.dumps(skeleton)}
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return Path(path)


def load_state(path: str | os.PathLike) -> Any:
    """The state `save_state` wrote; raises CheckpointError for a damaged or foreign file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an edit checkpoint")
        if metadata.get("version") != str(VERSION):
            raise CheckpointError(f"{path} is checkpoint version {metadata.get('version')!r}; this Keyface reads "
                                  f"{VERSION}")
        tensors = load_file(str(path))
        return _unflatten(json.loads(metadata["state"]), tensors)
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path} cannot be read as an edit checkpoint ({type(error).__name__}: {error})") \
            from None
