"""The DuckDB engine: an in-process, in-memory database that spills to disk.

Memory stays bounded by ``engine.memory_limit`` (1.5 GB unless configured): above it DuckDB's
operators spill to the run's own private folder under ``engine.temp_directory``
(:mod:`linkage.engines.spill`) and get slower instead of failing. Timestamps are parsed and
kept in UTC whatever the machine's time zone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from linkage.config import EngineConfig
from linkage.errors import ConfigError

__all__ = ["connect_duckdb"]


def connect_duckdb(cfg: EngineConfig, temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open a configured in-memory DuckDB connection.

    ``temp_dir`` is where DuckDB spills: the caller's private folder, which it owns
    (:func:`linkage.engines.spill.spill_folder`, made under ``cfg.temp_directory``).
    Without one, ``cfg.temp_directory`` or the system's temporary folder itself.
    """
    con = duckdb.connect(":memory:")
    spill = str(temp_dir or cfg.temp_directory or tempfile.gettempdir())
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET temp_directory = ?", [spill])
        if cfg.memory_limit:
            con.execute("SET memory_limit = ?", [cfg.memory_limit])
        if cfg.threads:
            con.execute(f"SET threads = {int(cfg.threads)}")
        # Deterministic results need deterministic row order from parallel scans.
        con.execute("SET preserve_insertion_order = true")
    except duckdb.Error as exc:
        con.close()
        raise ConfigError(f"invalid engine setting: {exc}") from None
    return con
