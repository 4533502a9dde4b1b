"""Community detection: invariants, networkx as the oracle for components, determinism."""

from __future__ import annotations

import random

import igraph as ig
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.communities import connected_components, detect_communities
from linkage.edge_arrays import EdgeArrays
from tests.helpers import examples


def random_graph(seed: int, n: int = 200, m: int = 300) -> ig.Graph:
    rng = np.random.default_rng(seed)
    pairs = {tuple(sorted(p)) for p in rng.integers(0, n, size=(m, 2)).tolist() if p[0] != p[1]}
    pairs = sorted(pairs)
    g = ig.Graph(n=n, edges=pairs)
    g.es["weight"] = rng.uniform(0.01, 1.0, len(pairs)).tolist()
    return g


def planted(rings: int, size: int, noise: int, seed: int) -> tuple[ig.Graph, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rings * size + noise
    truth = np.full(n, -1)
    edges, weights = [], []
    for r in range(rings):
        members = range(r * size, (r + 1) * size)
        truth[list(members)] = r
        for a in members:
            for b in members:
                if a < b and rng.random() < 0.5:
                    edges.append((a, b))
                    weights.append(float(rng.uniform(0.3, 0.9)))
    return with_noise(n, edges, weights, rng, count=n, weight=0.02), truth


def with_noise(n: int, edges: list, weights: list, rng, *, count: int,
               weight: float) -> ig.Graph:
    """The graph of ``edges`` plus ``count`` weak random edges everywhere (duplicates keep
    the heavier weight)."""
    for _ in range(count):
        a, b = sorted(rng.integers(0, n, 2).tolist())
        if a != b:
            edges.append((a, b))
            weights.append(weight)
    g = ig.Graph(n=n, edges=edges)
    g.es["weight"] = weights
    g.simplify(combine_edges="max")
    return g


@settings(max_examples=examples(25), deadline=None)
@given(seed=st.integers(0, 10_000))
def test_result_is_a_partition_within_components(seed):
    g = random_graph(seed)
    part = detect_communities(g, seed=seed)
    labels = part.cluster
    assert labels.shape == (g.vcount(),)
    clustered = labels[labels >= 0]
    # numbering is dense, every cluster has at least two members
    assert set(clustered.tolist()) == set(range(part.n_clusters))
    assert np.bincount(clustered).min(initial=2) >= 2
    # clusters never span two connected components (networkx as the oracle)
    nxg = nx.Graph()
    nxg.add_nodes_from(range(g.vcount()))
    nxg.add_edges_from(g.get_edgelist())
    comp_of = {v: i for i, comp in enumerate(nx.connected_components(nxg)) for v in comp}
    for c in range(part.n_clusters):
        members = np.flatnonzero(labels == c)
        assert len({comp_of[v] for v in members}) == 1
    assert part.n_components == nx.number_connected_components(nxg)
    assert part.largest_component == max(len(c) for c in nx.connected_components(nxg))


def test_cluster_numbering_follows_smallest_member():
    g = ig.Graph(n=6, edges=[(4, 5), (0, 3), (1, 2)])
    g.es["weight"] = [0.9, 0.9, 0.9]
    assert detect_communities(g).cluster.tolist() == [0, 1, 1, 0, 2, 2]


def test_same_graph_same_seed_same_clusters_and_random_state_untouched():
    g = random_graph(3, n=2000, m=6000)
    random.seed(99)
    before = random.random()
    random.seed(99)
    a = detect_communities(g, seed=7).cluster
    assert random.random() == before
    b = detect_communities(g, seed=7).cluster
    assert (a == b).all()


def test_cpm_recovers_planted_rings():
    g, truth = planted(rings=20, size=15, noise=400, seed=1)
    labels = detect_communities(g, objective="cpm", resolution=0.05, seed=1).cluster
    for r in range(20):
        members = labels[truth == r]
        assert len(set(members.tolist())) == 1 and members[0] >= 0
    ring_labels = set(labels[truth >= 0].tolist())
    assert len(ring_labels) == 20


def test_modularity_objective_is_available():
    g, truth = planted(rings=5, size=10, noise=50, seed=2)
    labels = detect_communities(g, objective="modularity", resolution=1.0, seed=2).cluster
    assert labels[truth == 0][0] >= 0


def test_warm_start_from_initial_membership_keeps_a_good_partition():
    g, _ = planted(rings=8, size=12, noise=100, seed=4)
    first = detect_communities(g, seed=4).cluster
    again = detect_communities(g, seed=99, initial=np.where(first >= 0, first, -1)
                               + (first < 0) * (np.arange(len(first)) + 10_000)).cluster
    assert (again == first).all()


def test_empty_and_edgeless_graphs():
    assert detect_communities(ig.Graph(n=0)).n_clusters == 0
    g = ig.Graph(n=4)
    g.es["weight"] = []
    part = detect_communities(g)
    assert part.cluster.tolist() == [-1, -1, -1, -1] and part.n_components == 4


@pytest.mark.parametrize("weight,expected", [(0.9, [0, 0]), (0.01, [-1, -1])])
def test_pair_is_a_cluster_only_above_resolution(weight, expected):
    g = ig.Graph(n=2, edges=[(0, 1)])
    g.es["weight"] = [weight]
    assert detect_communities(g, resolution=0.05).cluster.tolist() == expected


def chain_ring(size: int, noise: int, seed: int) -> tuple[ig.Graph, np.ndarray]:
    """A camouflage ring: accounts 0..size-1 linked only to their next two in a chain by
    strong shared-identifier edges, inside a crowd with weak random edges, plus real
    accounts that each share one identifier with one fake (a single strong link)."""
    rng = np.random.default_rng(seed)
    n = size + noise
    edges = [(i, i + k) for i in range(size) for k in (1, 2) if i + k < size]
    weights = [0.7] * len(edges)
    leaves = rng.choice(np.arange(size, n), size=size // 2, replace=False)
    edges += [(int(rng.integers(0, size)), int(leaf)) for leaf in leaves]
    weights += [0.8] * len(leaves)
    return with_noise(n, edges, weights, rng, count=2 * n, weight=0.03), leaves


def test_strong_core_keeps_a_chain_ring_whole_and_prunes_hangers_on():
    g, leaves = chain_ring(size=120, noise=400, seed=3)
    plain = detect_communities(g, seed=1).cluster
    # CPM alone cuts the sparse chain into many pieces ...
    assert len(set(plain[:120].tolist())) > 5
    cored = detect_communities(g, seed=1, core_edge=0.6, core_min_size=8).cluster
    # ... the strong 2-core holds it together, without the real accounts hanging off it
    assert len(set(cored[:120].tolist())) == 1 and cored[0] >= 0
    assert not (cored[leaves] == cored[0]).any()


def test_a_family_hanging_off_a_ring_by_one_strong_link_is_not_part_of_its_core():
    # A ring of 20 whose strong links close cycles (each account to the next two), and a
    # family of four (a strong clique: its shared card) of which one member shares an
    # identifier with one fake: a bridge. The core is the ring alone.
    ring = [(i, (i + k) % 20) for i in range(20) for k in (1, 2)]
    family = [(a, b) for a in range(20, 24) for b in range(a + 1, 24)]
    g = ig.Graph(n=24, edges=ring + family + [(5, 20)])
    g.es["weight"] = [0.7] * len(ring) + [0.9] * len(family) + [0.9]
    cored = detect_communities(g, seed=1, core_edge=0.6, core_min_size=8).cluster
    assert len(set(cored[:20].tolist())) == 1 and cored[0] >= 0
    assert not (cored[20:] == cored[0]).any()


def test_a_chain_of_small_blocks_stays_one_core_and_only_its_leaves_are_cut():
    # A camouflage chain: eight cards each shared by three accounts (strong triangles), each
    # joined to the next by one device shared by two accounts (a bridge). Its inner blocks
    # hang by two bridges and stay; its two end blocks are leaves and are cut, like the
    # family of three that hangs off its middle by one borrowed identifier.
    tri = [(3 * k + a, 3 * k + b) for k in range(8) for a, b in ((0, 1), (1, 2), (0, 2))]
    chain = [(3 * k + 2, 3 * (k + 1)) for k in range(7)]
    family = [(24, 25), (25, 26), (24, 26)]
    g = ig.Graph(n=27, edges=tri + chain + family + [(13, 24)])
    g.es["weight"] = [0.8] * g.ecount()
    cored = detect_communities(g, seed=1, core_edge=0.6, core_min_size=8).cluster
    inner = list(range(3, 21))
    assert len(set(cored[inner].tolist())) == 1 and cored[3] >= 0
    assert not (cored[24:] == cored[3]).any()


def test_an_acquaintance_tied_by_one_weak_link_to_one_member_is_detached():
    # Six accounts tied to each other by their templates (0.5 each), and two outsiders: 6
    # shares one address with member 0 (0.45, weak), 7 shares a card with member 1 (0.9,
    # strong). CPM keeps both with the six (0.45 > resolution * 7); 6 goes, the card holder
    # stays.
    core = [(a, b) for a in range(6) for b in range(a + 1, 6)]
    g = ig.Graph(n=8, edges=[*core, (0, 6), (1, 7)])
    g.es["weight"] = [0.5] * len(core) + [0.45, 0.9]
    cluster = detect_communities(g, seed=1, resolution=0.05).cluster
    assert len(set(cluster[:6].tolist())) == 1 and cluster[0] >= 0
    assert cluster[7] == cluster[0]
    assert cluster[6] == -1
    # a pair is all its one edge: it stays a cluster
    pair = ig.Graph(n=2, edges=[(0, 1)])
    pair.es["weight"] = [0.45]
    assert detect_communities(pair, seed=1).cluster.tolist() == [0, 0]


def test_small_strong_cores_are_left_to_leiden():
    g = ig.Graph(n=4, edges=[(0, 1), (1, 2), (0, 2), (2, 3)])
    g.es["weight"] = [0.9, 0.9, 0.9, 0.9]
    a = detect_communities(g, core_min_size=8).cluster
    b = detect_communities(g, core_min_size=0).cluster
    assert (a == b).all()


# --- per component: a component's clusters depend on its own content only -----------------

def _component_graph(seed: int) -> tuple[list[tuple[int, int]], list[float], int]:
    """A random component-ish blob: planted rings plus noise on ``n`` vertices."""
    g, _ = planted(rings=3, size=6, noise=10, seed=seed)
    return [tuple(e) for e in g.get_edgelist()], list(g.es["weight"]), g.vcount()


def _union(parts: list[tuple[list, list, int]], names_of: list[list[str]]):
    """One graph of disjoint parts, vertices ordered by name (as ``idx`` is by account id)."""
    names = [nm for part in names_of for nm in part]
    rank = {nm: i for i, nm in enumerate(sorted(names))}
    edges, weights = [], []
    for (es, ws, _), part_names in zip(parts, names_of, strict=True):
        for (a, b), w in zip(es, ws, strict=True):
            edges.append(tuple(sorted((rank[part_names[a]], rank[part_names[b]]))))
            weights.append(w)
    g = ig.Graph(n=len(names), edges=edges)
    g.es["weight"] = weights
    return g, sorted(names)


def _clusters_by_name(labels: np.ndarray, names: list[str]) -> set[frozenset[str]]:
    out: dict[int, set[str]] = {}
    for lab, nm in zip(labels.tolist(), names, strict=True):
        if lab >= 0:
            out.setdefault(lab, set()).add(nm)
    return {frozenset(m) for m in out.values()}


@settings(max_examples=examples(15), deadline=None)
@given(seed=st.integers(0, 10_000), other=st.integers(0, 10_000))
def test_an_untouched_component_gets_the_same_clusters_whatever_else_changes(seed, other):
    kept = _component_graph(seed)
    kept_names = [f"k{i:03d}" for i in range(kept[2])]
    # Tonight another component changed and new accounts sort before and between ours.
    night1 = [kept, _component_graph(other)]
    night2 = [kept, _component_graph(other + 1), _component_graph(other + 2)]
    names1 = [kept_names, [f"m{i:03d}" for i in range(night1[1][2])]]
    names2 = [kept_names, [f"a{i:03d}" for i in range(night2[1][2])],
              [f"k{i:03d}x" for i in range(night2[2][2])]]
    results = []
    for parts, names_of in ((night1, names1), (night2, names2)):
        g, names = _union(parts, names_of)
        labels = detect_communities(g, seed=5, names=names, core_min_size=8).cluster
        results.append({c for c in _clusters_by_name(labels, names) if c <= set(kept_names)})
    assert results[0] == results[1]


def _cpm(labels: list[int], weights: dict[tuple[int, int], float], res: float) -> float:
    q = sum(w for (a, b), w in weights.items() if labels[a] == labels[b])
    sizes = np.bincount(labels)
    return q - res * float((sizes * (sizes - 1) / 2).sum())


@settings(max_examples=examples(50), deadline=None)
@given(w=st.lists(st.sampled_from([0.0, 0.02, 0.04, 0.06, 0.3, 0.9]), min_size=3, max_size=3))
def test_components_of_three_are_solved_exactly(w):
    pairs = [(0, 1), (0, 2), (1, 2)]
    weights = {p: x for p, x in zip(pairs, w, strict=True) if x > 0}
    if len(weights) < 2:
        return  # not one component of three
    g = ig.Graph(n=3, edges=list(weights))
    g.es["weight"] = list(weights.values())
    got = detect_communities(g, resolution=0.05).cluster
    got_labels = np.where(got >= 0, got, 10 + np.arange(3)).tolist()
    best = max(([0, 1, 2], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 0, 0]),
               key=lambda p: _cpm(p, weights, 0.05))
    # CPM's best, except that an account hanging by a weak link (below the strong 0.6) off
    # a pair joined by a strong one is an acquaintance, on its own
    (weak, w_weak), (strong, w_strong) = sorted(weights.items(), key=lambda kv: kv[1])[-2:]
    if best == [0, 0, 0] and len(weights) == 2 and w_weak < 0.6 <= w_strong:
        (alone,) = set(weak) - set(strong)
        best = [1 if v == alone else 0 for v in range(3)]
    assert (_cpm(np.unique(got_labels, return_inverse=True)[1].tolist(), weights, 0.05)
            == _cpm(best, weights, 0.05))


def test_fixed_components_keep_their_starting_clusters():
    g, _ = planted(rings=4, size=8, noise=40, seed=6)
    comp = np.asarray(g.connected_components().membership)
    # A deliberately poor starting partition: everyone in one cluster.
    initial = np.zeros(g.vcount(), dtype=np.int64)
    fixed = np.zeros(comp.max() + 1, dtype=bool)
    fixed[comp[0]] = True
    got = detect_communities(g, initial=initial, fixed=fixed, core_min_size=4).cluster
    in_fixed = comp == comp[0]
    assert len(set(got[in_fixed].tolist())) == 1 and got[0] >= 0  # kept whole
    free = detect_communities(g, initial=initial).cluster
    assert len(set(free[in_fixed].tolist())) > 1  # Leiden would have cut it
    with pytest.raises(ValueError, match="initial"):
        detect_communities(g, fixed=fixed)



@settings(max_examples=examples(60), deadline=None)
@given(n=st.integers(0, 120), data=st.data())
def test_connected_components_number_like_igraph(n, data):
    """The numpy components equal igraph's, numbering included, on random graphs and on
    long paths through shuffled ids (the slowest case for pointer hooking)."""
    if n < 2:
        pairs = np.zeros((0, 2), dtype=np.int64)
    elif data.draw(st.booleans(), label="path"):
        perm = np.asarray(data.draw(st.permutations(list(range(n))), label="order"))
        pairs = np.column_stack([perm[:-1], perm[1:]])
    else:
        pairs = np.asarray(data.draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
            label="pairs"), dtype=np.int64).reshape(-1, 2)
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    edges = EdgeArrays(n, pairs[:, 0], pairs[:, 1], np.ones(pairs.shape[0]))
    expected = ig.Graph(n=n, edges=pairs.tolist()).connected_components().membership
    assert connected_components(edges).tolist() == expected
