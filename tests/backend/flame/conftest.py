"""Fixtures that write FLAME files in the official layouts (no real FLAME data: random but well-formed).

The official `generic_model.pkl` is a Python-2 protocol-2 pickle whose arrays are `chumpy.ch.Ch` objects
(state: their `__dict__`, array under `x`) and whose `J_regressor` is a `scipy.sparse.csc_matrix`. chumpy
does not import here, so `_Ch` stands in for it while writing: a fake `chumpy.ch` module is registered
only for the duration of the dump, and the pickle records `chumpy.ch` / `Ch` as the real file does.
`Python2Pickler` writes `str`/`bytes` as Python 2 `str` opcodes (BINSTRING), as Python 2 did.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import scipy.sparse

FLAME_VERTICES, FLAME_FACES, FLAME_COMPONENTS = 5023, 9976, 400
ROOT = 4294967295
CHUMPY_KEYS = ("v_template", "shapedirs", "posedirs", "weights", "J")


class _Ch:
    """Pickles like chumpy's `Ch` (its `__getstate__` is the `__dict__` minus caches)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars = {"x"}
        self._itr = None
        self._depends_on_deps: dict[str, Any] = {}
        self._make_dense = False
        self._make_sparse = False


_Ch.__module__ = "chumpy.ch"
_Ch.__qualname__ = _Ch.__name__ = "Ch"


@contextlib.contextmanager
def _fake_chumpy() -> Iterator[None]:
    """Register `chumpy` / `chumpy.ch` (holding `_Ch`) in sys.modules while pickling, then remove them."""
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    module.Ch = _Ch
    package.ch = module
    saved = {name: sys.modules.pop(name, None) for name in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        yield
    finally:
        for name, previous in saved.items():
            sys.modules.pop(name)
            if previous is not None:
                sys.modules[name] = previous


class Python2Pickler(pickle._Pickler):  # the pure-Python pickler, whose opcode writers can be replaced
    """Writes `bytes` and `str` as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as Python 2's pickle did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str8(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_str8
    dispatch[str] = save_str8


def make_flame_arrays(seed: int = 0, n_vertices: int = FLAME_VERTICES, n_faces: int = FLAME_FACES,
                      n_components: int = FLAME_COMPONENTS) -> dict[str, Any]:
    """Random arrays in the official layout; J_regressor rows and skinning weights are convex combinations."""
    rng = np.random.default_rng(seed)
    v_template = rng.normal(size=(n_vertices, 3)) * np.array([0.08, 0.11, 0.09])
    regressor = np.zeros((5, n_vertices))
    for row in regressor:
        chosen = rng.choice(n_vertices, size=min(24, n_vertices), replace=False)
        row[chosen] = rng.dirichlet(np.ones(chosen.size))
    return {
        "v_template": v_template,
        "f": rng.integers(0, n_vertices, size=(n_faces, 3)).astype(np.uint32),
        "shapedirs": rng.normal(size=(n_vertices, 3, n_components)) * 2e-3,
        "posedirs": rng.normal(size=(n_vertices, 3, 36)) * 5e-3,
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "kintree_table": np.array([[ROOT, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": rng.dirichlet(np.ones(5) * 0.3, size=n_vertices),
        "J": regressor @ v_template,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def dump_official(arrays: dict[str, Any], style: str = "python2") -> bytes:
    """The bytes of a FLAME pickle: `python2` (protocol 2, Python 2 strings) or `protocol0` / `protocol2`."""
    wrapped = {key: _Ch(value) if key in CHUMPY_KEYS else value for key, value in arrays.items()}
    buffer = io.BytesIO()
    with _fake_chumpy():
        if style == "python2":
            Python2Pickler(buffer, protocol=2).dump(wrapped)
        else:
            pickle.dump(wrapped, buffer, protocol={"protocol0": 0, "protocol2": 2}[style])
    return buffer.getvalue()


def landmark_embedding(seed: int, n_faces: int, count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"lmk_face_idx": rng.integers(0, n_faces, size=count).astype(np.uint32),
            "lmk_b_coords": rng.dirichlet(np.ones(3), size=count)}


@pytest.fixture(scope="session")
def flame_arrays() -> dict[str, Any]:
    """Full-size official-layout arrays (5023 vertices, 9976 faces, 400 components)."""
    return make_flame_arrays()


@pytest.fixture(scope="session")
def official_pkl(flame_arrays: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size `generic_model.pkl` as Python 2 wrote it."""
    path = tmp_path_factory.mktemp("flame2020") / "generic_model.pkl"
    path.write_bytes(dump_official(flame_arrays))
    assert "chumpy" not in sys.modules
    return path


@pytest.fixture
def small_arrays() -> dict[str, Any]:
    """A small model in the official layout (60 vertices, 80 faces, 300 + 20 components)."""
    return make_flame_arrays(seed=1, n_vertices=60, n_faces=80, n_components=320)


@pytest.fixture
def write_pkl(tmp_path: Path) -> Callable[..., Path]:
    """write_pkl(arrays, name='generic_model.pkl', style='python2') -> path of an official-layout pickle."""

    def write(arrays: dict[str, Any], name: str = "generic_model.pkl", style: str = "python2") -> Path:
        path = tmp_path / name
        path.write_bytes(dump_official(arrays, style))
        return path

    return write


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """write_npz(arrays, name='model.npz') -> path; sparse matrices are stored dense, strings dropped."""

    def write(arrays: dict[str, Any], name: str = "model.npz") -> Path:
        plain = {key: value.toarray() if scipy.sparse.issparse(value) else value
                 for key, value in arrays.items() if not isinstance(value, str)}
        path = tmp_path / name
        np.savez(path, **plain)
        return path

    return write
