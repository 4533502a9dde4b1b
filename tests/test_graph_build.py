"""build_graph hands igraph its edges in chunks: the graph must not depend on the chunk size."""

from __future__ import annotations

import numpy as np
import pytest

from linkage import graph
from linkage.graph import EdgeArrays, build_graph


def test_chunked_build_equals_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 50, 200)
    b = rng.integers(0, 50, 200)
    src, dst = np.minimum(a, b), np.maximum(a, b) + 1
    edges = EdgeArrays(n_vertices=60, src=src, dst=dst, weight=rng.random(200))
    whole = build_graph(edges)
    monkeypatch.setattr(graph, "GRAPH_CHUNK", 7)
    chunked = build_graph(edges)
    assert chunked.vcount() == whole.vcount() == 60
    assert chunked.get_edgelist() == whole.get_edgelist() == list(zip(src.tolist(), dst.tolist()))
    assert chunked.es["weight"] == whole.es["weight"] == edges.weight.tolist()


def test_empty_graph_keeps_its_vertices() -> None:
    empty = np.empty(0, np.int64)
    g = build_graph(EdgeArrays(n_vertices=5, src=empty, dst=empty, weight=np.empty(0)))
    assert (g.vcount(), g.ecount()) == (5, 0)
