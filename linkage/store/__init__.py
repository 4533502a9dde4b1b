"""The store: runs, clusters, memberships and evidence in SQLite or PostgreSQL.

``Store`` is the only way the pipeline and the reports touch the database; Alembic migrations
(:mod:`linkage.store.migrate`) own the schema, and :mod:`linkage.store.models` mirrors it for
typed Core statements and drift checks. See ``docs/`` for the tables and analyst views.
"""

from linkage.store.record import RECORD_COLUMNS, RECORD_SCHEMAS, RunRecord
from linkage.store.store import (
    DEFAULT_DB_URL,
    MAX_RUN_ID,
    Store,
    StoreDeniedError,
    StoreUnreachableError,
    create_store_engine,
    parse_run_id,
    resolve_db_url,
)

__all__ = [
    "DEFAULT_DB_URL",
    "MAX_RUN_ID",
    "RECORD_COLUMNS",
    "RECORD_SCHEMAS",
    "RunRecord",
    "Store",
    "StoreDeniedError",
    "StoreUnreachableError",
    "create_store_engine",
    "parse_run_id",
    "resolve_db_url",
]
