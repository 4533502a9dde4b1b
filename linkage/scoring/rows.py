"""The rows of ``cluster_scores``: features and contributions as JSON objects, reasons as
JSON lists, written to the driver's DuckDB."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa

from linkage.scoring.features import FEATURES

__all__ = ["contributions_json", "features_json", "rounded", "write_cluster_scores"]

# The features stored beside FEATURES: the intra-cluster edge density and the size factors.
_DESCRIPTIVE = ("density", "size_factor", "household_factor")


def rounded(values: np.ndarray) -> list[float]:
    """A column as a list of Python floats rounded to 4 decimals: indexing numpy arrays per
    cluster and value costs more than the JSON itself.

    Examples
    --------
    >>> rounded(np.array([0.123456, 1 / 3, 2]))
    [0.1235, 0.3333, 2.0]
    """
    return [round(v, 4) for v in np.asarray(values, dtype=np.float64).tolist()]


def features_json(
    feats: dict[str, np.ndarray], density: np.ndarray, damp: np.ndarray,
    damp_household: np.ndarray, usage: dict[int, dict[str, float]],
) -> list[str]:
    """Per cluster, a JSON object with sorted keys: every feature of :data:`FEATURES`, its
    ``density``, ``size_factor`` and ``household_factor``, rounded, and its usage
    (:func:`linkage.scoring.usage.cluster_usage`) when it has any."""
    names = (*FEATURES, *_DESCRIPTIVE)
    columns = (*(rounded(feats[f]) for f in FEATURES), rounded(density), rounded(damp),
               rounded(damp_household))
    out = []
    for c, row in enumerate(zip(*columns, strict=True)):
        values = dict(zip(names, row, strict=True))
        if c in usage:
            values.update(usage[c])
        out.append(json.dumps(values, sort_keys=True))
    return out


def contributions_json(contrib: dict[str, np.ndarray]) -> list[str]:
    """Per cluster, a JSON object with sorted keys: the contribution of every feature of
    :data:`FEATURES`, rounded."""
    rows = zip(*(rounded(contrib[f]) for f in FEATURES), strict=True)
    return [json.dumps(dict(zip(FEATURES, row, strict=True)), sort_keys=True) for row in rows]


def write_cluster_scores(
    con: duckdb.DuckDBPyConnection, cluster: np.ndarray, size: np.ndarray, score: np.ndarray,
    flagged: np.ndarray, features: list[str], contributions: list[str],
    reasons: list[list[str]],
) -> None:
    """``cluster_scores(cluster, size, score, flagged, features, contributions, reasons)``
    in ``con``, one row per cluster; ``reasons`` become JSON lists."""
    table = pa.table({
        "cluster": pa.array(cluster, pa.int32()),
        "size": pa.array(size, pa.int32()),
        "score": pa.array(score, pa.float64()),
        "flagged": pa.array(flagged, pa.bool_()),
        "features": features,
        "contributions": contributions,
        "reasons": [json.dumps(r) for r in reasons],
    })
    con.register("scores_in", table)
    con.execute("CREATE OR REPLACE TABLE cluster_scores AS SELECT * FROM scores_in")
    con.unregister("scores_in")
