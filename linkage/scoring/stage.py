"""The scoring stage: :func:`score_clusters`, from a partition to ``cluster_scores``."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from linkage.campaigns import ClusterLinks, fleet_pieces
from linkage.communities import Partition
from linkage.config import ScoringConfig
from linkage.engines import SQLConnection
from linkage.scoring import aggregates
from linkage.scoring.features import (
    FAMILY_FEATURE,
    PRIVATE_FAMILIES,
    burst_share,
    combine,
    contributions,
    density,
    largest_linked,
    members_with_partner,
    size_factor,
)
from linkage.scoring.reasons import cluster_reasons, fleet_reason
from linkage.scoring.rows import contributions_json, features_json, write_cluster_scores
from linkage.scoring.usage import cluster_usage, has_interactions
from linkage.scoring.verdicts import cleared, false_positives, known_bad

__all__ = ["score_clusters"]


def score_clusters(
    con: duckdb.DuckDBPyConnection,
    partition: Partition,
    cfg: ScoringConfig,
    caps: dict[str, int],
    *,
    confirmed: pa.Table | None = None,
    false_positive: pa.Table | None = None,
    engine_con: SQLConnection | None = None,
    links: ClusterLinks | None = None,
    fleet_min_lift: float = 2.0,
    resolution: float = 0.05,
) -> int:
    """Create ``members``, ``cluster_keys``, ``intra_edges`` and ``cluster_scores``.

    ``caps`` maps each signal to its cap (keys at or above it are not counted as reuse).
    ``confirmed`` (``account_id, by, created_at``) and ``false_positive`` (``label_id,
    account_id, by, created_at, note``) are analysts' labels as plain data
    (:class:`linkage.labels.LabelFacts`): scoring never reads the store itself.
    ``engine_con`` is the connection holding the stage tables, where every aggregate runs,
    when that is not ``con`` (:attr:`linkage.engines.Engine.sql`): ``members`` is created on both,
    ``cluster_keys`` and ``intra_edges`` stay on ``engine_con``, ``cluster_scores`` goes to
    ``con``. With the evidence between clusters (``links``), a cluster that is a piece of a
    flagged cluster's fleet (:func:`linkage.campaigns.fleet_pieces`, at ``fleet_min_lift``
    and CPM's ``resolution``) is flagged with it. Returns the number of flagged clusters.
    """
    sql: SQLConnection = con if engine_con is None else engine_con
    idx, cluster = partition.members()
    aggregates.create_members(con, sql, idx, cluster)
    aggregates.create_families(sql, caps)
    shared = aggregates.create_cluster_keys(sql)
    aggregates.create_intra_edges(sql)
    base = aggregates.cluster_aggregates(sql, cfg.burst_window_minutes, cfg.strong_edge)
    ip_ranges = aggregates.ip_ranges_used(sql)

    n, size = len(base["cluster"]), base["size"].astype(np.int64)
    n_vertices = int(partition.cluster.shape[0])
    feats = {"burst": burst_share(base["burst_n"], size)}
    with aggregates.intra_family_pairs(sql, cfg.strong_edge) as pairs:
        for family, name in FAMILY_FEATURE.items():
            # a scheduler's shifts share nothing with each other: every synchronised member
            # counts, not only the largest shift
            count = members_with_partner if family == "schedule" else largest_linked
            feats[name] = count(pairs(family), idx, cluster, n_vertices, n) / np.maximum(size, 1)
        # observed values count as far as they are the cluster's own
        privacy = aggregates.privacy_shares(sql, n)
        for family in PRIVATE_FAMILIES:
            feats[FAMILY_FEATURE[family]] *= privacy.get(family, np.ones(n))
    n_confirmed, confirmed_by = known_bad(sql, confirmed, n)
    feats["known_bad"] = n_confirmed / np.maximum(size, 1)
    usage = cluster_usage(sql, caps.get("prompt", 200)) if has_interactions(sql) else {}
    feats["usage_campaign"] = np.array([usage[c]["usage_campaign"] if c in usage else 0.0
                                        for c in range(n)])
    # shared templates count as far as they are the members' work, or as far as the members
    # ask for other things than people do
    behaviour_factor = np.array([max(usage[c]["own_work"], usage[c]["category_departure"])
                                 if c in usage else 1.0 for c in range(n)])
    contrib = contributions(feats, cfg.weights, behaviour_factor)

    damp = size_factor(size, cfg.full_size)
    damp_h = size_factor(size, cfg.household_full_size)
    score = combine(contrib, damp, damp_h) if n else np.zeros(0)
    suppressed = false_positives(sql, false_positive, n, cfg.suppress_min_jaccard)
    quiet = cleared(suppressed, n)
    flagged = (score >= cfg.threshold) & ~quiet
    reasons = cluster_reasons(base, shared, ip_ranges, damp, damp_h, cfg.strong_edge,
                              (n_confirmed, confirmed_by), usage, suppressed)
    dens = density(base["w"], size)
    if links is not None and n:
        flagged |= _pieces_of_fleets(links, base["cluster"], size, dens, flagged, quiet,
                                     reasons, min_lift=fleet_min_lift,
                                     min_evidence=cfg.strong_edge, resolution=resolution)
    write_cluster_scores(con, base["cluster"], size, score, flagged,
                         features_json(feats, dens, damp, damp_h, usage),
                         contributions_json(contrib), reasons)
    return int(flagged.sum())


def _pieces_of_fleets(links: ClusterLinks, cluster: np.ndarray, size: np.ndarray,
                      dens: np.ndarray, flagged: np.ndarray, quiet: np.ndarray,
                      reasons: list[list[str]], *, min_lift: float, min_evidence: float,
                      resolution: float) -> np.ndarray:
    """The clusters (rows of ``cluster``) flagged as pieces of a flagged cluster's fleet
    (:func:`linkage.campaigns.fleet_pieces`; not those analysts cleared, ``quiet``); each
    piece's reasons start with the fleet's."""
    at = cluster.astype(np.int64)
    n_all = len(links.strength)
    whole, sizes, dens_all = np.zeros(n_all, dtype=bool), np.zeros(n_all), np.zeros(n_all)
    whole[at], sizes[at], dens_all[at] = flagged, size, dens
    pieces = fleet_pieces(links, whole, sizes, dens_all, min_lift=min_lift,
                          min_evidence=min_evidence, resolution=resolution)
    fleet = np.where(quiet, -1, pieces.fleet[at])
    for c in np.flatnonzero(fleet >= 0):  # the pieces only
        reasons[c].insert(0, fleet_reason(pieces.share[at[c]], pieces.weight[at[c]],
                                          int(sizes[fleet[c]])))
    return fleet >= 0
