"""A restricted unpickler for the official FLAME files, which are Python-2 pickles holding chumpy objects.

Official FLAME files (`generic_model.pkl`, `flame2023.pkl`, `flame_static_embedding.pkl`) are latin-1
pickles of a dict. Some values are `chumpy.ch.Ch` objects whose pickled state is their `__dict__`, with
the array under `x`; `J_regressor` is a `scipy.sparse` CSC matrix. chumpy does not import on Python 3.11,
so `find_class` maps chumpy classes to `ChumpyArray` and sparse matrices to `SparseMatrix`: both only
record their state. Everything else a pickle may name is refused, except the few numpy and builtin
reconstruction callables these files need, so a file cannot make the loader run arbitrary code.
"""

from __future__ import annotations

import codecs
import functools
import io
import pickle
from types import MappingProxyType
from typing import Any, BinaryIO, Mapping

import numpy as np
import scipy.sparse


class RefusedError(pickle.UnpicklingError):
    """The pickle names something this loader does not allow (code to run, an unknown class)."""


class ChumpyArray:
    """Stands in for a chumpy object: keeps the pickled state; `array` is its stored array `x`."""

    class_name = "chumpy.ch.Ch"
    state: Mapping[str, Any] = MappingProxyType({})

    def __setstate__(self, state: Any) -> None:
        # Plain `__dict__` state, or (`__dict__`, slots) as pickle writes for objects with slots.
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a {self.class_name} object has state of type {type(state).__name__}, "
                                         "expected a dict")
        self.state = state

    @property
    def array(self) -> Any:
        """The stored array (`x`); None when this object is a chumpy expression rather than a plain array."""
        return self.state.get("x")


@functools.lru_cache(maxsize=64)
def _chumpy_class(module: str, name: str) -> type[ChumpyArray]:
    """One `ChumpyArray` subclass per chumpy class named in a file (so errors can name it)."""
    return type(name, (ChumpyArray,), {"class_name": f"{module}.{name}"})


class SparseMatrix:
    """Stands in for a pickled scipy CSC matrix: keeps its state; `to_scipy()` rebuilds it with scipy."""

    format = "csc"
    state: Mapping[str, Any] = MappingProxyType({})

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a scipy.sparse {self.format}_matrix has state of type "
                                         f"{type(state).__name__}, expected a dict")
        self.state = state

    def to_scipy(self) -> scipy.sparse.spmatrix:
        """The matrix, rebuilt by scipy from the pickled data / indices / indptr / shape (not densified)."""
        state = self.state
        shape = state.get("_shape", state.get("shape"))
        parts = [state.get(key) for key in ("data", "indices", "indptr")]
        if shape is None or any(part is None for part in parts):
            raise ValueError(f"it is a scipy.sparse {self.format}_matrix without _shape, data, indices and indptr "
                             f"(it has {sorted(state)})")
        data, indices, indptr = (np.asarray(part) for part in parts)
        maker = scipy.sparse.csc_matrix if self.format == "csc" else scipy.sparse.csr_matrix
        return maker((data.astype(np.float64), indices.astype(np.int64), indptr.astype(np.int64)),
                     shape=tuple(int(n) for n in shape))


class _CsrMatrix(SparseMatrix):
    format = "csr"


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """`copyreg._reconstructor` (protocol 0/1 pickles of new-style objects), limited to the stub classes."""
    if not (isinstance(cls, type) and issubclass(cls, (ChumpyArray, SparseMatrix)) and base is object
            and state is None):
        raise RefusedError(f"refused copyreg._reconstructor({cls!r}, {base!r}, {state!r})")
    return cls()


def _encode_latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode`, which Python 3 writes for bytes in protocol-2 pickles; only latin-1 text is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedError(f"refused _codecs.encode of {type(text).__name__} with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


_NUMPY_MULTIARRAY = {"_reconstruct": np.core.multiarray._reconstruct, "scalar": np.core.multiarray.scalar}
_NUMPY_NUMERIC = {"_frombuffer": np.core.numeric._frombuffer}
_ALLOWED: dict[str, dict[str, Any]] = {
    "numpy": {"ndarray": np.ndarray, "dtype": np.dtype},
    "numpy.core.multiarray": _NUMPY_MULTIARRAY,  # numpy 1.x (and Python 2) pickles
    "numpy._core.multiarray": _NUMPY_MULTIARRAY,  # numpy 2.x pickles
    "numpy.core.numeric": _NUMPY_NUMERIC,  # protocol 5
    "numpy._core.numeric": _NUMPY_NUMERIC,
    "builtins": {"set": set, "frozenset": frozenset, "object": object},
    "__builtin__": {"set": set, "frozenset": frozenset, "object": object},  # Python 2 names
    "copyreg": {"_reconstructor": _reconstructor},
    "copy_reg": {"_reconstructor": _reconstructor},
    "_codecs": {"encode": _encode_latin1},
}
_SPARSE = {"csc_matrix": SparseMatrix, "csr_matrix": _CsrMatrix}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles FLAME files: numpy arrays, scipy CSC/CSR matrices, chumpy arrays and builtin containers only."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_class(module, name)
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _SPARSE:
            return _SPARSE[name]
        found = _ALLOWED.get(module, {}).get(name)
        if found is None:
            raise RefusedError(f"refused to load global '{module}.{name}': FLAME files hold only "
                                         "arrays, and this loader never runs code named by a file")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedError(f"refused persistent id {pid!r}")


def load_restricted(stream: BinaryIO | bytes) -> Any:
    """Unpickle `stream` (a binary file or bytes) with `RestrictedUnpickler`, latin-1 for Python-2 strings.

    Raises whatever the pickle machinery raises on bad data (`pickle.UnpicklingError`, `EOFError`, ...);
    callers turn that into an error naming the file.
    """
    if isinstance(stream, (bytes, bytearray)):
        stream = io.BytesIO(stream)
    return RestrictedUnpickler(stream, encoding="latin1").load()


def as_plain(value: Any) -> Any:
    """Replace a stub by what it stands for: a chumpy object by its array `x`, a sparse stub by a scipy matrix.

    Raises ValueError for a chumpy expression that stores no array.
    """
    for _ in range(8):  # a chumpy array may wrap another; bounded so a self-referencing file cannot loop
        if not isinstance(value, ChumpyArray):
            break
        if value.array is None:
            raise ValueError(f"it is a chumpy expression ({value.class_name}) without a stored array 'x'")
        value = value.array
    else:
        raise ValueError("it is a chain of more than 8 nested chumpy objects")
    return value.to_scipy() if isinstance(value, SparseMatrix) else value
