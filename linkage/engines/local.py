"""The DuckDB engine: every stage on the driver's own in-process DuckDB.

The stages' SQL runs on the driver's connection itself, so nothing is copied anywhere:
ingest writes its tables there, the communities are found with igraph on the driver
(:func:`linkage.warmstart.warm_detect` with its default components and Leiden), and the
evidence the store keeps is selected from the stage tables in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from linkage.communities import Partition
from linkage.config import IngestConfig, RunConfig
from linkage.edge_arrays import EdgeArrays
from linkage.ingest import IngestResult, ingest
from linkage.pseudonymise import Pseudonymiser
from linkage.warmstart import warm_detect

__all__ = ["DuckDBEngine"]


class DuckDBEngine:
    """:class:`linkage.engines.Engine` on the driver's DuckDB: :attr:`sql` is :attr:`driver`."""

    def __init__(self, driver: duckdb.DuckDBPyConnection) -> None:
        self.driver = driver
        self.sql = driver

    def ingest(self, input_dir: Path, cfg: IngestConfig, pseudo: Pseudonymiser, *,
               known: str | None = None, skip: tuple[str, ...] = ()) -> IngestResult:
        """:func:`linkage.ingest.ingest` on the driver (``skip`` changes nothing: the driver
        is where every stage reads)."""
        return ingest(self.driver, input_dir, cfg, pseudo, known=known)

    def load(self) -> None:
        """Nothing to do: the ingest tables are where the stages read them."""

    def communities(self, edges: EdgeArrays, cfg: RunConfig, previous: pa.Table | None,
                    previous_fingerprints: str | None, *, salt: str
                    ) -> tuple[Partition, str]:
        """:func:`linkage.warmstart.warm_detect` with igraph's components and Leiden."""
        return warm_detect(self.driver, edges, cfg, previous, previous_fingerprints, salt=salt)

    def collect(self, tables: Mapping[str, str], *,
                send: Sequence[str] = ()) -> dict[str, int]:
        """Each table of ``tables`` created from its query, in place (``send`` is here)."""
        copied: dict[str, int] = {}
        for name, query in tables.items():
            self.driver.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")
            (copied[name],) = self.driver.execute(f"SELECT count(*) FROM {name}").fetchall()[0]
        return copied

    def close(self) -> None:
        """Nothing to release beyond the driver, which its owner closes."""
