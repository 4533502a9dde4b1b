"""Edges as numpy arrays, and the igraph graph built from them in one call.

The hand-off between the graph stage (:mod:`linkage.graph`), which builds the edges on the
engine, and the stages that read them on the driver (communities, warm start, campaigns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linkage._igraph import ig

__all__ = ["EdgeArrays", "build_graph", "graph_from_arrays"]


@dataclass(frozen=True)
class EdgeArrays:
    """Edges as parallel arrays; ``src < dst``, sorted by (src, dst)."""

    n_vertices: int
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return int(self.src.shape[0])


def graph_from_arrays(n: int, src: np.ndarray, dst: np.ndarray) -> ig.Graph:
    """An undirected igraph graph of ``n`` vertices with the edges ``src[i] - dst[i]``.

    ``add_edges`` on an ``(m, 2)`` array is python-igraph's fastest and leanest input, ahead
    of lists of tuples and of the same array passed to the constructor (figures in
    docs/benchmarks.md).
    """
    g = ig.Graph(n=n, directed=False)
    if len(src):
        g.add_edges(np.column_stack([src, dst]))
    return g


def build_graph(edges: EdgeArrays) -> ig.Graph:
    """An undirected igraph graph with one vertex per account (vertex id = ``idx``) and the
    edge weights in the ``weight`` attribute, built from arrays in one call."""
    g = graph_from_arrays(edges.n_vertices, edges.src, edges.dst)
    g.es["weight"] = edges.weight
    return g
