"""The registry of stage tables against what a run really leaves on its connection."""

from __future__ import annotations

from pathlib import Path

import pytest

import linkage.pipeline as pipeline
from linkage.config import RunConfig
from linkage.ingest import OUTPUT_SCHEMAS
from linkage.stage_tables import INGEST_TABLES, STAGES, TABLES, dropped_after
from linkage.store import Store
from linkage.synth import generate
from tests.helpers import tables_at_each_stage

SECRET = b"stage-tables-secret-0123456789abcdef"


def test_the_registry_is_consistent() -> None:
    names = [t.name for t in TABLES]
    assert len(names) == len(set(names))
    assert tuple(OUTPUT_SCHEMAS) == INGEST_TABLES
    for t in TABLES:
        assert t.made_by in STAGES and set(t.read_by) <= set(STAGES)
        assert STAGES.index(t.last_reader) >= STAGES.index(t.made_by), t


def test_state_tables_stay_to_the_end_only_when_kept() -> None:
    dropped = {s: set(dropped_after(s, keep_state=False)) for s in STAGES}
    kept = {s: set(dropped_after(s, keep_state=True)) for s in STAGES}
    assert {"payment_instruments", "devices"} <= dropped["signals"]
    assert "interactions" in dropped["scoring"] and "interactions" not in kept["scoring"]
    assert not set(INGEST_TABLES) & set().union(*kept.values())
    # every table goes once
    assert sum(map(len, dropped.values())) == len(TABLES)


@pytest.mark.slow
@pytest.mark.parametrize("keep_state", [False, True])
def test_no_table_outlives_its_last_reader_and_every_table_is_registered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_state: bool) -> None:
    """When each stage of a real run starts, the driver holds only registered tables, each
    made by an earlier stage and read by that stage or a later one (or kept for the state)."""
    data = tmp_path / "in"
    generate(data, scenario="mixed", n_accounts=2000, seed=3)
    held = tables_at_each_stage(monkeypatch)
    cfg = RunConfig.from_dict({"signals": {"activity_sync": {"enabled": True}}})
    store = Store(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        pipeline.run_pipeline(data, store, cfg, SECRET,
                              state_dir=tmp_path / "state" if keep_state else None)
    finally:
        store.close()
    registry = {t.name: t for t in TABLES}
    assert held.keys() == set(STAGES) - {"ingest"}
    seen = set().union(*held.values())
    assert seen <= registry.keys(), seen - registry.keys()
    assert {"accounts", "links", "edges", "members", "cluster_scores", "lineage"} <= seen
    assert ("interactions" in held["store"]) is keep_state
    for stage, tables in held.items():
        at = STAGES.index(stage)
        for name in tables:
            t = registry[name]
            last = len(STAGES) if keep_state and t.state else STAGES.index(t.last_reader)
            assert STAGES.index(t.made_by) < at <= last, (stage, name)
