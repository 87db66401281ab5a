"""Reading FLAME model files and their extras (landmark embeddings, eyelid blendshapes) into validated arrays.

Model files: the official `generic_model.pkl` (FLAME 2020) and `flame2023.pkl` (Python-2 pickles with
chumpy arrays and a sparse `J_regressor`, read by `unpickle.RestrictedUnpickler`), or an `.npz` with the
same keys (read with `allow_pickle=False`). The format is told by the file's first bytes, not its name.
Any vertex / face count works; the joint layout (5 joints, 36 pose correctives) is FLAME's.

Landmark embeddings from several sources are concatenated into one list, in this order: the one embedded
in an `.npz` model (`lmk_face_idx`, `lmk_b_coords`, optional `mediapipe_indices`), then `landmarks`
(FLAME's `flame_static_embedding.pkl`), then `mediapipe_embedding` (metrical-tracker's `.npz`). Each
landmark carries the mediapipe face-mesh index it corresponds to, or -1.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import scipy.sparse

from .unpickle import RefusedError, as_plain, load_restricted

PathLike = Union[str, os.PathLike]

N_JOINTS = 5
"""FLAME joints: 0 global, 1 neck, 2 jaw, 3 left eye, 4 right eye."""
JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")
N_POSE_CORRECTIVES = (N_JOINTS - 1) * 9
"""Pose-corrective blendshapes: one per rotation-matrix entry of each non-root joint."""
DEFAULT_N_SHAPE = 300
"""Where identity ends and expression begins in an official file's `shapedirs` (300 + 100)."""

FLAME_HINT = ("Official FLAME model files are downloaded from https://flame.is.tue.mpg.de after accepting the "
              "FLAME licence; Keyface never ships them.")
TRACKER_HINT = ("l_eyelid.npy, r_eyelid.npy and mediapipe_landmark_embedding.npz come from metrical-tracker "
                "(https://github.com/Zielon/metrical-tracker, flame/ folder) under the FLAME licence; "
                "FLAME itself comes from https://flame.is.tue.mpg.de. Keyface never ships them.")

_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                  OverflowError, MemoryError, RecursionError)
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
_MODEL_KEYS = ("v_template", "f", "shapedirs", "n_shape", "posedirs", "J_regressor", "kintree_table", "weights",
               "shape_names", "expression_names", "lmk_face_idx", "lmk_b_coords", "mediapipe_indices",
               "l_eyelid", "r_eyelid")


class FlameFileError(ValueError):
    """A FLAME model, landmark or eyelid file is unreadable or not in the expected layout."""

    def __init__(self, path: PathLike, problem: str, hint: str = FLAME_HINT) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}. {hint}")
        self.path = Path(path)
        self.problem = problem
        self.hint = hint


class FlameFileMissingError(FlameFileError, FileNotFoundError):
    """A FLAME model, landmark or eyelid file does not exist."""


@dataclasses.dataclass(frozen=True, eq=False)
class FlameData:
    """A validated FLAME model as numpy arrays (float64 / int64), ready to become tensors.

    Attributes:
        path: the model file it was read from.
        v_template: [V, 3] template (mean) head in metres.
        faces: [F, 3] vertex indices of each triangle.
        shapedirs: [V, 3, S + E] identity then expression blendshapes.
        n_shape: S, the number of identity components (the rest are expression).
        posedirs: [V, 3, 36] pose-corrective blendshapes.
        J_regressor: [5, V] joint positions as weighted sums of vertices.
        parents: [5] parent joint of each joint (-1 for the root), parents before children.
        weights: [V, 5] skinning weights.
        shape_names: S names of the identity components.
        expression_names: E names of the expression components.
        landmark_faces: [L] triangle of each landmark.
        landmark_barycentric: [L, 3] barycentric coordinates of each landmark in its triangle.
        mediapipe_indices: [L] mediapipe face-mesh index of each landmark, -1 where there is none.
        eyelids: [2, V, 3] left then right eyelid blendshapes, or None.
    """

    path: Path
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    n_shape: int
    posedirs: np.ndarray
    J_regressor: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    shape_names: tuple[str, ...]
    expression_names: tuple[str, ...]
    landmark_faces: np.ndarray
    landmark_barycentric: np.ndarray
    mediapipe_indices: np.ndarray
    eyelids: np.ndarray | None


def read_flame(path: PathLike, *, eyelids: PathLike | Sequence[PathLike] | None = None,
               landmarks: PathLike | None = None, mediapipe_embedding: PathLike | None = None) -> FlameData:
    """Read and validate a FLAME model file (`.pkl` or `.npz`) and optional extras.

    Args:
        path: the model file.
        eyelids: metrical-tracker eyelid blendshapes: a folder holding `l_eyelid.npy` and `r_eyelid.npy`,
            or the pair of files (left, right). Replaces eyelids embedded in an `.npz` model.
        landmarks: FLAME's `flame_static_embedding.pkl` (or an `.npz` with `lmk_face_idx`, `lmk_b_coords`).
        mediapipe_embedding: metrical-tracker's `mediapipe_landmark_embedding.npz`
            (`lmk_face_idx`, `lmk_b_coords`, `landmark_indices`).

    Raises:
        FlameFileMissingError: a file does not exist.
        FlameFileError: a file is unreadable or its layout is wrong; the message names the file and the key.
    """
    path = _as_path(path, "path")
    raw = _read_mapping(path, FLAME_HINT, _MODEL_KEYS)
    model = _Reader(path, raw, FLAME_HINT)
    v_template = model.floats("v_template", (None, 3))
    n_vertices = v_template.shape[0]
    faces = model.indices("f", (None, 3), n_vertices)
    shapedirs = model.floats("shapedirs", (n_vertices, 3, None))
    n_shape = model.n_shape(shapedirs.shape[2])
    n_expression = shapedirs.shape[2] - n_shape
    parents = model.parents()
    names = (model.names("shape_names", n_shape, "shape"), model.names("expression_names", n_expression, "expression"))
    embedded = model.embedding(faces.shape[0])
    extras = [embedded] if embedded is not None else []
    if landmarks is not None:
        extras.append(read_landmark_embedding(landmarks, faces.shape[0]))
    if mediapipe_embedding is not None:
        extras.append(read_mediapipe_embedding(mediapipe_embedding, faces.shape[0]))
    landmark_faces, landmark_barycentric, mediapipe_indices = _concatenate(extras)
    return FlameData(
        path=path,
        v_template=v_template,
        faces=faces,
        shapedirs=shapedirs,
        n_shape=n_shape,
        posedirs=model.floats("posedirs", (n_vertices, 3, N_POSE_CORRECTIVES)),
        J_regressor=model.floats("J_regressor", (N_JOINTS, n_vertices)),
        parents=parents,
        weights=model.floats("weights", (n_vertices, N_JOINTS)),
        shape_names=names[0],
        expression_names=names[1],
        landmark_faces=landmark_faces,
        landmark_barycentric=landmark_barycentric,
        mediapipe_indices=mediapipe_indices,
        eyelids=read_eyelids(eyelids, n_vertices) if eyelids is not None else model.eyelids(n_vertices),
    )


def read_landmark_embedding(path: PathLike, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLAME's static landmark embedding: ([L] faces, [L, 3] barycentric, [L] mediapipe indices, all -1)."""
    path = _as_path(path, "landmarks")
    reader = _Reader(path, _read_mapping(path, FLAME_HINT, ("lmk_face_idx", "lmk_b_coords")), FLAME_HINT)
    faces, barycentric = reader.landmarks(n_faces)
    return faces, barycentric, np.full(faces.shape, -1, dtype=np.int64)


def read_mediapipe_embedding(path: PathLike, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """metrical-tracker's mediapipe embedding: ([L] faces, [L, 3] barycentric, [L] mediapipe indices)."""
    path = _as_path(path, "mediapipe_embedding")
    keys = ("lmk_face_idx", "lmk_b_coords", "landmark_indices")
    reader = _Reader(path, _read_mapping(path, TRACKER_HINT, keys), TRACKER_HINT)
    faces, barycentric = reader.landmarks(n_faces)
    return faces, barycentric, reader.indices("landmark_indices", (faces.shape[0],), None)


def read_eyelids(source: PathLike | Sequence[PathLike], n_vertices: int) -> np.ndarray:
    """[2, V, 3] left and right eyelid blendshapes from a folder (`l_eyelid.npy`, `r_eyelid.npy`) or a pair."""
    if isinstance(source, (str, os.PathLike)):
        folder = _as_path(source, "eyelids")
        paths = [folder / "l_eyelid.npy", folder / "r_eyelid.npy"]
    elif isinstance(source, Sequence) and len(source) == 2:
        paths = [_as_path(item, "eyelids") for item in source]
    else:
        raise TypeError(f"eyelids must be a folder or a (left, right) pair of .npy paths, got {source!r}")
    arrays = []
    for path in paths:
        if not path.is_file():
            raise FlameFileMissingError(path, "eyelid blendshape file not found", TRACKER_HINT)
        try:
            value = np.load(path, allow_pickle=False)
        except _NPZ_ERRORS as error:
            raise FlameFileError(path, f"cannot be read as a .npy array ({type(error).__name__}: {error})",
                                 TRACKER_HINT) from None
        arrays.append(_Reader(path, {path.stem: value}, TRACKER_HINT).floats(path.stem, (n_vertices, 3)))
    return np.stack(arrays)


def _as_path(value: Any, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}: {value!r}")
    return Path(value)


def _read_mapping(path: Path, hint: str, keys: Sequence[str]) -> dict[str, Any]:
    """The `keys` present in a pickled dict or an `.npz` (told apart by the file's first bytes)."""
    if not path.is_file():
        raise FlameFileMissingError(path, "file not found", hint)
    with open(path, "rb") as stream:
        is_zip = stream.read(4) == b"PK\x03\x04"
        if not is_zip:
            stream.seek(0)
            try:
                data = load_restricted(stream)
            except RefusedError as error:
                raise FlameFileError(path, f"is not a FLAME file, the pickle was refused ({error})", hint) from None
            except _PICKLE_ERRORS as error:
                raise FlameFileError(path, f"cannot be read as a FLAME pickle, it may be truncated or corrupt "
                                     f"({type(error).__name__}: {error})", hint) from None
            if not isinstance(data, dict):
                raise FlameFileError(path, f"holds a {type(data).__name__}, expected a dict of arrays", hint)
            return {key: data[key] for key in keys if key in data}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in keys if key in npz.files}
    except _NPZ_ERRORS as error:
        raise FlameFileError(path, f"cannot be read as an .npz archive of plain arrays, it may be truncated or "
                             f"corrupt ({type(error).__name__}: {error})", hint) from None


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if n is None else str(n) for n in shape) + "]"


class _Reader:
    """Typed, shape-checked access to the keys of one file; every failure names the file and the key."""

    def __init__(self, path: Path, raw: Mapping[str, Any], hint: str) -> None:
        self.path, self.raw, self.hint = path, raw, hint

    def fail(self, problem: str) -> FlameFileError:
        return FlameFileError(self.path, problem, self.hint)

    def array(self, key: str, shape: Sequence[int | None]) -> np.ndarray:
        if key not in self.raw:
            raise self.fail(f"key '{key}' is missing (expected shape {_shape_text(shape)}); "
                            f"the file has {sorted(self.raw)}")
        try:
            value = as_plain(self.raw[key])
        except ValueError as error:
            raise self.fail(f"key '{key}' is not an array: {error}") from None
        got = value.shape if isinstance(value, (np.ndarray, scipy.sparse.spmatrix)) else np.shape(value)
        if len(got) != len(shape) or any(want is not None and n != want for n, want in zip(got, shape)):
            raise self.fail(f"key '{key}' has shape {list(got)}, expected {_shape_text(shape)}")
        if scipy.sparse.issparse(value):
            value = value.toarray()
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise self.fail(f"key '{key}' is not a numeric array ({error})") from None
        if array.dtype.kind not in "biuf":
            raise self.fail(f"key '{key}' has dtype {array.dtype}, expected numbers")
        return array

    def floats(self, key: str, shape: Sequence[int | None]) -> np.ndarray:
        array = self.array(key, shape).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise self.fail(f"key '{key}' has {bad.size} non-finite values (first at flat index {bad[0]})")
        return array

    def indices(self, key: str, shape: Sequence[int | None], limit: int | None, allow_none: bool = False) -> np.ndarray:
        """Integer array; with `limit`, every entry in [0, limit) (or -1 when `allow_none`)."""
        array = self.array(key, shape)
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise self.fail(f"key '{key}' must hold integers, got fractional values")
        array = array.astype(np.int64)
        low = -1 if allow_none else 0
        outside = (array < low) | (array >= limit) if limit is not None else array < low
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            upper = f", {limit})" if limit is not None else ", inf)"
            raise self.fail(f"key '{key}' has {int(outside.sum())} entries outside [{low}{upper} "
                            f"(first: {array.reshape(-1)[first]} at flat index {first})")
        return array

    def n_shape(self, n_components: int) -> int:
        if "n_shape" not in self.raw:
            if n_components < DEFAULT_N_SHAPE:
                raise self.fail(f"'shapedirs' has {n_components} components, fewer than FLAME's {DEFAULT_N_SHAPE} "
                                "shape components, and no 'n_shape' key says where expression begins")
            return DEFAULT_N_SHAPE
        value = self.indices("n_shape", (), None)
        if not 0 <= int(value) <= n_components:
            raise self.fail(f"key 'n_shape' is {int(value)}, outside [0, {n_components}] "
                            f"('shapedirs' has {n_components} components)")
        return int(value)

    def parents(self) -> np.ndarray:
        """[5] parents from `kintree_table` [2, 5] (row 0 parents, root 4294967295 or -1; row 1 joint ids)."""
        table = self.array("kintree_table", (2, N_JOINTS)).astype(np.int64)
        if not np.array_equal(table[1], np.arange(N_JOINTS)):
            raise self.fail(f"key 'kintree_table' row 1 must list joints 0..{N_JOINTS - 1}, got {table[1].tolist()}")
        parents = table[0].copy()
        valid_root = parents[0] in (-1, 2**32 - 1)
        valid_rest = all(0 <= parents[j] < j for j in range(1, N_JOINTS))
        if not (valid_root and valid_rest):
            raise self.fail(f"key 'kintree_table' row 0 (parents) is {parents.tolist()}; expected a root marker "
                            "(4294967295 or -1) then parents listed before their children")
        parents[0] = -1
        return parents

    def names(self, key: str, count: int, prefix: str) -> tuple[str, ...]:
        if key not in self.raw:
            return tuple(f"{prefix}_{i:03d}" for i in range(count))
        names = np.asarray(self.raw[key])
        if names.dtype.kind != "U" or names.shape != (count,):
            raise self.fail(f"key '{key}' must be {count} strings, got {names.dtype} of shape {list(names.shape)}")
        return tuple(str(name) for name in names)

    def landmarks(self, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
        faces = self.indices("lmk_face_idx", (None,), n_faces)
        return faces, self.floats("lmk_b_coords", (faces.shape[0], 3))

    def embedding(self, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The landmark embedding inside a model file, if any."""
        if "lmk_face_idx" not in self.raw:
            if "mediapipe_indices" in self.raw:
                raise self.fail("key 'mediapipe_indices' is present without 'lmk_face_idx' and 'lmk_b_coords'")
            return None
        faces, barycentric = self.landmarks(n_faces)
        if "mediapipe_indices" not in self.raw:
            return faces, barycentric, np.full(faces.shape, -1, dtype=np.int64)
        return faces, barycentric, self.indices("mediapipe_indices", (faces.shape[0],), None, allow_none=True)

    def eyelids(self, n_vertices: int) -> np.ndarray | None:
        present = [key in self.raw for key in ("l_eyelid", "r_eyelid")]
        if not any(present):
            return None
        if not all(present):
            raise self.fail("keys 'l_eyelid' and 'r_eyelid' must come together, the file has only one")
        return np.stack([self.floats(key, (n_vertices, 3)) for key in ("l_eyelid", "r_eyelid")])


def _concatenate(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join landmark embeddings: ([L] faces, [L, 3] barycentric, [L] mediapipe indices)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.int64)
    faces, barycentric, mediapipe = zip(*parts)
    return np.concatenate(faces), np.concatenate(barycentric), np.concatenate(mediapipe)
