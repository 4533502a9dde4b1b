"""The nightly run: ingest → signals → graph → communities → scoring → continuity → store.

Each stage reads the previous stage's documented output (DuckDB tables in one engine
connection, numpy arrays, an igraph graph) and never calls back into an earlier stage.

Bad input stops the run in *ingest*, before the store is touched: the contract promises that
nothing is written and earlier results stay exactly as they were. From then on the run is
recorded as ``running`` with its current stage, so a crash leaves a visible trace; results
are published in one transaction at the end, so ``latest`` never names a half-written run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import pyarrow as pa

from linkage import __version__
from linkage import incremental as incr
from linkage.campaigns import ClusterLinks, cluster_links, publish_campaigns
from linkage.communities import Partition
from linkage.config import RunConfig
from linkage.continuity import assign_identities
from linkage.edge_arrays import EdgeArrays
from linkage.engines import Engine, connect_duckdb, open_engine, spill_folder
from linkage.errors import ConfigError, InputError, InputProblem
from linkage.graph import build_edges, edge_arrays
from linkage.ingest import IngestResult
from linkage.labels import label_facts
from linkage.pseudonymise import Pseudonymiser
from linkage.scoring import score_clusters
from linkage.signals import build_links
from linkage.stage_tables import STAGES, TABLES, dropped_after
from linkage.store import RunRecord, Store
from linkage.store.lock import run_lock
from linkage.warmstart import FINGERPRINT_KEY

__all__ = ["STAGES", "RunSummary", "run_pipeline"]

log = logging.getLogger("linkage.run")


# A stage reporter: called with a stage name, returns a context manager around the stage.
StageReporter = Callable[[str], contextlib.AbstractContextManager[None]]


@dataclass
class RunSummary:
    """What a finished run did (also printed by the CLI)."""

    run_id: int
    n_accounts: int = 0
    n_edges: int = 0
    n_clusters: int = 0
    n_flagged: int = 0
    n_campaigns: int = 0
    """Campaigns of two or more flagged clusters."""
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    origins: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    largest_component: int = 0


@contextlib.contextmanager
def _log_stage(name: str) -> Iterator[None]:
    log.info("stage %s: started", name)
    yield


class _Clock:
    """Times each stage, reports it, records it on the run and names the stage under way;
    calls ``done`` with the stage's name when it ends."""

    def __init__(self, reporter: StageReporter, store: Store,
                 done: Callable[[str], None]) -> None:
        self.reporter, self.store, self.done = reporter, store, done
        self.timings: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self.current = "ingest"

    @contextlib.contextmanager
    def __call__(self, name: str, run_id: int | None = None) -> Iterator[None]:
        self.current = name
        if run_id is not None:
            self.store.set_stage(run_id, name)
        start = time.perf_counter()
        with self.reporter(name):
            yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.peaks[name] = _peak_rss_mb()
        log.info("stage %s: done in %.1f s, peak RSS %.0f MB", name, self.timings[name],
                 self.peaks[name])
        self.done(name)


@dataclass(frozen=True)
class _Ingested:
    result: IngestResult
    n_accounts: int


@dataclass(frozen=True)
class _Detected:
    """What the communities stage hands on: the partition and what travels with it."""

    partition: Partition
    fingerprints: str
    previous: pa.Table | None
    links: ClusterLinks


def run_pipeline(
    input_dir: Path,
    store: Store,
    cfg: RunConfig,
    secret: bytes,
    *,
    reporter: StageReporter = _log_stage,
    state_dir: Path | None = None,
    incremental: bool = False,
    allow_shrink: bool = False,
) -> RunSummary:
    """Run every stage on ``input_dir`` and publish the result to ``store``.

    With ``state_dir`` the run also keeps its normalised input there for the next
    incremental run; with ``incremental`` the input holds only what is new since the latest
    run, whose state in ``state_dir`` it builds on (:mod:`linkage.incremental`).
    ``allow_shrink`` lifts the ``store.max_shrink`` check (:func:`check_shrink`).

    Raises :class:`~linkage.errors.InputError` (nothing written) for bad input,
    :class:`~linkage.errors.ConfigError` when the store was written with another key and
    :class:`~linkage.errors.RunLockedError` (nothing done) when another run holds the store.
    """
    pseudo = Pseudonymiser(secret)
    keep_state = state_dir is not None
    # The run lock comes first, before ingest: a second run refuses at once (RunLockedError)
    # instead of discovering the first one an hour later, at publish.
    with run_lock(store), spill_folder(cfg.engine.temp_directory) as spill, \
            _engine(cfg, spill, pseudo) as engine:
        # after each stage, what no later stage reads goes (linkage.stage_tables)
        clock = _Clock(reporter, store, lambda stage: _drop(
            engine.driver, *dropped_after(stage, keep_state=keep_state)))
        state = _incremental_state(store, state_dir) if incremental else None
        with clock("ingest"):
            ing = _ingest(engine, store, cfg, pseudo, Path(input_dir), state, keep_state)
        run_id = _begin(store, cfg, pseudo, Path(input_dir), ing.n_accounts, allow_shrink)
        summary = RunSummary(run_id=run_id, n_accounts=ing.n_accounts,
                             rows_read=ing.result.rows_read,
                             rows_quarantined=ing.result.rows_quarantined)
        try:
            with clock("signals", run_id):
                engine.load()
                weights = build_links(engine.sql, cfg.signals)
            with clock("graph", run_id):
                summary.n_edges = build_edges(engine.sql, cfg.graph)
                # numpy arrays on the driver, straight from the engine
                edges = edge_arrays(engine.sql)
            with clock("communities", run_id):
                found = _communities(engine, store, cfg, edges, summary)
                del edges
            with clock("scoring", run_id):
                summary.n_flagged = _score(engine, store, cfg, weights, found)
            with clock("continuity", run_id):
                summary.origins = assign_identities(
                    engine.driver, found.previous, min_jaccard=cfg.continuity.min_jaccard)
                # Campaigns are named after continuity's stable cluster ids.
                summary.n_campaigns = publish_campaigns(
                    engine.driver, found.links, cfg.campaigns,
                    min_evidence=cfg.scoring.strong_edge)
            with clock("store", run_id):
                _publish(engine.driver, store, cfg, pseudo, ing, summary, clock.timings,
                         found.fingerprints, state_dir)
        except BaseException as exc:
            # Record the failure where it happened (also for Ctrl-C), then re-raise.
            with contextlib.suppress(Exception):
                store.fail_run(run_id, stage=clock.current, error=_describe(exc))
            raise
    summary.timings = clock.timings
    summary.peak_rss_mb = clock.peaks
    return summary


@contextlib.contextmanager
def _engine(cfg: RunConfig, spill: Path, pseudo: Pseudonymiser) -> Iterator[Engine]:
    """The configured engine around a new driver DuckDB, with the keyed hash installed."""
    con = connect_duckdb(cfg.engine, spill)
    try:
        engine = open_engine(cfg.engine, spill, con)
        try:
            pseudo.install(con)
            yield engine
        finally:
            engine.close()
    finally:
        con.close()


def _ingest(engine: Engine, store: Store, cfg: RunConfig, pseudo: Pseudonymiser,
            input_dir: Path, state: Path | None, keep_state: bool) -> _Ingested:
    """Ingest, on top of the previous run's state in an incremental run."""
    con = engine.driver
    if state is not None:
        incr.load_known(con, state, key_check=pseudo.check_value(), ingest_cfg=cfg.ingest,
                        erasures=incr.erasure_count(store))
    # Without state to write, the driver needs only what continuity and the store read.
    result = engine.ingest(input_dir, cfg.ingest, pseudo,
                           known=incr.KNOWN if state is not None else None,
                           skip=() if keep_state else _ENGINE_ONLY)
    n_accounts = incr.merge(con, state) if state is not None else result.n_accounts
    return _Ingested(result, n_accounts)


def _begin(store: Store, cfg: RunConfig, pseudo: Pseudonymiser, input_dir: Path,
           n_accounts: int, allow_shrink: bool) -> int:
    """Check the store (its key, the shrink) and record the run as running; its id."""
    store.ensure_schema()
    store.check_key(pseudo.check_value())
    if not allow_shrink:
        check_shrink(store, n_accounts, cfg.store.max_shrink)
    # We hold the lock, so a run still marked running belongs to a dead process.
    store.abandon_running()
    return store.begin_run(config_json=json.dumps(cfg.to_dict(), sort_keys=True),
                           config_hash=cfg.hash(), seed=cfg.seed, code_version=__version__,
                           input_path=str(input_dir.resolve()))


def _communities(engine: Engine, store: Store, cfg: RunConfig, edges: EdgeArrays,
                 summary: RunSummary) -> _Detected:
    previous = store.previous_memberships()
    partition, fingerprints = engine.communities(
        edges, cfg, previous, _previous_fingerprints(store),
        # An erasure changes every fingerprint: the previous clusters lack the erased
        # account, so no component is carried forward as is.
        salt=f"{__version__}:{cfg.hash()}:{incr.erasure_count(store)}")
    summary.n_clusters = partition.n_clusters
    summary.largest_component = partition.largest_component
    # What the campaigns need of the edges, kept small: one row per pair of clusters that
    # share an edge.
    links = cluster_links(edges, partition.cluster, partition.n_clusters)
    return _Detected(partition, fingerprints, previous, links)


def _score(engine: Engine, store: Store, cfg: RunConfig,
           weights: dict[str, tuple[float, int]], found: _Detected) -> int:
    """Score the clusters and bring the evidence the store keeps to the driver."""
    caps = {s: cap for s, (_, cap) in weights.items()}
    # Labels reach scoring as plain data, read from the store here.
    facts = label_facts(store)
    n_flagged = score_clusters(
        engine.driver, found.partition, cfg.scoring, caps, confirmed=facts.confirmed,
        false_positive=facts.false_positive, engine_con=engine.sql, links=found.links,
        fleet_min_lift=cfg.campaigns.min_lift, resolution=cfg.communities.resolution)
    _explain(engine.driver, cfg.store.evidence_min_score)
    # The one copy of stage rows to the driver: the evidence the store keeps. Nothing else
    # reads links, keys, key_members or edge_signals.
    engine.collect(EVIDENCE, send=("explained",))
    return n_flagged


def _publish(con: duckdb.DuckDBPyConnection, store: Store, cfg: RunConfig,
             pseudo: Pseudonymiser, ing: _Ingested, summary: RunSummary,
             timings: dict[str, float], fingerprints: str, state_dir: Path | None) -> None:
    """Write the state (if kept) and publish the run in one transaction."""
    run_id = summary.run_id
    record = _record(con, ing.result.input_fingerprint, summary, timings,
                     ing.result.quarantine_sample)
    # Published with the run, for the next run's warm start.
    record = replace(record, meta={FINGERPRINT_KEY.format(run_id=run_id): fingerprints})
    if state_dir is not None:
        # The state goes in place before the publish and the old one only after it: a crash
        # anywhere leaves the latest run's state intact.
        tmp = incr.write_state(con, state_dir, key_check=pseudo.check_value(),
                               ingest_cfg=cfg.ingest, erasures=incr.erasure_count(store))
        incr.commit_state(tmp, run_id)
    # The key's check value commits with the first publish: no store holds hashes without
    # the check of the key they were made with.
    store.publish_run(run_id, record, key_check=pseudo.check_value())
    if state_dir is not None:
        incr.prune_states(state_dir, run_id)
    store.delete_meta(FINGERPRINT_KEY.format(run_id=""),
                      keep=FINGERPRINT_KEY.format(run_id=run_id))


# What the driver need not hold when no state is written: the signals and scoring read these
# on the engine's connection.
_ENGINE_ONLY = tuple(t.name for t in TABLES if t.made_by == "ingest"
                     and t.last_reader in ("signals", "scoring"))


def _drop(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    """Drop stage tables that no later stage reads, so that their memory is reused."""
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def check_shrink(store: Store, n_accounts: int, max_shrink: float) -> None:
    """Refuse (:class:`~linkage.errors.InputError`, exit 2) a night whose accounts fall by
    more than ``max_shrink`` (a share) against the latest published run's.

    A truncated or partial export would otherwise become ``latest``: every cluster
    dissolved, and the next night compared with almost nothing.
    """
    latest = store.latest_run_id()
    if latest is None:
        return
    before = store.run(latest)["n_accounts"] or 0
    if before == 0 or n_accounts >= before * (1.0 - max_shrink):
        return
    fall = 1.0 - n_accounts / before
    raise InputError(
        f"the input has {n_accounts:,} accounts, {fall:.1%} fewer than the {before:,} of run "
        f"{latest}, the latest published run; store.max_shrink = {max_shrink:g} allows "
        f"{max_shrink:.0%} fewer at most. If the input is complete, run again with "
        "--allow-shrink; nothing was written"
    )


def _incremental_state(store: Store, state_dir: Path | None) -> Path:
    """The state folder an incremental run builds on: the latest published run's."""
    if state_dir is None:
        raise ConfigError("an incremental run needs --state DIR, the state folder that "
                          "earlier runs with --state DIR wrote")
    latest = None if store.is_empty() else store.latest_run_id()
    if latest is None:
        raise ConfigError(f"an incremental run needs an earlier run: the store "
                          f"{store.display_url} has none (start with a full run with --state)")
    return incr.state_path(state_dir, latest)


def _previous_fingerprints(store: Store) -> str | None:
    """The component fingerprints of the latest published run (None: none kept)."""
    latest = store.latest_run_id()
    return None if latest is None else store.get_meta(FINGERPRINT_KEY.format(run_id=latest))


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far, from the OS's own accounting."""
    # ru_maxrss is in KiB on Linux (bytes on macOS, where this is only indicative).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"[:2000]


# The evidence the store keeps (read by _record): the rows of scoring's and the graph's tables
# that belong to the clusters in `explained`, as the tables named here. The queries run on
# the engine's connection and only their rows reach the driver (Engine.collect), in the
# order they give.
EVIDENCE = {
    "evidence_edges": """
        SELECT * FROM intra_edges SEMI JOIN explained USING (cluster) ORDER BY a, b
    """,
    "evidence_signals": """
        SELECT es.* FROM edge_signals es
        SEMI JOIN (SELECT a, b FROM intra_edges SEMI JOIN explained USING (cluster)) e
            ON e.a = es.a AND e.b = es.b
        ORDER BY es.a, es.b, es.signal
    """,
    "evidence_keys": """
        SELECT * FROM cluster_keys SEMI JOIN explained USING (cluster)
        ORDER BY cluster, signal, n_members DESC, key
    """,
}


def _explain(con: duckdb.DuckDBPyConnection, evidence_min_score: float) -> None:
    """``explained``: the clusters whose evidence the store keeps (``cluster_scores``' flagged
    clusters, and those scoring at least ``store.evidence_min_score``)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE explained AS
        SELECT cluster FROM cluster_scores
        WHERE flagged OR score >= {float(evidence_min_score)}
    """)


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _record(
    con: duckdb.DuckDBPyConnection,
    fingerprint: str,
    summary: RunSummary,
    timings: dict[str, float],
    quarantine: list[InputProblem],
) -> RunRecord:
    clusters = _arrow(con, """
        SELECT i.cluster_id, s.size, s.score, s.flagged, i.origin, i.parents_json,
               s.features AS features_json, s.contributions AS contributions_json,
               s.reasons AS reasons_json, i.first_seen_run_id, g.campaign_id
        FROM cluster_scores s JOIN cluster_ids i USING (cluster)
        LEFT JOIN campaigns g USING (cluster)
        ORDER BY i.cluster_id
    """)
    memberships = _arrow(con, """
        SELECT a.account_id, i.cluster_id, timezone('UTC', a.created_at) AS created_at
        FROM members m JOIN accounts a USING (idx) JOIN cluster_ids i USING (cluster)
        ORDER BY a.account_id
    """)
    # Evidence is kept for the clusters worth explaining (`explained`, EVIDENCE).
    evidence = _arrow(con, """
        SELECT i.cluster_id, x.account_id AS account_a, y.account_id AS account_b, e.weight
        FROM evidence_edges e JOIN cluster_ids i USING (cluster)
        JOIN accounts x ON x.idx = e.a JOIN accounts y ON y.idx = e.b
    """)
    evidence_signals = _arrow(con, """
        SELECT x.account_id AS account_a, y.account_id AS account_b, es.signal,
               es.p AS contribution, es.n_keys AS shared_keys
        FROM evidence_signals es
        JOIN accounts x ON x.idx = es.a JOIN accounts y ON y.idx = es.b
    """)
    cluster_keys = _arrow(con, """
        SELECT i.cluster_id, k.signal, k.key AS key_hash, k.n_members, k.n_global
        FROM evidence_keys k JOIN cluster_ids i USING (cluster)
    """)
    lineage = _arrow(con, """
        SELECT cluster_id, kind, other_cluster_id, overlap, jaccard FROM lineage
        ORDER BY cluster_id, kind, other_cluster_id
    """)
    q = pa.table({
        "table_name": [p.table for p in quarantine],
        "file": [p.file for p in quarantine],
        "row_number": pa.array([p.row for p in quarantine], pa.int64()),
        "column_name": [p.column for p in quarantine],
        "reason": [p.reason for p in quarantine],
        "value": pa.array([p.value for p in quarantine], pa.string()),  # None: empty cell
    })
    return RunRecord(
        input_fingerprint=fingerprint,
        rows_read=summary.rows_read,
        rows_quarantined=summary.rows_quarantined,
        n_accounts=summary.n_accounts,
        n_edges=summary.n_edges,
        n_clusters=summary.n_clusters,
        n_flagged=summary.n_flagged,
        timings=dict(timings),
        clusters=clusters,
        memberships=memberships,
        evidence=evidence,
        evidence_signals=evidence_signals,
        cluster_keys=cluster_keys,
        quarantine=q,
        lineage=lineage,
    )

