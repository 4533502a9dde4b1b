"""What a finished run hands the store: :class:`RunRecord` and the schemas of its tables.

The pipeline's last stages produce Arrow tables; the store writes them as they are. Each
table's required columns are listed in :data:`RECORD_COLUMNS` (extra columns are ignored,
types only need to convert to the database column's type), and :meth:`RunRecord.validate`
checks them before anything is written, so a stage that forgot a column fails with a message
that names it instead of a driver error halfway through a transaction.

Examples
--------
>>> import pyarrow as pa
>>> record = RunRecord.empty(input_fingerprint="sha256:0")
>>> record.validate()
>>> record.memberships.column_names
['account_id', 'cluster_id', 'created_at']
>>> from dataclasses import replace
>>> bad = replace(record, memberships=pa.table({"account_id": ["a"]}))
>>> bad.validate()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
linkage.errors.StoreError: RunRecord.memberships lacks column 'cluster_id' (has: account_id; ...)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from linkage.errors import StoreError, shorten

__all__ = ["RECORD_COLUMNS", "RECORD_SCHEMAS", "RunRecord"]

# The Arrow schema of each table of a RunRecord; the store's readers return these types too.
RECORD_SCHEMAS: dict[str, pa.Schema] = {
    "clusters": pa.schema(
        [
            ("cluster_id", pa.string()),
            ("size", pa.int64()),
            ("score", pa.float64()),
            ("flagged", pa.bool_()),
            ("origin", pa.string()),
            ("parents_json", pa.string()),
            ("features_json", pa.string()),
            ("contributions_json", pa.string()),
            ("reasons_json", pa.string()),
            # NULL means "this run": the run id is not known until the run is published.
            ("first_seen_run_id", pa.int64()),
            # The campaign of a flagged cluster (linkage.campaigns); NULL when not flagged.
            ("campaign_id", pa.string()),
        ]
    ),
    "memberships": pa.schema([
        ("account_id", pa.string()),
        ("cluster_id", pa.string()),
        # When the account was created (accounts.created_at): the report's signup timeline.
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]),
    "evidence": pa.schema(
        [
            ("cluster_id", pa.string()),
            ("account_a", pa.string()),
            ("account_b", pa.string()),
            ("weight", pa.float64()),
        ]
    ),
    "evidence_signals": pa.schema(
        [
            ("account_a", pa.string()),
            ("account_b", pa.string()),
            ("signal", pa.string()),
            ("contribution", pa.float64()),
            ("shared_keys", pa.int64()),
        ]
    ),
    "cluster_keys": pa.schema(
        [
            ("cluster_id", pa.string()),
            ("signal", pa.string()),
            ("key_hash", pa.string()),
            ("n_members", pa.int64()),
            ("n_global", pa.int64()),
        ]
    ),
    # What each cluster is relative to the previous run (linkage.continuity); rows about a
    # previous cluster that vanished name it by its old id, so no check against ``clusters``.
    "lineage": pa.schema(
        [
            ("cluster_id", pa.string()),
            ("kind", pa.string()),
            ("other_cluster_id", pa.string()),
            ("overlap", pa.int64()),
            ("jaccard", pa.float64()),
        ]
    ),
    "quarantine": pa.schema(
        [
            ("table_name", pa.string()),
            ("file", pa.string()),
            ("row_number", pa.int64()),
            ("column_name", pa.string()),
            ("reason", pa.string()),
            ("value", pa.string()),
        ]
    ),
}

# Columns a stage may leave out: they are stored as NULL (records built before they existed
# stay valid).
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "memberships": frozenset({"created_at"}),
    "clusters": frozenset({"campaign_id"}),
    "cluster_keys": frozenset({"n_global"}),
}

RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(n for n in schema.names if n not in OPTIONAL_COLUMNS.get(name, ()))
    for name, schema in RECORD_SCHEMAS.items()
}


@dataclass(frozen=True)
class RunRecord:
    """Everything a successful run publishes, written by ``Store.publish_run`` in one go.

    Parameters
    ----------
    input_fingerprint
        Identifies the input exactly (e.g. a hash over file names, sizes and contents).
    rows_read, rows_quarantined
        Rows read per input table; rows set aside per table and reason.
    n_accounts, n_edges, n_clusters, n_flagged
        The run's headline counts, stored on its ``runs`` row.
    timings
        Seconds per stage, in stage order.
    clusters, memberships, evidence, evidence_signals, cluster_keys, quarantine, lineage
        Arrow tables with (at least) the columns of :data:`RECORD_SCHEMAS` (``lineage`` may
        be left out: no lineage rows).
    """

    input_fingerprint: str
    rows_read: dict[str, int]
    rows_quarantined: dict[str, dict[str, int]]
    n_accounts: int
    n_edges: int
    n_clusters: int
    n_flagged: int
    timings: dict[str, float]
    clusters: pa.Table
    memberships: pa.Table
    evidence: pa.Table
    evidence_signals: pa.Table
    cluster_keys: pa.Table
    quarantine: pa.Table
    # Last and defaulted: records built before lineage existed stay valid (no lineage rows).
    lineage: pa.Table = dataclasses.field(
        default_factory=lambda: RECORD_SCHEMAS["lineage"].empty_table()
    )
    # store_meta entries written in the publish transaction (e.g. the run's component
    # fingerprints for the next warm start): they exist exactly when the run is published.
    meta: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def empty(cls, *, input_fingerprint: str) -> RunRecord:
        """A record with no clusters and zero counts (a run that found nothing)."""
        tables = {name: schema.empty_table() for name, schema in RECORD_SCHEMAS.items()}
        return cls(
            input_fingerprint=input_fingerprint,
            rows_read={},
            rows_quarantined={},
            n_accounts=0,
            n_edges=0,
            n_clusters=0,
            n_flagged=0,
            timings={},
            **tables,
        )

    @property
    def n_rows_read(self) -> int:
        """Rows read over all input tables."""
        return sum(self.rows_read.values())

    @property
    def n_rows_quarantined(self) -> int:
        """Rows set aside over all tables and reasons."""
        return sum(sum(by_reason.values()) for by_reason in self.rows_quarantined.values())

    def table(self, name: str) -> pa.Table:
        """The named table: its :data:`RECORD_COLUMNS` in order, cast to :data:`RECORD_SCHEMAS`.

        Casting lets stages hand over what their engine produces (int32, large strings,
        dictionary-encoded text, decimals) while the database drivers only ever see the
        plain Python types those schemas convert to.
        """
        schema = RECORD_SCHEMAS[name]
        table = getattr(self, name)
        columns = []
        for field in schema:
            if field.name not in table.column_names and field.name in OPTIONAL_COLUMNS.get(
                    name, ()):
                columns.append(pa.nulls(table.num_rows, field.type))
                continue
            column = table.column(field.name)
            try:
                columns.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise StoreError(
                    f"RunRecord.{name} column {field.name!r} is {column.type}, which does not "
                    f"convert to {field.type}: {exc}"
                ) from None
        return pa.table(columns, schema=schema)

    def validate(self) -> None:
        """Raise :class:`StoreError` unless every table has its columns and clusters cover
        every membership, evidence edge and shared key.

        The last check matters because the analyst views join memberships to clusters: a
        membership whose cluster is missing would silently drop out of ``latest_memberships``
        and of every export.
        """
        for name, needed in RECORD_COLUMNS.items():
            table = getattr(self, name)
            if not isinstance(table, pa.Table):
                raise StoreError(
                    f"RunRecord.{name} is a {type(table).__name__}, expected a pyarrow.Table"
                )
            missing = [c for c in needed if c not in table.column_names]
            if missing:
                raise StoreError(
                    f"RunRecord.{name} lacks column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(c) for c in missing)} (has: "
                    f"{', '.join(table.column_names) or 'nothing'}; needs: {', '.join(needed)})"
                )
            self.table(name)  # raises unless it converts
        known = self.table("clusters").column("cluster_id")
        for name in ("memberships", "evidence", "cluster_keys"):
            ids = self.table(name).column("cluster_id")
            unknown = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=known)))
            if len(unknown):
                raise StoreError(
                    f"RunRecord.{name} names {len(unknown)} rows of cluster_id not in "
                    f"RunRecord.clusters (first: {shorten(unknown[0].as_py())})"
                )
