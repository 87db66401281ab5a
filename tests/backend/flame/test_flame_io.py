"""Reading FLAME files: the official chumpy pickles without chumpy, `.npz`, extras, and every failure mode."""

from __future__ import annotations

import os
import pickle
import pickletools
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from backend.flame import FlameFileError, FlameFileMissingError, read_flame
from backend.flame.unpickle import load_restricted

FLAME_SITE = "https://flame.is.tue.mpg.de"


def _globals_in(data: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_official_pickle_references_chumpy_and_loads_without_it(official_pkl: Path, flame_arrays: dict) -> None:
    assert "chumpy.ch Ch" in _globals_in(official_pkl.read_bytes())
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    data = read_flame(official_pkl)
    assert "chumpy" not in sys.modules
    np.testing.assert_array_equal(data.v_template, flame_arrays["v_template"])
    np.testing.assert_array_equal(data.shapedirs, flame_arrays["shapedirs"])
    np.testing.assert_array_equal(data.posedirs, flame_arrays["posedirs"])
    np.testing.assert_array_equal(data.weights, flame_arrays["weights"])
    np.testing.assert_array_equal(data.J_regressor, flame_arrays["J_regressor"].toarray())
    np.testing.assert_array_equal(data.faces, flame_arrays["f"].astype(np.int64))
    assert data.parents.tolist() == [-1, 0, 1, 1, 1]
    assert (data.n_shape, data.shapedirs.shape[2] - data.n_shape) == (300, 100)
    assert data.shape_names[:2] == ("shape_000", "shape_001") and data.expression_names[-1] == "expression_099"
    assert data.landmark_faces.shape == (0,) and data.eyelids is None


@pytest.mark.parametrize("style", ["protocol0", "protocol2"])
def test_python3_written_pickles_load_too(style: str, small_arrays: dict, write_pkl: Callable[..., Path]) -> None:
    """Protocol 0 uses copy_reg._reconstructor; Python 3's protocol 2 writes bytes via _codecs.encode."""
    data = read_flame(write_pkl(small_arrays, style=style))
    np.testing.assert_array_equal(data.shapedirs, small_arrays["shapedirs"])
    np.testing.assert_array_equal(data.J_regressor, small_arrays["J_regressor"].toarray())


def test_npz_with_names_landmarks_mediapipe_and_eyelids(small_arrays: dict, write_npz: Callable[..., Path]) -> None:
    rng = np.random.default_rng(5)
    n_vertices, n_components = small_arrays["v_template"].shape[0], small_arrays["shapedirs"].shape[2]
    extra = {
        "n_shape": np.array(12),
        "shape_names": np.array([f"id{i}" for i in range(12)]),
        "expression_names": np.array([f"ex{i}" for i in range(n_components - 12)]),
        "lmk_face_idx": np.array([0, 5, 79]),
        "lmk_b_coords": rng.dirichlet(np.ones(3), size=3),
        "mediapipe_indices": np.array([1, -1, 467]),
        "l_eyelid": rng.normal(size=(n_vertices, 3)),
        "r_eyelid": rng.normal(size=(n_vertices, 3)),
        "uv_coords": rng.random((10, 2)),  # unknown keys (the built-in head's UVs) are ignored
    }
    data = read_flame(write_npz({**small_arrays, **extra}))
    assert data.n_shape == 12 and data.shape_names[3] == "id3" and len(data.expression_names) == n_components - 12
    assert data.landmark_faces.tolist() == [0, 5, 79] and data.mediapipe_indices.tolist() == [1, -1, 467]
    np.testing.assert_array_equal(data.eyelids, np.stack([extra["l_eyelid"], extra["r_eyelid"]]))


def test_landmark_files_are_concatenated(small_arrays: dict, write_pkl: Callable[..., Path], tmp_path: Path) -> None:
    static = {"lmk_face_idx": np.array([3, 4], dtype=np.uint32), "lmk_b_coords": np.full((2, 3), 1 / 3)}
    (tmp_path / "flame_static_embedding.pkl").write_bytes(pickle.dumps(static, protocol=2))
    np.savez(tmp_path / "mediapipe.npz", lmk_face_idx=np.array([7, 8, 9]), lmk_b_coords=np.full((3, 3), 1 / 3),
             landmark_indices=np.array([276, 282, 283]))
    data = read_flame(write_pkl(small_arrays), landmarks=tmp_path / "flame_static_embedding.pkl",
                      mediapipe_embedding=tmp_path / "mediapipe.npz")
    assert data.landmark_faces.tolist() == [3, 4, 7, 8, 9]
    assert data.mediapipe_indices.tolist() == [-1, -1, 276, 282, 283]
    assert data.landmark_barycentric.shape == (5, 3)


def test_eyelids_from_a_folder_or_a_pair(small_arrays: dict, write_pkl: Callable[..., Path], tmp_path: Path) -> None:
    n_vertices = small_arrays["v_template"].shape[0]
    left, right = np.ones((n_vertices, 3), np.float32), np.full((n_vertices, 3), 2.0, np.float32)
    np.save(tmp_path / "l_eyelid.npy", left)
    np.save(tmp_path / "r_eyelid.npy", right)
    model = write_pkl(small_arrays)
    from_folder = read_flame(model, eyelids=tmp_path).eyelids
    from_pair = read_flame(model, eyelids=(tmp_path / "l_eyelid.npy", str(tmp_path / "r_eyelid.npy"))).eyelids
    np.testing.assert_array_equal(from_folder, np.stack([left, right]))
    np.testing.assert_array_equal(from_pair, from_folder)


# --- failures: each names the file, the key or shape, and where FLAME comes from --------------------------


def _expect_error(path: Path, *words: str, error: type[Exception] = FlameFileError, **extras: Any) -> str:
    with pytest.raises(error) as caught:
        read_flame(path, **extras)
    message = str(caught.value)
    for word in (*words, FLAME_SITE):
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "generic_model.pkl"
    _expect_error(path, str(path), "not found", "licence", error=FileNotFoundError)
    with pytest.raises(FlameFileMissingError):
        read_flame(path)


@pytest.mark.parametrize("keep", [0, 2, 1000, 0.5])
def test_truncated_pickle(keep: float, small_arrays: dict, write_pkl: Callable[..., Path]) -> None:
    path = write_pkl(small_arrays)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    _expect_error(path, str(path), "truncated")


def test_truncated_npz(small_arrays: dict, write_npz: Callable[..., Path]) -> None:
    path = write_npz(small_arrays)
    path.write_bytes(path.read_bytes()[:5000])
    _expect_error(path, str(path), "truncated")


def test_npz_with_object_array_is_refused(small_arrays: dict, write_npz: Callable[..., Path]) -> None:
    arrays = {**small_arrays, "weights": np.array([object()] * 3, dtype=object)}
    path = write_npz(arrays)
    _expect_error(path, str(path), "allow_pickle")


@pytest.mark.parametrize("key", ["v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table",
                                 "weights"])
def test_missing_key(key: str, small_arrays: dict, write_pkl: Callable[..., Path]) -> None:
    arrays = dict(small_arrays)
    del arrays[key]
    path = write_pkl(arrays)
    _expect_error(path, str(path), f"'{key}' is missing")


@pytest.mark.parametrize(("key", "change", "words"), [
    ("posedirs", lambda a: a[:, :, :35], ["'posedirs'", "[60, 3, 35]", "[60, 3, 36]"]),
    ("shapedirs", lambda a: a[:-1], ["'shapedirs'", "[59, 3, 320]", "[60, 3, *]"]),
    ("weights", lambda a: a[:, :4], ["'weights'", "[60, 5]"]),
    ("v_template", lambda a: a[:, :2], ["'v_template'", "[60, 2]"]),
    ("f", lambda a: a[:, :2], ["'f'", "[80, 2]"]),
    ("kintree_table", lambda a: a[:, :4], ["'kintree_table'", "[2, 4]"]),
    ("J_regressor", lambda a: a[:4], ["'J_regressor'", "[4, 60]", "[5, 60]"]),
])
def test_wrong_shape(key: str, change: Callable, words: list[str], small_arrays: dict,
                     write_pkl: Callable[..., Path]) -> None:
    path = write_pkl({**small_arrays, key: change(small_arrays[key])})
    _expect_error(path, str(path), *words)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("f", np.full((80, 3), 60, np.uint32), ["'f'", "outside [0, 60)"]),
    ("kintree_table", np.array([[4294967295, 0, 3, 1, 1], [0, 1, 2, 3, 4]]), ["parents", "[4294967295, 0, 3, 1, 1]"]),
    ("kintree_table", np.array([[4294967295, 0, 1, 1, 1], [0, 2, 1, 3, 4]]), ["row 1"]),
    ("v_template", np.full((60, 3), np.nan), ["'v_template'", "non-finite"]),
    ("shapedirs", np.zeros((60, 3, 20)), ["'shapedirs'", "20 components", "n_shape"]),
])
def test_wrong_content(key: str, value: np.ndarray, words: list[str], small_arrays: dict,
                       write_pkl: Callable[..., Path]) -> None:
    path = write_pkl({**small_arrays, key: value})
    _expect_error(path, str(path), *words)


@pytest.mark.parametrize(("extra", "words"), [
    ({"n_shape": np.array(321)}, ["'n_shape'", "321", "[0, 320]"]),
    ({"shape_names": np.array(["a", "b"])}, ["'shape_names'", "300 strings"]),
    ({"mediapipe_indices": np.array([1, 2])}, ["'mediapipe_indices'", "without 'lmk_face_idx'"]),
    ({"lmk_face_idx": np.array([0, 80]), "lmk_b_coords": np.ones((2, 3)) / 3}, ["'lmk_face_idx'", "[0, 80)"]),
    ({"lmk_face_idx": np.array([0, 1]), "lmk_b_coords": np.ones((3, 3)) / 3}, ["'lmk_b_coords'", "[2, 3]"]),
    ({"l_eyelid": np.zeros((60, 3))}, ["'r_eyelid'"]),
])
def test_wrong_npz_extras(extra: dict, words: list[str], small_arrays: dict, write_npz: Callable[..., Path]) -> None:
    path = write_npz({**small_arrays, **extra})
    _expect_error(path, str(path), *words)


def test_bad_extra_files(small_arrays: dict, write_pkl: Callable[..., Path], tmp_path: Path) -> None:
    model = write_pkl(small_arrays)
    _expect_error(model, "l_eyelid.npy", "metrical-tracker", error=FileNotFoundError, eyelids=tmp_path / "none")
    np.save(tmp_path / "l_eyelid.npy", np.zeros((59, 3)))
    np.save(tmp_path / "r_eyelid.npy", np.zeros((60, 3)))
    _expect_error(model, "l_eyelid.npy", "'l_eyelid'", "[59, 3]", "[60, 3]", eyelids=tmp_path)
    np.savez(tmp_path / "mp.npz", lmk_face_idx=np.array([1]), lmk_b_coords=np.ones((1, 3)) / 3)
    _expect_error(model, "mp.npz", "'landmark_indices' is missing", mediapipe_embedding=tmp_path / "mp.npz")
    _expect_error(model, "static.pkl", "not found", error=FileNotFoundError, landmarks=tmp_path / "static.pkl")
    with pytest.raises(TypeError, match="eyelids"):
        read_flame(model, eyelids=[tmp_path])


def test_chumpy_expression_without_array(small_arrays: dict, write_pkl: Callable[..., Path]) -> None:
    path = write_pkl(small_arrays)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"U\x01x", b"U\x01y"))  # rename every Ch state key 'x' (a SHORT_BINSTRING)
    _expect_error(path, "'v_template'", "chumpy.ch.Ch", "without a stored array")


# --- the unpickler never runs code a file names ------------------------------------------------------------


class _Exploit:
    def __init__(self, target: Any, *args: Any) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple:
        return self.target, self.args


@pytest.mark.parametrize(("target", "name"), [
    (os.system, "system"),
    (eval, "eval"),
    (getattr, "getattr"),
    (np.load, "load"),
    (pickle.loads, "loads"),
])
def test_pickle_that_calls_code_is_refused(target: Any, name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {"v_template": _Exploit(target, f"touch {marker}")}
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    message = _expect_error(path, str(path), "refused", name)
    assert not marker.exists(), message


def test_handcrafted_os_system_opcodes_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    _expect_error(path, "refused", "'os.system'")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"ccopy_reg\n_reconstructor\n(cnumpy\nndarray\nc__builtin__\nobject\nNtR.",  # only stub classes allowed
    b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",  # only latin-1 text
    b"cchumpy.ch\nCh\n(S'arg'\ntR.",  # a chumpy stand-in cannot be called with arguments
    b"\x80\x02cscipy.sparse._csc\ncsc_matrix\n)\x81U\x01xb.",  # stub state must be a dict
    b"\x80\x02X\x01\x00\x00\x00aQ.",  # no persistent ids
])
def test_reconstruction_helpers_only_accept_what_flame_files_use(payload: bytes) -> None:
    with pytest.raises((pickle.UnpicklingError, TypeError)):
        load_restricted(payload)
