"""graph_from_arrays / build_graph: igraph graphs from edge arrays."""

from __future__ import annotations

import numpy as np

from linkage.edge_arrays import EdgeArrays, build_graph, graph_from_arrays


def test_build_graph_keeps_every_edge_and_weight_in_order() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 50, 200)
    b = rng.integers(0, 50, 200)
    src, dst = np.minimum(a, b), np.maximum(a, b) + 1
    edges = EdgeArrays(n_vertices=60, src=src, dst=dst, weight=rng.random(200))
    g = build_graph(edges)
    assert (g.vcount(), g.is_directed()) == (60, False)
    assert g.get_edgelist() == list(zip(src.tolist(), dst.tolist(), strict=True))
    assert g.es["weight"] == edges.weight.tolist()


def test_empty_graph_keeps_its_vertices() -> None:
    empty = np.empty(0, np.int64)
    g = build_graph(EdgeArrays(n_vertices=5, src=empty, dst=empty, weight=np.empty(0)))
    assert (g.vcount(), g.ecount()) == (5, 0)
    assert graph_from_arrays(3, empty, empty).vcount() == 3
