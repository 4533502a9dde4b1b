"""Communities: cut the account graph into clusters with Leiden, one connected component
at a time.

Connected components come first: they are cheap, they tell how far evidence percolates (a
giant component is the symptom of an undamped hub), and every account alone in its component
is a singleton with nothing to optimise.

The default objective is CPM (the constant Potts model). Its quality is a sum over
components, so each component can be optimised on its own; and its resolution has a direct
meaning: a cluster is worth keeping while its internal weighted density exceeds the
resolution. :func:`cpm_by_component` does exactly that, and makes the result of a component
a function of *that component's content only*:

* its vertices are numbered in account order (``idx`` is ``account_id`` order, so adding or
  removing accounts elsewhere does not change the order inside a component) and its edges
  keep their global ``(a, b)`` order;
* Leiden's random generator is seeded per component from the run's seed and the
  component's first account id (:func:`component_seed`), not shared between components;
* components of two or three accounts are solved exactly (the best of their two or five
  partitions by CPM quality; ties go to the partition with fewer accounts together) without
  calling Leiden.

So a component that nothing touched gets exactly the same clusters whatever happens in the
rest of the graph: the basis of warm-start stability (:mod:`linkage.warmstart`), of
incremental runs (:mod:`linkage.incremental`), and of any engine that runs components on
separate workers (it reproduces this function by calling :func:`cpm_by_component` on each
component's arrays, with the same names). Batching many components into one Leiden call is
*not* equivalent: the components would share one random stream and one visiting order, so
one component's result would depend on the others'. The Python call per component of four
or more accounts is the price (``docs/benchmarks.md``).

Modularity is available but does not decompose over components (its null model uses the
whole graph's weight), so it runs once over the graph of all linked accounts; it also suffers
the resolution limit on large graphs: it merges small rings once the graph is big enough.

Leiden runs in igraph's C implementation (``Graph.community_leiden``), faster than
``leidenalg.find_partition`` for the same objective (``docs/algorithm.md``). Its random
choices come from Python's :mod:`random` generator, which igraph uses by default; it is
seeded right before each call and restored afterwards.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import igraph as ig
import numpy as np

from linkage.config import CommunitiesConfig
from linkage.edge_arrays import EdgeArrays, graph_from_arrays

__all__ = [
    "Partition", "component_seed", "components_of", "connected_components", "cpm_by_component",
    "detect_communities", "detect_from_edges", "from_config", "renumber_clusters",
]


@dataclass(frozen=True)
class Partition:
    """The result of community detection.

    ``cluster`` holds, per vertex, a cluster number ``0..n_clusters-1`` for accounts in a
    cluster of two or more, and ``-1`` for singletons. Clusters are numbered in the order of
    their smallest vertex, so numbering is deterministic. ``component`` holds each vertex's
    connected component (numbered by smallest vertex) when known.
    """

    cluster: np.ndarray
    n_clusters: int
    n_components: int
    largest_component: int
    component: np.ndarray | None = None

    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertex ids, cluster numbers) of every clustered vertex, sorted by vertex."""
        idx = np.flatnonzero(self.cluster >= 0)
        return idx, self.cluster[idx]


def detect_communities(graph: ig.Graph, **options: Any) -> Partition:
    """Partition ``graph`` (edge attribute ``weight``) into communities.

    A convenience over :func:`detect_from_edges` for an igraph graph (undirected,
    weighted, without multi-edges; tests, notebooks), taking the same keyword ``options``;
    the pipeline hands over arrays directly.

    Examples
    --------
    >>> g = ig.Graph(n=5, edges=[(0, 1), (1, 2), (0, 2), (3, 4)])
    >>> g.es["weight"] = [0.9, 0.9, 0.9, 0.01]
    >>> detect_communities(g).cluster.tolist()
    [0, 0, 0, -1, -1]
    """
    pairs = np.asarray(graph.get_edgelist(), dtype=np.int64).reshape(-1, 2)
    weight = (np.asarray(graph.es["weight"], dtype=np.float64) if graph.ecount()
              else np.zeros(0, dtype=np.float64))
    src, dst = pairs.min(axis=1), pairs.max(axis=1)
    order = np.lexsort((dst, src))
    edges = EdgeArrays(graph.vcount(), src[order], dst[order], weight[order])
    return detect_from_edges(edges, **options)


def detect_from_edges(
    edges: EdgeArrays,
    *,
    objective: str = "cpm",
    resolution: float = 0.05,
    iterations: int = 1,
    beta: float = 0.01,
    seed: int = 0,
    initial: np.ndarray | None = None,
    core_edge: float = 0.6,
    core_min_size: int = 0,
    names: Sequence[str] | None = None,
    fixed: np.ndarray | None = None,
    components: np.ndarray | None = None,
) -> Partition:
    """Partition the graph of ``edges`` (``src < dst``, sorted by ``(src, dst)``) into
    communities.

    Parameters
    ----------
    objective : {"cpm", "modularity"}
    resolution : float
        CPM: minimum internal weighted density; modularity: the usual resolution parameter.
    iterations : int
        Leiden iterations (``-1``: until stable; the cost of more is in
        ``docs/configuration.md``).
    beta : float
        Randomness of Leiden's refinement step.
    seed : int
        The run's seed; each component's generator is seeded from it (:func:`component_seed`).
    initial : numpy.ndarray, optional
        A starting membership per vertex (warm start).
    core_edge, core_min_size : float, int
        Strong cores: accounts joined by edges of weight >= ``core_edge`` into a connected
        structure in which every account has at least two such links (the 2-core), with at
        least ``core_min_size`` accounts, form one cluster whatever Leiden made of them.
        0 disables the step.
    names : sequence of str, optional
        A content-stable name per vertex (the account id); components are seeded from their
        first vertex's name. Default: the vertex number.
    fixed : numpy.ndarray, optional
        Per connected component (numbered by smallest vertex), ``True`` to keep ``initial``
        there as it is: no Leiden, no strong-core step (a component known to be unchanged
        since the run that produced ``initial``; see :mod:`linkage.warmstart`).
    components : numpy.ndarray, optional
        :func:`connected_components` of ``edges``, if the caller has it.

    Returns
    -------
    Partition
    """
    n = edges.n_vertices
    comp = connected_components(edges) if components is None else components
    sizes = np.bincount(comp, minlength=1) if n else np.zeros(0, dtype=np.int64)
    if fixed is not None and (objective != "cpm" or initial is None):
        raise ValueError("fixed components need the cpm objective and an initial membership")
    if objective == "cpm":
        labels = cpm_by_component(
            edges, comp, resolution=resolution, iterations=iterations, beta=beta, seed=seed,
            initial=initial, names=names, fixed=fixed)
    else:
        labels = _modularity(edges, comp, sizes, resolution=resolution,
                             iterations=iterations, beta=beta, seed=seed, initial=initial)
    free = None if fixed is None else ~np.asarray(fixed, dtype=bool)[comp]
    if core_min_size:
        _strong_cores(edges, labels, core_edge, core_min_size, free)
    _detach_pendants(edges, labels, core_edge, free)
    cluster = renumber_clusters(labels)
    return Partition(
        cluster=cluster,
        n_clusters=int(cluster.max() + 1) if n and cluster.max() >= 0 else 0,
        n_components=len(sizes) if n else 0,
        largest_component=int(sizes.max()) if n else 0,
        component=comp,
    )


def connected_components(edges: EdgeArrays) -> np.ndarray:
    """Component number per vertex, components numbered by their smallest vertex."""
    return components_of(edges.n_vertices, edges.src, edges.dst)


def components_of(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected component per vertex of the graph of edges ``(src, dst)`` on ``n``
    vertices, numbered by smallest vertex (igraph's numbering), in numpy.

    Every vertex points at a representative, at first itself. Each round hooks the
    representative of every edge's end to the smaller of the two ends' representatives,
    then follows pointers until every vertex points at a root (pointer jumping). Pointers
    only decrease and stay inside the component, so once a round changes nothing every
    edge's ends share one root, which is the component's smallest vertex. A few rounds
    suffice, and no igraph graph is built: building one from the arrays costs more than
    the whole computation (``docs/benchmarks.md``).
    """
    label = np.arange(n, dtype=np.int64)
    while src.size:
        low = np.minimum(label[src], label[dst])
        hooked = label.copy()
        np.minimum.at(hooked, label[src], low)
        np.minimum.at(hooked, label[dst], low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, label):
            break
        label = hooked
    return np.unique(label, return_inverse=True)[1].astype(np.int64, copy=False)


def _membership(g: ig.Graph) -> np.ndarray:
    """Connected component per vertex, numbered by smallest vertex: igraph's C routine
    without the ``VertexClustering`` wrapper (which scans the list in Python for its max)."""
    return np.asarray(ig.GraphBase.connected_components(g), dtype=np.int64)


def component_seed(seed: int, first_name: str) -> int:
    """The seed of Leiden's generator for a component whose first account is ``first_name``:
    64 bits of SHA-256 over the run's seed and that name, so it depends on nothing else.

    >>> component_seed(0, "a") == component_seed(0, "a") != component_seed(1, "a")
    True
    """
    digest = hashlib.sha256(f"{int(seed)}\x00{first_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def cpm_by_component(
    edges: EdgeArrays,
    comp: np.ndarray,
    *,
    resolution: float,
    iterations: int = 1,
    beta: float = 0.01,
    seed: int = 0,
    initial: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """CPM clusters of every component, each computed from that component alone.

    Returns a label per vertex; labels are unique across components, and a label held by
    one vertex only means a singleton (pass the result through :func:`renumber_clusters`).
    Components where ``fixed`` is true keep their ``initial`` labels.
    ``comp`` is :func:`connected_components` of ``edges``. A component's labels depend only
    on its own vertices (in order), edges (in order), weights, starting membership, the
    run's seed and its first vertex's name: see the module docstring.

    Examples
    --------
    >>> e = EdgeArrays(5, np.array([0, 3]), np.array([1, 4]), np.array([0.9, 0.01]))
    >>> renumber_clusters(cpm_by_component(e, connected_components(e), resolution=0.05)).tolist()
    [0, 0, -1, -1, -1]
    """
    n = edges.n_vertices
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(comp)
    # Vertices grouped by component, in vertex order within each; a component's block
    # starts at starts[c], and base labels (unique per vertex) are block positions.
    order = np.lexsort((np.arange(n), comp))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    local = np.empty(n, dtype=np.int64)
    local[order] = np.arange(n) - starts[comp[order]]
    labels = starts[comp] + local  # everyone alone to begin with
    work = np.ones(sizes.shape[0], dtype=bool)
    if fixed is not None:
        assert initial is not None
        work = ~np.asarray(fixed, dtype=bool)
        carried = ~work[comp]
        labels[carried] = n + _dense(np.asarray(initial)[carried])  # above every block label
    ce = comp[edges.src]
    eorder = np.argsort(ce, kind="stable")  # keeps (src, dst) order inside a component
    estarts = np.concatenate([[0], np.cumsum(np.bincount(ce, minlength=sizes.shape[0]))])

    # Pairs: together when their edge beats the resolution (CPM gain w - resolution).
    pair_edges = np.flatnonzero((sizes[ce] == 2) & work[ce])
    together = pair_edges[edges.weight[pair_edges] > resolution]
    labels[edges.dst[together]] = labels[edges.src[together]]

    # Triples: the best of the five partitions, ties to the earlier (fewer together).
    tri = np.flatnonzero((sizes == 3) & work)
    if tri.size:
        w = np.zeros((sizes.shape[0], 3))
        tri_edges = np.flatnonzero((sizes[ce] == 3) & work[ce])
        slot = local[edges.src[tri_edges]] + local[edges.dst[tri_edges]] - 1  # 01→0 02→1 12→2
        w[ce[tri_edges], slot] = edges.weight[tri_edges]
        wt = w[tri]
        quality = np.column_stack([
            np.zeros(tri.size), wt[:, 0] - resolution, wt[:, 1] - resolution,
            wt[:, 2] - resolution, wt.sum(axis=1) - 3 * resolution])
        choice = np.argmax(quality, axis=1)
        local_labels = np.array([[0, 1, 2], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 0, 0]])
        block = order[starts[tri][:, None] + np.arange(3)]  # the three vertices, in order
        labels[block] = starts[tri][:, None] + local_labels[choice]

    big = np.flatnonzero((sizes >= 4) & work)
    if big.size:
        state = random.getstate()
        try:
            for c in big.tolist():
                vs = order[starts[c]:starts[c] + sizes[c]]
                es = eorder[estarts[c]:estarts[c + 1]]
                g = graph_from_arrays(int(sizes[c]), local[edges.src[es]], local[edges.dst[es]])
                kwargs: dict = {
                    "objective_function": "CPM", "weights": edges.weight[es].tolist(),
                    "resolution": resolution, "beta": beta, "n_iterations": iterations,
                }
                if initial is not None:
                    kwargs["initial_membership"] = _dense(np.asarray(initial)[vs]).tolist()
                first = str(names[int(vs[0])]) if names is not None else str(int(vs[0]))
                random.seed(component_seed(seed, first))
                found = np.asarray(g.community_leiden(**kwargs).membership, dtype=np.int64)
                labels[vs] = starts[c] + found
        finally:
            random.setstate(state)  # do not disturb anyone else's use of random
    return labels


def _modularity(edges: EdgeArrays, comp: np.ndarray, sizes: np.ndarray, *, resolution: float,
                iterations: int, beta: float, seed: int,
                initial: np.ndarray | None) -> np.ndarray:
    """One Leiden run with modularity over the graph of every linked account."""
    n = edges.n_vertices
    labels = np.full(n, -1, dtype=np.int64)
    linked = np.flatnonzero(sizes[comp] >= 2) if n else np.zeros(0, dtype=np.int64)
    if not linked.size:
        return labels
    position = np.full(n, -1, dtype=np.int64)
    position[linked] = np.arange(linked.size)
    sub = graph_from_arrays(int(linked.size), position[edges.src], position[edges.dst])
    kwargs: dict = {"objective_function": "modularity", "weights": edges.weight.tolist(),
                    "resolution": resolution, "beta": beta, "n_iterations": iterations}
    if initial is not None:
        kwargs["initial_membership"] = _dense(np.asarray(initial)[linked]).tolist()
    state = random.getstate()
    try:
        random.seed(seed)
        labels[linked] = sub.community_leiden(**kwargs).membership
    finally:
        random.setstate(state)
    return labels


def _strong_cores(edges: EdgeArrays, labels: np.ndarray, core_edge: float,
                  min_size: int, free: np.ndarray | None = None) -> None:
    """Give each large strong core its own cluster label, in place.

    An operator who chains accounts through cards and devices that each only two to four of
    them share (camouflage) builds a long, sparse structure: its density is far below any
    CPM resolution that keeps ordinary neighbourhoods apart, so Leiden cuts it into pieces.
    Its strong links still form one connected 2-core. Ordinary users rarely do: a family's
    shared card is a small clique, and a real account (or a whole family) that shares one
    attribute with a fake hangs off the core by a single link, a bridge, which is cut
    before the 2-core is taken. A core lies inside one
    component, so this step too depends on each component's content only. Only vertices
    where ``free`` is true (default: all) take part.
    """
    strong = edges.weight >= core_edge
    if free is not None:
        strong &= free[edges.src]
    strong_edges = np.flatnonzero(strong)
    if not strong_edges.size:
        return
    src, dst = edges.src[strong_edges], edges.dst[strong_edges]
    strong = graph_from_arrays(edges.n_vertices, src, dst)
    _cut_hanging_blocks(strong, src, dst, min_size)
    core = np.asarray(strong.coreness(), dtype=np.int64) >= 2
    if not core.any():
        return
    vertices = np.flatnonzero(core)
    comp = _membership(strong.induced_subgraph(vertices.tolist()))
    sizes = np.bincount(comp)
    big = sizes[comp] >= min_size
    if not big.any():
        return
    # New labels above every Leiden label; renumber_clusters orders all clusters afterwards.
    labels[vertices[big]] = labels.max(initial=-1) + 1 + comp[big]


def _detach_pendants(edges: EdgeArrays, labels: np.ndarray, strong: float,
                     free: np.ndarray | None = None) -> None:
    """Put each weakly attached pendant of a cluster on its own, in place.

    A member whose only link inside its cluster is one edge, weaker than ``strong``, to a
    member that is tied to the cluster otherwise too, is that member's acquaintance (one
    shared address, one referral code), not the cluster's: CPM keeps it in a small cluster
    because a single edge outweighs the density the cluster must keep
    (``w > resolution (n - 1)``), but one weak witness to one member ties it to nobody else.
    Repeated until no such member is left (a chain of acquaintances goes one by one). A
    member whose every link runs to such pendants (a pair, a path of three, a star) is not
    a cluster they hang off, and they stay. A pendant by a strong link (a card, a phone)
    stays: the strong-core step already cuts those that hang off a core. Only vertices
    where ``free`` is true (default: all) are detached.
    """
    if not len(edges):
        return
    fresh = labels.max(initial=-1) + 1
    # The edges inside clusters, once: a detached pendant takes its one such edge with it.
    inside = (labels[edges.src] == labels[edges.dst]) & (labels[edges.src] >= 0)
    src, dst, weight = edges.src[inside], edges.dst[inside], edges.weight[inside]
    while True:
        degree = np.bincount(np.concatenate([src, dst]), minlength=edges.n_vertices)
        hangs_src = (degree[src] == 1) & (weight < strong)  # src hangs off dst by this edge
        hangs_dst = (degree[dst] == 1) & (weight < strong)
        # each vertex's links to members that do not hang off it
        held = degree - np.bincount(np.concatenate([dst[hangs_src], src[hangs_dst]]),
                                    minlength=edges.n_vertices)
        pendant = np.concatenate([src[hangs_src & (held[dst] >= 1)],
                                  dst[hangs_dst & (held[src] >= 1)]])
        if free is not None:
            pendant = pendant[free[pendant]]
        if not pendant.size:
            return
        labels[pendant] = fresh + np.arange(pendant.size)
        fresh += pendant.size
        keep = labels[src] == labels[dst]
        src, dst, weight = src[keep], dst[keep], weight[keep]


def _cut_hanging_blocks(strong: ig.Graph, src: np.ndarray, dst: np.ndarray,
                        min_size: int) -> None:
    """Delete, in place, the strong links by which a small block hangs off the rest.

    A bridge is a strong link whose loss would cut the structure in two. Cut at its bridges,
    the structure falls into blocks (2-edge-connected parts), which the bridges join into a
    tree. A family whose one member shares an identifier with one fake is a *leaf* of that
    tree: a small block (its own card) hanging by one bridge. A camouflage chain is a path
    of small blocks, each joined to the next by a bridge: its blocks inside the chain have
    two bridges or more, and stay. So the bridges cut are those of the leaf blocks smaller
    than ``min_size`` (only once: the chain's two end blocks go, not the whole chain).
    ``src`` and ``dst`` are the ends of ``strong``'s edges, in its edge order."""
    bridges = strong.bridges()
    if not bridges:
        return
    cut = np.asarray(bridges, dtype=np.int64)
    kept = np.ones(src.shape[0], dtype=bool)
    kept[cut] = False
    blocks = graph_from_arrays(strong.vcount(), src[kept], dst[kept])
    block = np.asarray(blocks.connected_components().membership, dtype=np.int64)
    a, b = block[src[cut]], block[dst[cut]]
    size = np.bincount(block)
    degree = np.bincount(np.concatenate([a, b]), minlength=size.shape[0])
    leaf = (degree == 1) & (size < min_size)
    strong.delete_edges(cut[leaf[a] | leaf[b]].tolist())


def _dense(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1]


def renumber_clusters(labels: np.ndarray) -> np.ndarray:
    """Drop singletons (-1) and number clusters by their smallest vertex."""
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    valid = np.flatnonzero(labels >= 0)
    if not valid.size:
        return out
    lab = labels[valid]
    uniq, first, inverse, counts = np.unique(lab, return_index=True, return_inverse=True,
                                             return_counts=True)
    keep = counts >= 2
    # valid is sorted, so valid[first] is each label's smallest vertex
    order = np.argsort(valid[first[keep]], kind="stable")
    new_id = np.full(uniq.shape[0], -1, dtype=np.int64)
    new_id[np.flatnonzero(keep)[order]] = np.arange(order.shape[0])
    out[valid] = new_id[inverse]
    return out


def from_config(edges: EdgeArrays, cfg: CommunitiesConfig, seed: int,
                initial: np.ndarray | None = None,
                names: Sequence[str] | None = None,
                fixed: np.ndarray | None = None,
                components: np.ndarray | None = None) -> Partition:
    """:func:`detect_from_edges` with a :class:`~linkage.config.CommunitiesConfig`."""
    return detect_from_edges(
        edges,
        objective=cfg.objective,
        resolution=cfg.resolution,
        iterations=cfg.iterations,
        beta=cfg.beta,
        seed=seed,
        initial=initial,
        core_edge=cfg.core_edge,
        core_min_size=cfg.core_min_size,
        names=names,
        fixed=fixed,
        components=components,
    )
