"""The features and the score, as pure numpy functions of per-cluster arrays.

Which features there are (:data:`FEATURES`), which signal family feeds which, the linked
shares counted from one kind of evidence's intra-cluster pairs, the contributions
``c_f = w_f * e_f`` and their combination into a score with the two size factors (the
formula is in :mod:`linkage.scoring`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from linkage.communities import components_of
from linkage.signals import SIGNAL_FAMILIES

__all__ = [
    "FAMILY_FEATURE",
    "FEATURES",
    "HOUSEHOLD",
    "MULTI_VALUED",
    "PIPELINE",
    "PRIVATE_FAMILIES",
    "UNSQUARED",
    "burst_share",
    "combine",
    "contributions",
    "density",
    "family_of",
    "largest_linked",
    "members_with_partner",
    "size_factor",
]

FEATURES = (
    "burst",
    "identifier_reuse",
    "issuer_reuse",
    "network_concentration",
    "observation_reuse",
    "behaviour_reuse",
    "schedule_sync",
    "usage_campaign",
    "known_bad",
)
# Counted as they are, not squared: the signup burst is already a share of the whole
# cluster, usage_campaign describes what the cluster does rather than how far shared
# evidence runs through it, and known_bad is an analyst's verdict.
UNSQUARED = ("burst", "usage_campaign", "known_bad")
# Evidence that a household or a family shares too: damped up to ``household_full_size``.
HOUSEHOLD = ("identifier_reuse", "issuer_reuse", "network_concentration", "observation_reuse")
# The feature of each signal family whose intra-cluster pairs give a linked share.
FAMILY_FEATURE = {
    "identifier": "identifier_reuse",
    "issuer": "issuer_reuse",
    "network": "network_concentration",
    "observation": "observation_reuse",
    "behaviour": "behaviour_reuse",
    "schedule": "schedule_sync",
}
# Families whose signals an account carries many values of (observed values, templates).
MULTI_VALUED = ("observation", "behaviour", "schedule")
# Families that together say one pipeline drives two accounts (its private templates, on its
# schedule): as good as a shared identifier when they make a strong edge.
PIPELINE = ("behaviour", "schedule")
# Families of multi-valued signals whose linked share is weighted by the members' share of
# the values' carriers (:func:`linkage.scoring.aggregates.privacy_shares`); templates are
# weighed by the members' own work instead (:func:`contributions`).
PRIVATE_FAMILIES = ("observation",)


def family_of(signal: str) -> str:
    """The scoring family of a signal: ``obs:*`` signals are observations, the others as
    :data:`linkage.signals.SIGNAL_FAMILIES` says, ``"other"`` when it does not say."""
    if signal.startswith("obs:"):
        return "observation"
    return SIGNAL_FAMILIES.get(signal, "other")


def burst_share(burst_n: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The ``burst`` feature: the most sign-ups within one window (NaN or missing: none) as
    a share of the cluster's size."""
    return np.nan_to_num(burst_n.astype(float)) / np.maximum(size, 1)


def largest_linked(
    pairs: dict[str, np.ndarray], idx: np.ndarray, cluster: np.ndarray, n_vertices: int,
    n_clusters: int,
) -> np.ndarray:
    """Per cluster, the size of the largest group of members linked to each other through
    ``pairs`` (columns ``a``, ``b``: intra-cluster pairs of one kind of evidence):
    connected components of that evidence alone, counted within each cluster; 0 where no
    two members are linked. ``idx``/``cluster`` are the clustered accounts and their
    clusters, ``n_vertices`` the number of accounts.

    Examples
    --------
    >>> pairs = {"a": np.array([0, 1, 4]), "b": np.array([1, 2, 5])}
    >>> largest_linked(pairs, np.arange(7), np.array([0, 0, 0, 0, 1, 1, 1]), 7, 3).tolist()
    [3.0, 2.0, 0.0]
    """
    out = np.zeros(n_clusters)
    if not len(pairs["a"]):
        return out
    comp = components_of(n_vertices, pairs["a"], pairs["b"])[idx]
    groups, counts = np.unique(cluster * n_vertices + comp, return_counts=True)
    np.maximum.at(out, groups // n_vertices, counts)
    out[out < 2] = 0.0  # a member alone shares nothing
    return out


def members_with_partner(
    pairs: dict[str, np.ndarray], idx: np.ndarray, cluster: np.ndarray, n_vertices: int,
    n_clusters: int,
) -> np.ndarray:
    """Per cluster, how many members are in at least one of ``pairs`` (intra-cluster pairs
    of one kind of evidence), however the pairs group: the arguments as for
    :func:`largest_linked`.

    Examples
    --------
    >>> pairs = {"a": np.array([0, 2]), "b": np.array([1, 3])}
    >>> members_with_partner(pairs, np.arange(5), np.array([0, 0, 0, 0, 1]), 5, 2).tolist()
    [4.0, 0.0]
    """
    linked = np.zeros(n_vertices, dtype=bool)
    linked[pairs["a"]] = True
    linked[pairs["b"]] = True
    return np.bincount(cluster[linked[idx]], minlength=n_clusters).astype(np.float64)


def contributions(
    feats: Mapping[str, np.ndarray], weights: Mapping[str, float], behaviour_factor: np.ndarray,
) -> dict[str, np.ndarray]:
    """The contribution ``c_f = w_f * e_f`` of every feature of :data:`FEATURES`, per
    cluster: ``e_f`` is the feature squared, or as it is for :data:`UNSQUARED`; a feature
    missing from ``weights`` weighs 0. ``behaviour_reuse``'s contribution is multiplied by
    ``behaviour_factor`` (per cluster: how far the shared templates are the members' work).

    Examples
    --------
    >>> feats = {f: np.array([0.5]) for f in FEATURES}
    >>> c = contributions(feats, {"burst": 0.4, "identifier_reuse": 0.8,
    ...                           "behaviour_reuse": 1.0}, np.array([0.5]))
    >>> c["burst"].tolist(), c["identifier_reuse"].tolist(), c["behaviour_reuse"].tolist()
    ([0.2], [0.2], [0.125])
    """
    w = {f: weights.get(f, 0.0) for f in FEATURES}
    contrib = {f: w[f] * (feats[f] if f in UNSQUARED else feats[f] ** 2) for f in FEATURES}
    contrib["behaviour_reuse"] = contrib["behaviour_reuse"] * behaviour_factor
    return contrib


def combine(contrib: dict[str, np.ndarray], damp: np.ndarray,
            damp_household: np.ndarray) -> np.ndarray:
    """The score from the contributions ``c_f`` (arrays, one entry per cluster) and the two
    size factors (:mod:`linkage.scoring`): household evidence and the rest by noisy-OR,
    each damped by its own factor, then the analysts' ``known_bad``."""
    def noisy_or(features: list[str]) -> np.ndarray:
        return 1.0 - np.prod([1.0 - contrib[f] for f in features], axis=0)

    household = noisy_or([f for f in FEATURES if f in HOUSEHOLD])
    other = noisy_or([f for f in FEATURES if f not in HOUSEHOLD and f != "known_bad"])
    evidence = 1.0 - (1.0 - damp_household * household) * (1.0 - damp * other)
    return np.clip(1.0 - (1.0 - evidence) * (1.0 - contrib["known_bad"]), 0.0, 1.0)


def size_factor(size: np.ndarray, full_size: int) -> np.ndarray:
    """Damping of small clusters, per cluster size: 0 for pairs, 1 from ``full_size``
    members on, ``log(s / 2) / log(full_size / 2)`` between.

    Examples
    --------
    >>> size_factor(np.array([2, 4, 5, 10, 50]), 10).round(2).tolist()
    [0.0, 0.43, 0.57, 1.0, 1.0]
    """
    s = np.maximum(np.asarray(size, dtype=np.float64), 2.0)
    return np.clip(np.log(s / 2) / math.log(full_size / 2), 0.0, 1.0)


def density(weight: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The summed weight of a cluster's intra-cluster edges over its number of member pairs.

    Examples
    --------
    >>> density(np.array([3.0, 0.9]), np.array([3, 2])).tolist()
    [1.0, 0.9]
    """
    return 2 * weight / np.maximum(size * (size - 1), 1)
