"""Load a torch checkpoint that holds numpy arrays without letting numpy unpickle untrusted state.

`torch.load(weights_only=True)` refuses numpy arrays unless numpy's `_reconstruct`, `ndarray` and
`dtype` are allow-listed, and then it hands the file's bytes to `ndarray.__setstate__` and
`dtype.__setstate__`, which are not memory-safe: a damaged dtype state crashes the process (found by
the fuzz tests). So the allow-list maps those three names to the stand-ins below instead. They accept
only what numpy writes for a plain numeric array (a type code like "f4", a byte order, a shape, raw
bytes of exactly the right size) and build the array with `np.frombuffer`. Anything else is refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_NDIM = 8
MAX_DEPTH = 32
_TYPE_CODE = re.compile(r"[<>|=]?[biuf][1248]")  # plain numeric dtypes only (no objects, records, strings)


class _DType:
    """Stand-in for `numpy.dtype` during unpickling. numpy writes `dtype('f4', False, True)` + a state."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or not _TYPE_CODE.fullmatch(code):
            raise ValueError(f"refused numpy dtype {code!r:.40}: only plain numeric arrays are accepted")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        # numpy's state: (version, byte order, subarray, names, fields, itemsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "|", "="):
            raise ValueError(f"refused numpy dtype state {state!r:.80}")
        if any(part is not None for part in state[2:5]):
            raise ValueError("refused a structured or sub-array numpy dtype")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """Stand-in for `numpy.ndarray` / `_reconstruct` during unpickling; `array` is set by the state."""

    def __init__(self, *args: Any) -> None:  # _reconstruct(ndarray, (0,), b'b'): the arguments are unused
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # numpy's state: (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError(f"refused numpy array state of type {type(state).__name__}")
        _, shape, dtype, fortran, data = state
        if (not isinstance(shape, tuple) or len(shape) > MAX_NDIM
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise ValueError(f"refused numpy array shape {shape!r:.80}")
        if not isinstance(dtype, _DType) or not isinstance(fortran, bool) or not isinstance(data, bytes):
            raise ValueError("refused numpy array state (dtype, order or data of the wrong kind)")
        if math.prod(shape) * dtype.dtype.itemsize != len(data):
            raise ValueError(f"numpy array of shape {list(shape)} and dtype {dtype.dtype} needs "
                             f"{math.prod(shape) * dtype.dtype.itemsize} bytes, the file has {len(data)}")
        flat = np.frombuffer(data, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").astype(dtype.dtype.newbyteorder("="))


SAFE_GLOBALS = [
    (_Array, "numpy.core.multiarray._reconstruct"),
    (_Array, "numpy._core.multiarray._reconstruct"),  # the name numpy >= 2 pickles under
    (_Array, "numpy.ndarray"),
    (_DType, "numpy.dtype"),
]
"""What `torch.load(weights_only=True)` may resolve on top of its own list: the stand-ins above only."""


def load(path: Path) -> Any:
    """`torch.load(path, weights_only=True, map_location="cpu")` with numpy arrays read by the stand-ins.

    Raises:
        whatever `torch.load` raises (pickle.UnpicklingError for a refused global, ...), and ValueError
        for a refused or damaged numpy array.
    """
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        payload = torch.load(path, weights_only=True, map_location="cpu")
    return _unwrap(payload, 0)


def _unwrap(value: Any, depth: int) -> Any:
    """Replace the stand-ins in `value` (dicts, lists, tuples) with the numpy arrays they hold."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Array):
        if value.array is None:
            raise ValueError("a numpy array without data")
        return value.array
    if isinstance(value, _DType):
        raise ValueError("a bare numpy dtype where a value was expected")
    if isinstance(value, dict):
        return {key: _unwrap(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item, depth + 1) for item in value)
    return value
