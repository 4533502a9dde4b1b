"""The stage tables of a run: which stage makes each, which stages read it, when it goes.

Every table a stage leaves for a later one is listed here, once. The pipeline drops a table
as soon as the last stage that reads it is done (:func:`dropped_after`), so that the engine
reuses its memory; the tables an incremental run's state is written from stay to the end.
An engine that keeps the stage tables elsewhere (Spark's views) releases all of
:data:`TABLES` when the run closes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INGEST_TABLES", "STAGES", "TABLES", "StageTable", "dropped_after"]

STAGES = ("ingest", "signals", "graph", "communities", "scoring", "continuity", "store")


@dataclass(frozen=True)
class StageTable:
    """One table on the engine's connection (or the driver's DuckDB)."""

    name: str
    made_by: str
    read_by: tuple[str, ...]
    """The stages that read it, its maker included when only the maker does."""
    state: bool = False
    """Written into an incremental run's state at the end (kept to the end then)."""

    @property
    def last_reader(self) -> str:
        return max(self.read_by, key=STAGES.index)


_INPUT = ("signals",)
TABLES: tuple[StageTable, ...] = (
    # ingest (docs/input.md, linkage.ingest.OUTPUT_SCHEMAS)
    StageTable("accounts", "ingest", ("signals", "graph", "scoring", "continuity", "store"),
               state=True),
    StageTable("payment_instruments", "ingest", _INPUT, state=True),
    StageTable("ip_events", "ingest", _INPUT, state=True),
    StageTable("devices", "ingest", _INPUT, state=True),
    StageTable("interactions", "ingest", ("signals", "scoring"), state=True),
    StageTable("observations", "ingest", _INPUT, state=True),
    # signals (linkage.signals)
    StageTable("signal_params", "signals", ("signals",)),
    StageTable("prompt_bands", "signals", ("signals",)),
    StageTable("activity_bands", "signals", ("signals",)),
    StageTable("signal_min_shared", "signals", ("graph",)),
    StageTable("band_chance", "signals", ("graph",)),
    StageTable("band_background", "signals", ("graph",)),
    StageTable("activity_sets", "signals", ("graph",)),
    StageTable("links", "signals", ("graph", "scoring")),
    StageTable("keys", "signals", ("graph", "scoring")),
    StageTable("key_members", "signals", ("graph", "scoring")),
    StageTable("template_pool_links", "signals", ("signals",)),
    StageTable("activity_group_links", "signals", ("signals",)),
    StageTable("pool_templates", "signals", ("scoring",)),
    # graph (linkage.graph)
    StageTable("edges", "graph", ("graph", "scoring")),
    StageTable("edge_signals", "graph", ("scoring",)),
    # communities: the connected components, a table only where the engine computes them
    # in SQL (Spark); elsewhere numpy arrays
    StageTable("components", "communities", ("communities",)),
    # scoring (linkage.scoring); the evidence tables are the store's (linkage.pipeline)
    StageTable("members", "scoring", ("scoring", "continuity", "store")),
    StageTable("families", "scoring", ("scoring",)),
    StageTable("cluster_keys", "scoring", ("scoring",)),
    StageTable("intra_edges", "scoring", ("scoring",)),
    StageTable("cluster_scores", "scoring", ("store",)),
    StageTable("explained", "scoring", ("scoring",)),
    StageTable("evidence_edges", "scoring", ("store",)),
    StageTable("evidence_signals", "scoring", ("store",)),
    StageTable("evidence_keys", "scoring", ("store",)),
    # continuity (linkage.continuity, linkage.campaigns)
    StageTable("matches", "continuity", ("continuity",)),
    StageTable("cluster_ids", "continuity", ("store",)),
    StageTable("lineage", "continuity", ("store",)),
    StageTable("campaigns", "continuity", ("store",)),
)

INGEST_TABLES = tuple(t.name for t in TABLES if t.made_by == "ingest")
"""The output tables of ingest, in the order the contract lists them."""


def dropped_after(stage: str, *, keep_state: bool) -> tuple[str, ...]:
    """The tables no stage after ``stage`` reads; with ``keep_state``, not those the
    incremental state is written from."""
    return tuple(t.name for t in TABLES if t.last_reader == stage
                 and not (keep_state and t.state))
