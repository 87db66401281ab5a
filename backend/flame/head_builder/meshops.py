"""Mesh graph helpers: vertex adjacency and harmonic interpolation of per-vertex fields."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg


def adjacency(faces: np.ndarray, n_vertices: int) -> scipy.sparse.csr_matrix:
    """Symmetric 0/1 vertex adjacency from triangle edges.  # [V, V]"""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adj = scipy.sparse.csr_matrix((np.ones(edges.shape[0]), (edges[:, 0], edges[:, 1])), shape=(n_vertices,) * 2)
    adj.data[:] = 1.0
    return adj


def harmonic(adj: scipy.sparse.csr_matrix, values: np.ndarray, fixed: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Fill `free` vertices by solving the graph Laplace equation with `fixed` vertices held.  # [V, ...]

    Vertices neither fixed nor free keep `values` and act as further boundary conditions.
    """
    free = free & ~fixed
    ids = np.flatnonzero(free)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    sub = adj[ids][:, ids]
    lap = scipy.sparse.diags(degree[ids]) - sub
    rhs = adj[ids][:, ~free] @ values[~free]
    out = values.astype(np.float64).copy()
    out[ids] = scipy.sparse.linalg.spsolve(lap.tocsc(), rhs)
    return out
