"""Deterministic 3D value noise from an integer hash (no random generator, identical on every platform)."""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
    """Lattice values in [0, 1) from integer coordinates (a splitmix64-style mix).  # [N]"""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ iz.astype(np.uint64) * np.uint64(0x165667B19E3779F9)) & _MASK
        h ^= h >> np.uint64(31)
        h = (h * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(p: np.ndarray, cell: float) -> np.ndarray:
    """Smooth noise in [-1, 1] with features about `cell` metres apart.  # [N]"""
    q = p / cell + 1000.0  # keep lattice coordinates positive
    i = np.floor(q).astype(np.int64)
    f = q - i
    w = f * f * (3.0 - 2.0 * f)  # [N, 3]
    out = np.zeros(p.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = (np.where(dx, w[:, 0], 1 - w[:, 0]) * np.where(dy, w[:, 1], 1 - w[:, 1])
                          * np.where(dz, w[:, 2], 1 - w[:, 2]))
                out += weight * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
    return 2.0 * out - 1.0
