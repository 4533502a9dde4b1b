"""The store's bulk writer stores exactly what SQLAlchemy Core would (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from sqlalchemy import select

from linkage.store import Store
from linkage.store.models import Base
from tests.test_store import TWO_CLUSTERS, begin, make_record

_M = Base.metadata.tables["memberships"]
_C = Base.metadata.tables["clusters"]


def test_bulk_write_matches_core_insert(store: Store) -> None:
    record = make_record(TWO_CLUSTERS)
    plus2 = timezone(timedelta(hours=2))
    stamps = [datetime(2024, 5, 1, 8, 0, tzinfo=UTC), None,
              datetime(2024, 5, 1, 10, 0, 1, 5, tzinfo=plus2),
              datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
              datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)]
    created = pa.array(stamps, pa.timestamp("us", tz="UTC"))
    memberships = record.memberships.append_column("created_at", created)
    run_id = begin(store)
    store.publish_run(run_id, replace(record, memberships=memberships))
    with store.engine.begin() as conn:
        core_run = begin(store)
        conn.execute(_M.insert(), [
            {"run_id": core_run, **row}
            for row in memberships.rename_columns(["account_id", "cluster_id", "created_at"])
            .to_pylist()])
        rows = {r: conn.execute(select(_M.c.account_id, _M.c.created_at)
                                .where(_M.c.run_id == r).order_by(_M.c.account_id)).all()
                for r in (run_id, core_run)}
        flags = conn.execute(select(_C.c.cluster_id, _C.c.flagged).where(_C.c.run_id == run_id)
                             .order_by(_C.c.cluster_id)).all()
    assert rows[run_id] == rows[core_run]
    assert sorted(v for _, v in rows[run_id] if v is not None) == sorted(
        s.astimezone(UTC) for s in stamps if s is not None)
    assert [f for _, f in flags] == record.clusters.column("flagged").to_pylist()
