"""``linkage browse``: the store in Datasette, with linkage's descriptions, canned queries
and cluster pages.

Datasette is an optional extra (``pip install 'linkage[browse]'``). :func:`app` builds the
Datasette application for a SQLite store: the metadata shipped beside this module
(``metadata.json``, built from docs/schema.md by :mod:`linkage.browse.build_metadata`:
every table, view and column described, every SQL recipe a canned query) and the plugin
:mod:`linkage.browse.plugin`, which links every ``cluster_id`` and ``campaign_id`` cell to
the cluster's or campaign's page, rendered from the store like ``linkage report`` renders
it. Datasette opens the file read-only (it is neither written nor locked), and not as
immutable: linkage keeps it in WAL mode and a night may publish while it is open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from linkage.errors import ConfigError

__all__ = ["METADATA", "app", "metadata_for"]

METADATA = Path(__file__).with_name("metadata.json")


def metadata_for(name: str) -> dict[str, Any]:
    """The shipped metadata with its database entry under Datasette's name for the file
    (its stem: ``linkage`` for ``linkage.db``)."""
    meta: dict[str, Any] = json.loads(METADATA.read_text(encoding="utf-8"))
    meta["databases"] = {name: meta["databases"]["linkage"]}
    return meta


def app(path: Path) -> Any:
    """The Datasette instance for the SQLite store at ``path``, with the plugin registered.

    Raises :class:`ConfigError` (exit 2) when Datasette is not installed.
    """
    try:
        from datasette.app import Datasette
        from datasette.plugins import pm
    except ImportError as exc:
        raise ConfigError("linkage browse needs Datasette: pip install 'linkage[browse]' "
                          f"({exc})") from None
    from linkage.browse import plugin

    if not pm.is_registered(plugin):
        pm.register(plugin, name="linkage")
    path = Path(path).resolve()
    return Datasette(files=[str(path)], metadata=metadata_for(path.stem),
                     settings={"sql_time_limit_ms": 5000})
