"""The animatable avatar package: one `.safetensors` file the backend reloads bit-exactly (never pickle).

Tensors: the avatar's state without its head — `binding`, `params.*` (local Gaussian attributes and appearance),
`offsets.*` (expression MLP) and `renderer.*` (neural renderer), in their own dtypes. Metadata key "keyface":
JSON with `format` ("keyface-avatar"), `version`, `config` (`AvatarConfig.to_dict`), `shape` (the FLAME identity
coefficients; JSON floats round-trip float32 exactly), `n_gaussians`, and `head`: `source` ("builtin" or the
FLAME file's name) and `hash` (`head_fingerprint`). The FLAME model itself is never stored (its licence forbids
redistribution); loading needs the same model, checked by the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from backend.atomic import atomic_path
from backend.flame import BUILTIN_HEAD_PATH, FlameModel

from .config import AvatarConfig
from .model import GaussianAvatar

PathLike = str | os.PathLike
PACKAGE_FORMAT = "keyface-avatar"
PACKAGE_VERSION = 1
"""Newest package version this code reads and the one it writes."""
METADATA_KEY = "keyface"
BUILTIN_SOURCE = "builtin"
_HEAD_TENSORS = ("v_template", "faces", "shapedirs", "posedirs", "J_regressor", "parents", "lbs_weights",
                 "eyelid_blendshapes")


class AvatarPackageError(ValueError):
    """An avatar package is unreadable, malformed, or does not fit the given head."""

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


class PackageVersionError(AvatarPackageError):
    """The package was written by a newer Keyface (its format version is above `PACKAGE_VERSION`)."""


class HeadMismatchError(AvatarPackageError):
    """The FLAME model given is not the one the avatar was made with (or none was given for a FLAME avatar)."""


def head_fingerprint(head: FlameModel) -> str:
    """"sha256:<hex>" of the head's geometry (template, faces, blendshapes, regressor, skinning, eyelids), taken
    in float32 / int64, so the same model loaded from `.pkl` or `.npz`, in any dtype or device, matches."""
    if not isinstance(head, FlameModel):
        raise TypeError(f"head must be a FlameModel, got {type(head).__name__}")
    digest = hashlib.sha256(f"n_shape:{head.n_shape};".encode())
    for name in _HEAD_TENSORS:
        value = getattr(head, name)
        if value is None:
            digest.update(f"{name}:none;".encode())
            continue
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value.long()
        digest.update(f"{name}:{value.dtype}:{list(value.shape)};".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def head_source(head: FlameModel) -> str:
    """"builtin" for Keyface's built-in head, else the name of the file the FLAME model was loaded from."""
    source = Path(head.source)
    return BUILTIN_SOURCE if source.resolve() == BUILTIN_HEAD_PATH.resolve() else source.name


def save_package(avatar: GaussianAvatar, path: PathLike) -> Path:
    """Write `avatar` as a package (atomically). Reload with `load_package`."""
    if not isinstance(avatar, GaussianAvatar):
        raise TypeError(f"save_package needs a GaussianAvatar, got {type(avatar).__name__}")
    tensors = {name: value.detach().cpu().contiguous() for name, value in avatar.state_dict().items()
               if not name.startswith("head.") and name != "shape"}
    meta = {"format": PACKAGE_FORMAT, "version": PACKAGE_VERSION, "config": avatar.config.to_dict(),
            "shape": avatar.shape.detach().cpu().tolist(), "n_gaussians": avatar.n_gaussians,
            "head": {"source": head_source(avatar.head), "hash": head_fingerprint(avatar.head)}}
    with atomic_path(path) as temp:
        save_file(tensors, os.fspath(temp), metadata={METADATA_KEY: json.dumps(meta)})
    return Path(path)


def read_package_metadata(path: PathLike) -> dict[str, Any]:
    """The package's metadata (format, version, config, shape, head), checked for format and version."""
    path = Path(path)
    if not path.is_file():
        raise AvatarPackageError(path, "file not found")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise AvatarPackageError(path, f"is not a readable safetensors file ({type(error).__name__}: {error})") \
            from None
    return _checked_metadata(path, metadata)


def load_package(path: PathLike, head: FlameModel | None = None) -> GaussianAvatar:
    """Rebuild the avatar saved by `save_package`, bit-exactly.

    Args:
        path: the package file.
        head: the FLAME model the avatar was made with; None loads the built-in head for built-in avatars.

    Raises:
        PackageVersionError: the package is newer than this code.
        HeadMismatchError: `head` differs from the avatar's (hash), or is None for a FLAME-file avatar.
        AvatarPackageError: (a ValueError) the file is missing, unreadable or malformed.
    """
    path = Path(path)
    meta = read_package_metadata(path)
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise AvatarPackageError(path, f"tensors cannot be read ({type(error).__name__}: {error})") from None
    source, expected_hash = meta["head"]["source"], meta["head"]["hash"]
    if head is None:
        if source != BUILTIN_SOURCE:
            raise HeadMismatchError(path, f"the avatar was made with the FLAME file '{source}'; pass "
                                    f"head=FlameModel.from_file(<path to {source}>)")
        head = FlameModel.builtin()
    elif not isinstance(head, FlameModel):
        raise TypeError(f"head must be a FlameModel or None, got {type(head).__name__}")
    actual_hash = head_fingerprint(head)
    if actual_hash != expected_hash:
        raise HeadMismatchError(path, f"the avatar was made with head '{source}' ({expected_hash}) but the given "
                                f"head '{head_source(head)}' is a different model ({actual_hash})")
    try:
        config = AvatarConfig.from_dict(meta["config"])
        shape = torch.tensor(meta["shape"], dtype=torch.float64)  # exact for float32 and float64 avatars
        params = {name.removeprefix("params."): value for name, value in tensors.items() if name.startswith("params.")}
        with torch.random.fork_rng(devices=[]):
            avatar = GaussianAvatar(head, config, tensors["binding"], params, shape=shape)
        rest = {name: value for name, value in tensors.items() if name != "binding" and not name.startswith("params.")}
        expected = {name for name in avatar.state_dict() if not name.startswith(("head.", "params."))} - {"shape",
                                                                                                          "binding"}
        if set(rest) != expected:
            raise ValueError(f"network tensors {sorted(set(rest) - expected)} are unexpected and "
                             f"{sorted(expected - set(rest))} are missing for this config")
        avatar.load_state_dict(rest, strict=False)
    except KeyError as error:
        raise AvatarPackageError(path, f"tensor {error} is missing") from None
    except (ValueError, TypeError, RuntimeError) as error:
        raise AvatarPackageError(path, f"does not describe a valid avatar: {error}") from None
    return avatar


def _checked_metadata(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if METADATA_KEY not in metadata:
        raise AvatarPackageError(path, f"is a safetensors file but not a Keyface avatar package (no "
                                 f"'{METADATA_KEY}' metadata; it has {sorted(metadata)})")
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise AvatarPackageError(path, f"'{METADATA_KEY}' metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != PACKAGE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise AvatarPackageError(path, f"metadata format is {found!r}, expected {PACKAGE_FORMAT!r}")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise AvatarPackageError(path, f"metadata version must be an integer >= 1, got {version!r}")
    if version > PACKAGE_VERSION:
        raise PackageVersionError(path, f"package format version {version} is newer than this Keyface reads "
                                  f"({PACKAGE_VERSION}); update Keyface to load it")
    head = meta.get("head")
    if not (isinstance(head, dict) and isinstance(head.get("source"), str) and isinstance(head.get("hash"), str)):
        raise AvatarPackageError(path, f"metadata 'head' must hold 'source' and 'hash' strings, got {head!r}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("shape"), list):
        raise AvatarPackageError(path, "metadata must hold 'config' (an object) and 'shape' (a list of numbers)")
    return meta
