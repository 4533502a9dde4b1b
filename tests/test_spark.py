"""The Spark engine against the DuckDB engine on the same generated input.

One local SparkSession (two cores) serves every test of this file; the engines must agree on
edges (weights within 1e-9), connected components and memberships. pyspark is a test
dependency: nothing here is skipped when it is missing.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path

import duckdb
import igraph as ig
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession

from linkage.config import RunConfig, SparkConfig
from linkage.engines import SQLConnection, connect_duckdb
from linkage.engines.spark import (
    LOCAL_DRIVER_MEMORY,
    SparkEngine,
    require_pyspark,
    session_settings,
)
from linkage.engines.spark_bands import key_sorted_batches
from linkage.engines.spark_graph import ConvergenceError, connected_components
from linkage.engines.spark_sql import SparkSQL, to_spark
from linkage.errors import ConfigError
from linkage.graph import build_edges, edge_arrays
from linkage.ingest import OUTPUT_SCHEMAS, ingest
from linkage.pipeline import EVIDENCE, STAGES, _explain, run_pipeline
from linkage.pseudonymise import Pseudonymiser
from linkage.scoring import score_clusters
from linkage.signals import BAND_SCHEMA, build_links, set_band_keys, signal_weights
from linkage.store import Store
from linkage.synth.generator import generate
from linkage.warmstart import warm_detect
from tests.helpers import (
    examples,
    insert_rows,
    invoke,
    run_id_of,
    split_nights,
    tables_at_each_stage,
)

pytestmark = pytest.mark.spark

SECRET = b"spark-test-secret-0123456789"
# every signal on, activity_sync (off by default) included
CFG = RunConfig.from_dict({"signals": {"activity_sync": {"enabled": True}}})


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one local Spark session of the test run."""
    # Python workers run this interpreter (it has linkage's dependencies).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("linkage-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind of evidence: the ``mixed`` account tables and ``seedscale``'s interactions
    (the two generators number accounts alike)."""
    out = tmp_path_factory.mktemp("spark-input")
    generate(out, scenario="mixed", n_accounts=3000, seed=5)
    usage = tmp_path_factory.mktemp("spark-usage")
    generate(usage, scenario="seedscale", n_accounts=3000, seed=5)
    shutil.copytree(usage / "interactions", out / "interactions")
    return out


def _ingested(data: Path) -> duckdb.DuckDBPyConnection:
    con = connect_duckdb(CFG.engine)
    pseudo = Pseudonymiser(SECRET)
    pseudo.install(con)
    ingest(con, data, CFG.ingest, pseudo)
    return con


@pytest.fixture(scope="module")
def stages(spark: SparkSession, data: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection,
                               SparkEngine]]:
    """Signals and edges of the same input: by DuckDB, and by Spark (the ingest tables
    copied back to the second DuckDB, the stage tables left on Spark, as in a run)."""
    duck = _ingested(data)
    build_links(duck, CFG.signals)
    build_edges(duck, CFG.graph)
    other = connect_duckdb(CFG.engine)
    engine = SparkEngine(SparkConfig(buckets=4), tmp_path_factory.mktemp("spark-staging"), other)
    # ingest on Spark (copied back for the driver's stages), then signals and edges
    engine.ingest(data, CFG.ingest, Pseudonymiser(SECRET))
    engine.load()
    build_links(engine.sql, CFG.signals)
    build_edges(engine.sql, CFG.graph)
    yield duck, other, engine
    engine.close()
    duck.close()
    other.close()


def _rows(con: SQLConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_the_input_exercises_every_path(stages) -> None:
    duck, _, _ = stages
    signals = {r[0] for r in _rows(duck, "SELECT DISTINCT signal FROM keys")}
    assert {"card", "device", "ip", "cosignup", "prompt", "prompt_sync",
            "activity_sync"} <= signals
    # keys above clique_max are linked as rings (the ordered window of the edge stage)
    (big,) = duck.execute(f"SELECT count(*) FROM keys WHERE n > {CFG.graph.clique_max}"
                          ).fetchone()
    assert big > 0


@pytest.mark.parametrize("table", OUTPUT_SCHEMAS)
def test_ingest_tables_are_identical(stages, table: str) -> None:
    """Spark's ingest (read, checked, normalised, hashed on Spark) equals DuckDB's."""
    duck, other, _ = stages
    a = _rows(duck, f"SELECT * FROM {table} ORDER BY ALL")
    assert a and a == _rows(other, f"SELECT * FROM {table} ORDER BY ALL")


@pytest.mark.parametrize("table,order", [
    ("links", "idx, signal, key"),
    ("keys", "kid"),
    ("key_members", "kid, idx"),
])
def test_signal_tables_are_identical(stages, table: str, order: str) -> None:
    duck, _, engine = stages
    cols = "kid, signal, key, n" if table == "keys" else "*"
    a = _rows(duck, f"SELECT {cols} FROM {table} ORDER BY {order}")
    b = _rows(engine.sql, f"SELECT {cols} FROM {table} ORDER BY {order}")
    assert a and a == b
    if table == "keys":
        pa_, pb = (np.array([r[0] for r in _rows(c, "SELECT p FROM keys ORDER BY kid")])
                   for c in (duck, engine.sql))
        assert np.allclose(pa_, pb, rtol=0, atol=1e-9)


@pytest.mark.parametrize("table", ["prompt_bands", "activity_bands"])
def test_bands_on_spark_equal_bands_on_duckdb(stages, table: str) -> None:
    """The MinHash bands, computed on the executors (the elements never reach the driver),
    are DuckDB's: the same element SQL, the same numpy keying of each account's set."""
    duck, _, engine = stages
    a = _rows(duck, f"SELECT idx, key FROM {table} ORDER BY idx, key")
    b = sorted(tuple(r) for r in engine.sql.table(table).collect())
    assert len({r[0] for r in a}) > 100 and a == b
    assert engine.sql.table(table).schema.simpleString() == "struct<idx:int,key:string>"


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(-2**63, 2**63 - 1)), min_size=1,
                max_size=120),
       st.integers(1, 9), st.integers(1, 12))
def test_batches_are_keyed_as_whole_accounts(rows: list, batch: int, batch_rows: int) -> None:
    """Keyed a few rows at a time, an account split across batches gets the keys it gets when
    the whole table is keyed at once (the executors' streaming of each partition)."""
    rows.sort(key=lambda r: r[0])
    idx = np.array([r[0] for r in rows], dtype=np.int32)
    e = np.array([r[1] for r in rows], dtype=np.int64)
    batches = [pa.record_batch({"idx": idx[i:i + batch], "e": e[i:i + batch]})
               for i in range(0, len(rows), batch)]
    key = partial(set_band_keys, bands=4, rows=2)
    got = pa.Table.from_batches(list(key_sorted_batches(iter(batches), key, batch_rows)),
                                schema=BAND_SCHEMA)
    want = set_band_keys(idx, e, 4, 2)
    assert sorted(zip(got["idx"].to_pylist(), got["key"].to_pylist(), strict=True)) == sorted(
        zip(want["idx"].to_pylist(), want["key"].to_pylist(), strict=True))
    assert want.num_rows == 4 * len(set(idx.tolist()))


def test_edges_are_identical(stages) -> None:
    duck, _, engine = stages
    a = _rows(duck, "SELECT a, b, weight FROM edges ORDER BY a, b")
    b = _rows(engine.sql, "SELECT a, b, weight FROM edges ORDER BY a, b")
    assert len(a) > 1000
    assert [r[:2] for r in a] == [r[:2] for r in b]
    assert np.allclose([r[2] for r in a], [r[2] for r in b], rtol=0, atol=1e-9)
    sa = _rows(duck, "SELECT a, b, signal, n_keys FROM edge_signals ORDER BY a, b, signal")
    sb = _rows(engine.sql, "SELECT a, b, signal, n_keys FROM edge_signals ORDER BY a, b, signal")
    assert sa == sb


def test_edge_arrays_come_from_spark_in_duckdbs_order(stages) -> None:
    """The warm start's edge arrays are fetched from Spark (``fetchnumpy``, through Arrow) in
    the DuckDB engine's order, with its types."""
    duck, _, engine = stages
    a, b = edge_arrays(duck), edge_arrays(engine.sql)
    assert a.n_vertices == b.n_vertices > 0
    assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)
    assert a.src.dtype == b.src.dtype and b.weight.dtype == np.float64
    assert np.allclose(a.weight, b.weight, rtol=0, atol=1e-9)


def test_components_are_igraph_components(stages) -> None:
    duck, _, engine = stages
    edges = np.array(_rows(duck, "SELECT a, b FROM edges ORDER BY a, b"), dtype=np.int64)
    (n,) = duck.execute("SELECT count(*) FROM accounts").fetchone()
    comp = connected_components(engine.sql.table("edges").select("a", "b"), max_rounds=60,
                                staging=engine.sql.staging)
    got = comp.toArrow()
    _assert_smallest_vertex_labels(got, n, edges)


def _assert_smallest_vertex_labels(got: pa.Table, n: int, edges: np.ndarray) -> None:
    """``got`` (v, comp) labels every vertex of ``edges``, and only those, with the smallest
    vertex of its igraph component."""
    g = ig.Graph(n=n, edges=edges.tolist())
    membership = np.asarray(g.connected_components().membership)
    smallest = np.full(membership.max() + 1, n)
    np.minimum.at(smallest, membership, np.arange(n))
    v = got.column("v").to_numpy()
    assert np.array_equal(np.sort(v), np.unique(edges))
    assert np.array_equal(got.column("comp").to_numpy(), smallest[membership][v])


# The tests of the `stages` fixture come before the CLI runs below: a run's Spark engine
# drops its views when it closes, and the views of one session are shared.

def test_modularity_on_spark_equals_duckdb(stages) -> None:
    """Modularity is not a sum over components: the Spark engine runs it in one task over
    every linked account, as the DuckDB engine does, and finds the same clusters."""
    duck, _, engine = stages
    cfg = RunConfig.from_dict({"signals": {"activity_sync": {"enabled": True}},
                               "communities": {"objective": "modularity", "resolution": 1.0}})
    expected, _ = warm_detect(duck, edge_arrays(duck), cfg, None, None, salt="s")
    got, _ = engine.communities(edge_arrays(engine.sql), cfg, None, None, salt="s")
    assert expected.n_clusters > 10
    assert np.array_equal(got.cluster, expected.cluster)


def _labels(duck: duckdb.DuckDBPyConnection, partition) -> tuple[pa.Table, pa.Table]:
    """Analysts' labels on the largest clusters: confirmed operators in two, a false positive
    on a third, and two on a fourth with the same Jaccard (the later label is the match)."""
    idx, cluster = partition.members()
    names = duck.execute("SELECT account_id FROM accounts ORDER BY idx").fetchnumpy()
    ids = np.asarray(names["account_id"])[idx]
    sizes = np.bincount(cluster)
    big = np.argsort(-sizes, kind="stable")[:4]
    members = [sorted(ids[cluster == c]) for c in big]
    confirmed = pa.table({"account_id": [*members[0][:3], members[1][0]],
                          "by": ["ann", "bob", "ann", "cy"],
                          "created_at": ["2026-11-01", "2026-11-03", "2026-11-02", "2026-11-04"]})
    fp = ([(1, a, "dee", "2026-11-05", "a family") for a in members[2]]
          + [(k, a, by, day, "same people") for k, by, day in ((2, "eve", "2026-11-06"),
                                                               (3, "fay", "2026-11-07"))
             for a in members[3][:-1]])
    false_positive = pa.table({
        "label_id": pa.array([r[0] for r in fp], pa.int64()),
        **{name: [r[i] for r in fp] for i, name in enumerate(
            ("account_id", "by", "created_at", "note"), start=1)}})
    return confirmed, false_positive


def test_scoring_on_spark_equals_duckdb(stages) -> None:
    """Every scoring aggregate runs on Spark (the driver's DuckDB holds no stage table) and
    gives the DuckDB engine's clusters' scores, features, contributions and reasons (usage,
    confirmed operators and false positives included), cluster_keys and intra_edges; the copy
    back brings exactly the evidence of the explained clusters, in DuckDB's order."""
    duck, other, engine = stages
    assert not _rows(other, "SELECT table_name FROM duckdb_tables() WHERE table_name IN "
                            "('links', 'keys', 'key_members', 'edge_signals', 'edges')")
    partition, _ = warm_detect(duck, edge_arrays(duck), CFG, None, None, salt="s")
    caps = {s: cap for s, (_, cap) in signal_weights(CFG.signals, []).items()}
    confirmed, false_positive = _labels(duck, partition)
    flagged = [score_clusters(con, partition, CFG.scoring, caps, confirmed=confirmed,
                              false_positive=false_positive, engine_con=sql)
               for con, sql in ((duck, None), (other, engine.sql))]
    assert flagged[0] == flagged[1]
    a, b = (_rows(c, "SELECT * FROM cluster_scores") for c in (duck, other))
    assert len(a) > 100 and a == b  # score, flagged, features, contributions, reasons
    text = " ".join(r[6] for r in a)
    assert sum('"usage_campaign"' in r[4] and '"requests"' in r[4] for r in a) > 5
    assert "signed up within" in text and "confirmed operators by ann and bob" in text
    assert "marked false positive by dee" in text and "marked false positive by fay" in text
    assert _rows(duck, "SELECT * FROM members") == _rows(other, "SELECT * FROM members")

    keys = _rows(duck, "SELECT * FROM cluster_keys")
    assert len(keys) > 1000
    assert keys == _rows(engine.sql, "SELECT * FROM cluster_keys "
                                     "ORDER BY cluster, signal, n_members DESC, key")
    edges = _rows(duck, "SELECT * FROM intra_edges")
    got = _rows(engine.sql, "SELECT * FROM intra_edges ORDER BY a, b")
    assert len(edges) > 1000 and [r[:3] for r in edges] == [r[:3] for r in got]
    assert np.allclose([r[3] for r in edges], [r[3] for r in got], rtol=0, atol=1e-9)

    # the copy back: the evidence of the explained clusters, in the DuckDB engine's order
    for con in (duck, other):
        _explain(con, CFG.store.evidence_min_score)
    copied = engine.collect(EVIDENCE, send=("explained",))
    n_explained = _rows(duck, "SELECT count(*) FROM explained")[0][0]
    assert 0 < n_explained < len(a)
    sources = {"evidence_edges": "intra_edges", "evidence_signals": "edge_signals",
               "evidence_keys": "cluster_keys"}
    assert set(EVIDENCE) == set(sources)
    for name, query in EVIDENCE.items():
        expected = _rows(duck, query)
        (total,) = duck.execute(f"SELECT count(*) FROM {sources[name]}").fetchone()
        assert expected and copied[name] == len(expected) < total
        stored = _rows(other, f"SELECT * FROM {name}")
        exact = [[v for v in r if not isinstance(v, float)] for r in stored]
        assert exact == [[v for v in r if not isinstance(v, float)] for r in expected], name
        assert np.allclose([[v for v in r if isinstance(v, float)] for r in stored],
                           [[v for v in r if isinstance(v, float)] for r in expected],
                           rtol=0, atol=1e-9)

def _memberships(db: Path, run_id: int) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return sorted(c.execute("SELECT account_id, cluster_id FROM memberships "
                                "WHERE run_id = ?", (run_id,)))


# What a run stores per cluster and as evidence; the floats that come from edge weights
# (evidence.weight, evidence_signals.contribution) are compared within 1e-9, as the edges are.
_STORED = {
    "clusters": ("SELECT cluster_id, size, score, flagged, origin, features_json, "
                 "contributions_json, reasons_json, campaign_id FROM clusters", None),
    "evidence": ("SELECT cluster_id, account_a, account_b, weight FROM evidence", 3),
    "evidence_signals": ("SELECT account_a, account_b, signal, shared_keys, contribution "
                         "FROM evidence_signals", 4),
    "cluster_keys": ("SELECT cluster_id, signal, key_hash, n_members FROM cluster_keys", None),
}


def _stored(db: Path, run_id: int) -> dict[str, tuple[list[tuple], list[float]]]:
    """Per table, its rows of the run (sorted, without the weights) and the weights."""
    out = {}
    with sqlite3.connect(db) as c:
        for table, (sql, weight) in _STORED.items():
            rows = sorted(c.execute(f"{sql} WHERE run_id = ?", (run_id,)))
            out[table] = ([r[:weight] for r in rows],
                          [r[weight] for r in rows] if weight is not None else [])
    return out


def _night_two(data: Path, out: Path) -> Path:
    """The same accounts a night later: every 10th card, device and IP row gone."""
    out.mkdir()
    for f in data.iterdir():
        if f.suffix == ".parquet" and f.stem in ("payment_instruments", "devices", "ip_events"):
            t = pq.read_table(f)
            keep = np.arange(t.num_rows) % 10 != 0
            pq.write_table(t.filter(pa.array(keep)), out / f.name)
        elif f.is_dir():
            shutil.copytree(f, out / f.name)
        else:
            shutil.copy(f, out / f.name)
    return out


# Ingest's tables that only the stages on the engine read: a Spark run without state leaves
# them there.
_ENGINE_ONLY = {"payment_instruments", "ip_events", "devices", "observations", "interactions"}


def test_memberships_are_identical(spark: SparkSession, data: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two nights per engine through the CLI: a cold start, then a warm start. A Spark run
    that writes no incremental state never copies ``interactions`` (or the other tables only
    the signals read) to the driver's DuckDB."""
    held = tables_at_each_stage(monkeypatch)
    second = _night_two(data, tmp_path / "night2")
    staging = tmp_path / "staging"
    config = tmp_path / "spark.toml"
    config.write_text(f'[engine.spark]\nbuckets = 5\nstaging = "{staging}"\n'
                      '[signals.activity_sync]\nenabled = true\n')
    results, stored = {}, {}
    for name in ("duckdb", "spark"):
        db = tmp_path / f"{name}.db"
        nights = []
        stored[name] = []
        for night in (data, second):
            held.clear()
            res = invoke("run", "--input", night, "--db", f"sqlite:///{db}", "--engine", name,
                         "--config", config, "--quiet", LINKAGE_SECRET=SECRET.decode())
            run_id = run_id_of(res)
            assert held.keys() == set(STAGES) - {"ingest"}
            on_driver = set().union(*held.values())
            assert (_ENGINE_ONLY & on_driver) == (set() if name == "spark" else _ENGINE_ONLY)
            with sqlite3.connect(db) as c:
                counts = c.execute("SELECT n_edges, n_clusters, n_flagged FROM runs "
                                   "WHERE run_id = ?", (run_id,)).fetchone()
            nights.append((_memberships(db, run_id), counts))
            stored[name].append(_stored(db, run_id))
        results[name] = nights
    first, later = results["duckdb"]
    assert first[0] and later[0], "no clusters to compare"
    assert first[0] != later[0], "the second night changed nothing"
    assert results["spark"] == results["duckdb"]
    for expected, got in zip(stored["duckdb"], stored["spark"], strict=True):
        assert expected["evidence"][0], "no evidence stored"
        assert any("signed up within" in r[7] for r in expected["clusters"][0])
        for table in _STORED:
            assert got[table][0] == expected[table][0], table
            assert np.allclose(got[table][1], expected[table][1], rtol=0, atol=1e-9), table
    assert not any(staging.iterdir()), "the Spark staging folder was not cleaned up"


def test_an_incremental_night_on_spark_equals_one_on_duckdb(
        spark: SparkSession, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A night with ``--state`` on Spark copies every ingest table to the driver (for the
    state) and clusters as the DuckDB engine. Then ``--engine spark --incremental``: the
    delta is ingested on the driver's DuckDB and merged with that state (as on the DuckDB
    engine), the stages after it run on Spark, and the night stores what the DuckDB engine's
    incremental night does on its own state."""
    old, delta = tmp_path / "old", tmp_path / "delta"
    split_nights(data, old, delta, every=50)
    assert (delta / "interactions").is_dir()
    held = tables_at_each_stage(monkeypatch)

    def config(name: str) -> RunConfig:
        return RunConfig.from_dict({"engine": {"name": name, "spark": {
            "staging": str(tmp_path / "staging")}}, "signals": {"activity_sync": {
                "enabled": True}}})

    firsts = {}
    for name in ("duckdb", "spark"):
        db = tmp_path / f"{name}.db"
        with Store(f"sqlite:///{db}") as store:
            first = run_pipeline(old, store, config(name), SECRET,
                                 state_dir=tmp_path / f"{name}-state")
        assert held["store"] >= _ENGINE_ONLY, name  # kept for the state
        firsts[name] = _memberships(db, first.run_id)
    assert firsts["duckdb"] and firsts["spark"] == firsts["duckdb"]
    results = {}
    for name in ("duckdb", "spark"):
        db = tmp_path / f"{name}.db"
        with Store(f"sqlite:///{db}") as store:
            night = run_pipeline(delta, store, config(name), SECRET,
                                 state_dir=tmp_path / f"{name}-state", incremental=True)
        assert sum(night.rows_read.values()) < sum(first.rows_read.values()) / 5
        results[name] = (night.n_accounts, night.n_edges, _memberships(db, night.run_id),
                         _stored(db, night.run_id))
    n_accounts, n_edges, memberships, stored = results["duckdb"]
    assert n_accounts == len(pq.read_table(data / "accounts.parquet"))
    assert memberships and stored["evidence"][0]
    assert results["spark"][:3] == (n_accounts, n_edges, memberships)
    for table in _STORED:
        got = results["spark"][3][table]
        assert got[0] == stored[table][0], table
        assert np.allclose(got[1], stored[table][1], rtol=0, atol=1e-9), table


@settings(max_examples=examples(5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1,
             max_size=3 * n))))
def test_spark_components_equal_igraph_components(
        spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, graph) -> None:
    n, pairs = graph
    staging = str(tmp_path_factory.mktemp("components"))
    edges = np.array([(min(a, b), max(a, b)) for a, b in pairs if a != b] or [(0, 1)])
    df = spark.createDataFrame([(int(a), int(b)) for a, b in edges], "a long, b long")
    got = connected_components(df, max_rounds=60, staging=staging).toArrow()
    _assert_smallest_vertex_labels(got, n, edges)


@pytest.fixture
def staging(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("components"))


def _reversed_path(spark: SparkSession, n: int) -> DataFrame:
    """A path whose ids run against it: labels need several rounds to travel it."""
    return spark.createDataFrame([(i, i + 1) for i in range(n - 1, -1, -1)], "a long, b long")


def test_components_stop_at_the_round_bound(spark: SparkSession, staging: str) -> None:
    with pytest.raises(ConvergenceError, match=r"engine\.spark\.max_rounds = 1\b"):
        connected_components(_reversed_path(spark, 64), max_rounds=1, staging=staging)


def test_component_rounds_keep_neither_lineage_nor_estimates_nor_old_rounds(
        spark: SparkSession, staging: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each round is read back from its files: the plan of the result is a file scan whose
    size estimate is the files' size (a checkpoint kept the estimate of the plan before it,
    a product over every round's joins that grew to hundreds of thousands of digits and stalled the
    planner), and only the last round's folder is left in staging."""
    with caplog.at_level(logging.INFO, logger="linkage.engines.spark"):
        comp = connected_components(_reversed_path(spark, 120), max_rounds=60, staging=staging)
    rounds = int(re.search(r"settled in (\d+) rounds", caplog.text)[1])
    assert rounds >= 5
    estimate = comp._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()
    assert isinstance(estimate, int)
    assert estimate < 10**8
    assert [p.name for p in Path(staging).iterdir()] == [f"components-round-{rounds}"]
    got = comp.toArrow()
    assert set(got.column("comp").to_pylist()) == {0}
    assert sorted(got.column("v").to_pylist()) == list(range(121))


def test_a_local_session_gets_driver_memory_unless_configured() -> None:
    local = session_settings(SparkConfig())
    assert local["spark.driver.memory"] == LOCAL_DRIVER_MEMORY
    assert local["spark.ui.enabled"] == "false"
    mine = session_settings(SparkConfig(conf={"spark.driver.memory": "12g"}))
    assert mine["spark.driver.memory"] == "12g"
    # a cluster's master: only what the configuration says
    assert session_settings(SparkConfig(master="spark://h:7077", conf={"a": "b"})) == {"a": "b"}


def test_missing_pyspark_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ConfigError, match=r"pip install 'linkage\[spark\]'") as err:
        require_pyspark()
    assert err.value.exit_code == 2


def test_products_keep_duckdb_order_on_spark() -> None:
    sql = to_spark("SELECT list_aggregate(list(1 - p ORDER BY 1 - p), 'product') FROM t")
    assert "ARRAY_SORT(COLLECT_LIST(1 - p))" in sql and "acc * v" in sql


def _fold(rows: list[tuple]) -> float | None:
    """The sum of the values of ``(a, b, x)`` rows, added one after the other in (a, b) order,
    NULLs skipped (None for none)."""
    values = [x for _, _, x in sorted(rows, key=lambda r: r[:2]) if x is not None]
    return sum(values[1:], values[0]) if values else None


def test_ordered_sums_keep_duckdb_order_on_spark(spark: SparkSession) -> None:
    """``sum(x ORDER BY a, b)`` (scoring's intra-cluster weight) adds in DuckDB's order on
    Spark: on values whose float sum depends on the order, both engines give the sum
    added in key order, bit for bit (the rows reach Spark shuffled)."""
    rng = np.random.default_rng(11)
    rows: list[tuple] = []
    for g in range(5):
        n = 300
        x = rng.choice([1e16, -1e16, 3.0, 1e-3, 7e15, -2.5], size=n) * rng.random(n)
        rows += [(g, int(k) % 7, int(k), float(v)) for k, v in zip(rng.permutation(n), x,
                                                                    strict=True)]
    rows += [(5, 0, 1, None), (5, 1, 0, None), (6, 0, 0, 2.0), (6, 0, 1, None)]
    rng.shuffle(rows)
    groups = {g: [r[1:] for r in rows if r[0] == g] for g in range(7)}
    expected = [(g, _fold(groups[g])) for g in range(7)]
    # the order matters for these values: added in another order, most sums differ
    assert sum(_fold([(0, i, r[2]) for i, r in enumerate(groups[g][::-1])]) != expected[g][1]
               for g in range(5)) >= 3
    sql = "SELECT g, sum(x ORDER BY a, b) AS w FROM lk_sums GROUP BY g ORDER BY g"
    duck = duckdb.connect()
    duck.execute("CREATE TABLE lk_sums (g INTEGER, a INTEGER, b INTEGER, x DOUBLE)")
    insert_rows(duck, "lk_sums", ["g", "a", "b", "x"], rows)
    assert duck.execute(sql).fetchall() == expected
    spark.createDataFrame(rows, "g int, a int, b int, x double").repartition(4
                                                                         ).createOrReplaceTempView("lk_sums")
    assert SparkSQL(spark, "unused").execute(sql).fetchall() == expected
    with pytest.raises(NotImplementedError, match="DESC"):
        to_spark("SELECT sum(x ORDER BY a DESC) FROM lk_sums")


def test_unsupported_statements_fail_loudly(spark: SparkSession, tmp_path: Path) -> None:
    sql = SparkSQL(spark, str(tmp_path))
    with pytest.raises(NotImplementedError, match="not supported on Spark"):
        sql.execute("UPDATE t SET a = 1")


def test_the_default_engine_never_imports_spark() -> None:
    code = ("import sys, linkage.cli, linkage.pipeline; "
            "sys.exit(' '.join(m for m in ('pyspark', 'sqlglot', 'pandas') if m in sys.modules)"
            " or None)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr


# --- ingest's SQL on Spark ---------------------------------------------------------------------

# Text of every kind: any code point but surrogates (not text) and NUL (DuckDB ends a string
# there), attacker-style spellings of the values each rule parses, and separators.
_ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                    max_size=25)
_SHAPED = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF:.", max_size=40),               # IPs
    st.text(alphabet="0123456789-:TZ+. ", max_size=30),                      # timestamps
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                 timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789 -a", max_size=24),                          # card numbers
    st.text(alphabet="abcXYZ019.+_-@ ", max_size=20),                        # emails
    st.text(alphabet="0123456789.-+e ", max_size=12),                        # counts
    st.text(alphabet="aAsS 0123456789\t\x0b\x0c\xa0\u0130\u00df", max_size=12),
)
_VALUES = st.lists(st.one_of(_ANY_TEXT, _SHAPED, st.none()), min_size=1, max_size=40)


def _rules() -> dict[str, str]:
    from linkage.ingest import normalise as nz

    c = CFG.ingest
    rules = {
        "clean": nz.clean_text_sql("x"),
        "email": nz.email_sql("x", c.email_ignore_dots, c.email_ignore_plus,
                              c.email_domain_aliases),
        "phone": nz.phone_sql("x"), "display_name": nz.display_name_sql("x"),
        "compact": nz.compact_sql("x"), "asn": nz.asn_sql("x"), "ip": nz.ip_sql("x"),
        "card": nz.card_number_sql("x"), "timestamp": nz.timestamp_sql("x"),
        "count": nz.count_sql("x"), "lower": "lower(x)",
    }
    rules["net"] = nz.ip_net_sql(f"({rules['ip']})")
    rules["net48"] = nz.ip_net48_sql(f"({rules['ip']})")
    return rules


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES)
def test_normalisation_on_spark_equals_duckdb(spark: SparkSession, values: list) -> None:
    """Every rule of ``linkage.ingest.normalise``, transpiled to Spark, gives DuckDB's value."""
    rules = _rules()
    select = ", ".join(f"{sql} AS {name}" for name, sql in rules.items())
    spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i long, x string"
                          ).createOrReplaceTempView("lk_values")
    got = SparkSQL(spark, "unused").execute(
        f"SELECT i, {select} FROM lk_values ORDER BY i").fetchall()
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    expected = duck.execute(
        f"SELECT i, {select} FROM (SELECT unnest(range(len($v))) AS i, unnest($v) AS x) "
        "ORDER BY i", {"v": values}).fetchall()
    assert got == expected


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_ANY_TEXT, st.none()), min_size=1, max_size=30),
       st.binary(min_size=16, max_size=100), st.sampled_from(["email", "obs:api_key", "ip"]))
def test_keyed_hash_on_spark_is_hmac(spark: SparkSession, values: list, secret: bytes,
                                     namespace: str) -> None:
    """``lk_hash``, the DuckDB macro, inlined by SparkSQL, equals Python's hmac."""
    pseudo = Pseudonymiser(secret)
    sql = SparkSQL(spark, "unused")
    pseudo.install(sql)
    spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i long, v string"
                          ).createOrReplaceTempView("lk_values")
    got = sql.execute(f"SELECT lk_hash('{namespace}', v) FROM lk_values ORDER BY i").fetchall()
    assert [h for (h,) in got] == [pseudo.hash(namespace, v) for v in values]


def _awkward_input(folder: Path) -> Path:
    """CSV in every form the contract allows: a quoted line break, a table as a folder of
    part files (one gzipped), and bad rows in the second part file."""
    folder.mkdir()
    (folder / "accounts.csv").write_text(
        'account_id,created_at,display_name,signup_ip\n'
        'a1,2024-05-01T10:00:00+02:00,"Ann\nSmith",10.0.0.1\n'
        'a2,2024-05-01 09:00,Bob,::ffff:10.0.0.1\n'
        'a3,2024-05-02,Cy,2001:DB8::1\n', encoding="utf-8")
    devices = folder / "devices"
    devices.mkdir()
    (devices / "part-0.csv").write_text(
        "account_id,device_id,seen_at\na1,d1,2024-05-01T10:00:00Z\na2,d1,\n"
        "a3,d2,2024-05-03T00:00:00-0500\n")
    with gzip.open(devices / "part-1.csv.gz", "wt") as fh:
        fh.write("device_id,account_id,seen_at,extra\nd2,a1,2024-05-04,x\n"
                 "d3,a2,yesterday,y\nd3,a9,2024-05-04,z\n")
    return folder


def test_csv_parts_and_quarantine_are_identical_on_spark(spark: SparkSession,
                                                        tmp_path: Path) -> None:
    data = _awkward_input(tmp_path / "in")
    cfg = RunConfig.from_dict({"ingest": {"on_bad_rows": "quarantine"}})
    pseudo = Pseudonymiser(SECRET)
    duck = connect_duckdb(cfg.engine)
    expected = ingest(duck, data, cfg.ingest, pseudo)
    other = connect_duckdb(cfg.engine)
    engine = SparkEngine(SparkConfig(), tmp_path / "staging", other)
    try:
        got = engine.ingest(data, cfg.ingest, pseudo)
    finally:
        engine.close()
    assert got == expected
    assert [(p.file, p.row, p.column) for p in got.quarantine_sample] == [
        ("devices/part-1.csv.gz", 2, "seen_at"), ("devices/part-1.csv.gz", 3, "account_id")]
    for table in OUTPUT_SCHEMAS:
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert _rows(duck, sql) == _rows(other, sql)


def test_spark_ingest_copies_only_what_the_driver_reads(spark: SparkSession,
                                                        tmp_path: Path) -> None:
    """Without an incremental state, the tables only the signals read stay on Spark."""
    data = _awkward_input(tmp_path / "in")
    cfg = RunConfig.from_dict({"ingest": {"on_bad_rows": "quarantine"}})
    con = connect_duckdb(cfg.engine)
    engine = SparkEngine(SparkConfig(), tmp_path / "staging", con)
    try:
        engine.ingest(data, cfg.ingest, Pseudonymiser(SECRET), skip=("devices",))
        assert engine.sql.table("devices").count() > 0
    finally:
        engine.close()
    tables = {t for (t,) in _rows(con, "SELECT table_name FROM duckdb_tables()")}
    assert tables == set(OUTPUT_SCHEMAS) - {"devices"}


def test_bad_input_on_spark_names_file_column_row_and_value(spark: SparkSession,
                                                           tmp_path: Path) -> None:
    data = _awkward_input(tmp_path / "in")
    config = tmp_path / "spark.toml"
    config.write_text(f'[engine.spark]\nstaging = "{tmp_path / "staging"}"\n')
    res = invoke("run", "--input", data, "--engine", "spark", "--db",
                 f"sqlite:///{tmp_path / 'x.db'}", "--config", config,
                 LINKAGE_SECRET=SECRET.decode())
    assert res.exit_code == 2, res.output
    assert ("devices/part-1.csv.gz, column 'seen_at', row 2: unparseable timestamp "
            "(expected ISO 8601) (value 'yesterday')") in res.output
    assert "devices/part-1.csv.gz, column 'account_id', row 3" in res.output
    assert not (tmp_path / "x.db").exists() or not sqlite3.connect(tmp_path / "x.db").execute(
        "SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall()


@settings(max_examples=examples(5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["ip", "card", "obs:x", "é"]), _ANY_TEXT),
                min_size=1, max_size=200, unique=True))
def test_dense_numbering_is_duckdbs_row_number(spark: SparkSession, rows: list) -> None:
    """A table's numbering (``kid``, ``idx``: ``row_number() OVER (ORDER BY ...)`` over the
    whole table) runs range-partitioned on Spark, and numbers rows exactly as DuckDB."""
    sql = "SELECT (row_number() OVER (ORDER BY s, k) - 1)::INTEGER AS kid, s, k FROM lk_rows"
    spark.createDataFrame(rows, "s string, k string").repartition(3).createOrReplaceTempView(
        "lk_rows")
    got = sorted(tuple(r) for r in SparkSQL(spark, "unused").query(
        sqlglot.parse_one(sql, read="duckdb")).collect())
    duck = duckdb.connect()
    duck.execute("CREATE TABLE lk_rows (s VARCHAR, k VARCHAR)")
    insert_rows(duck, "lk_rows", ["s", "k"], rows)
    assert got == sorted(duck.execute(sql).fetchall())
    plan = SparkSQL(spark, "unused").query(sqlglot.parse_one(sql, read="duckdb"))
    assert "SinglePartition" not in plan._jdf.queryExecution().executedPlan().toString()
